package blueprint

import (
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestRendersRunKustomizeOnlyWhenTheInputChanges(t *testing.T) {
	var r Renders
	files, in := fixture(t), input()
	want, err := Render(files, in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		got, err := r.Render("bakers", "shop", files, input())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("render %d differs from Render's", i+1)
		}
		// The caller owns what it gets: the next render is untouched.
		got[0].SetName("changed")
	}
	if r.runs != 1 {
		t.Errorf("kustomize ran %d times for the same input, want 1", r.runs)
	}

	in.Parameters["url"] = "https://bakers.example.coop"
	got, err := r.Render("bakers", "shop", files, in)
	if err != nil {
		t.Fatal(err)
	}
	containers, _, _ := unstructured.NestedSlice(byKind(got, "Deployment").Object, "spec", "template", "spec", "containers")
	if env := containers[0].(map[string]any)["env"].([]any)[0].(map[string]any); env["value"] != "https://bakers.example.coop" {
		t.Errorf("after a parameter changed, PUBLIC_URL = %v", env["value"])
	}
	files["service.yaml"] += "\n"
	if _, err := r.Render("bakers", "shop", files, in); err != nil {
		t.Fatal(err)
	}
	if r.runs != 3 {
		t.Errorf("kustomize ran %d times after a parameter and a file changed, want 3", r.runs)
	}

	if _, err := r.Render("bakers", "wiki", files, in); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Render("potters", "shop", files, in); err != nil {
		t.Fatal(err)
	}
	r.Keep("bakers", []string{"wiki"})
	if _, ok := r.last["bakers"]["shop"]; ok || len(r.last["bakers"]) != 1 || len(r.last["potters"]) != 1 {
		t.Errorf("after Keep(wiki), the renders kept are %v", r.last)
	}
	r.Forget("bakers")
	r.Forget("potters")
	if len(r.last) != 0 {
		t.Errorf("after Forget, the renders kept are %v", r.last)
	}
}

package blueprint

import (
	"reflect"
	"testing"
	"time"

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

func TestRendersBoundWaitsForAFreeSlot(t *testing.T) {
	var r Renders
	r.Bound(1)
	files := fixture(t)
	// Another render holds the only slot.
	r.slots <- struct{}{}
	done := make(chan error, 1)
	go func() {
		_, err := r.Render("bakers", "shop", files, input())
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a render ran while the only slot was taken (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	<-r.slots
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the render did not run once the slot was free")
	}
	if len(r.slots) != 0 {
		t.Errorf("%d slots still taken after the render", len(r.slots))
	}
	// A render from memory takes no slot.
	r.slots <- struct{}{}
	if _, err := r.Render("bakers", "shop", files, input()); err != nil {
		t.Fatal(err)
	}
}

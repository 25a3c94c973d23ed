package controllers

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
)

func testBlueprint(t *testing.T, name string, edit func(files map[string]string)) *v1alpha1.Blueprint {
	t.Helper()
	files := map[string]string{}
	for _, f := range []string{"web.yaml", "service.yaml"} {
		data, err := os.ReadFile("../internal/blueprint/testdata/" + f)
		if err != nil {
			t.Fatal(err)
		}
		files[f] = string(data)
	}
	if edit != nil {
		edit(files)
	}
	bp := &v1alpha1.Blueprint{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.BlueprintSpec{
			DisplayName: "Web",
			Versions:    []v1alpha1.BlueprintVersion{{Version: "1.0", Images: []v1alpha1.BlueprintImage{{Name: "example.org/web", Tag: "1.0.3"}}}},
			Expose:      &v1alpha1.BlueprintExpose{Service: "web", Port: 80},
			Parameters: []v1alpha1.BlueprintParameter{{Name: "url", Source: v1alpha1.ParameterURL, Targets: []v1alpha1.BlueprintTarget{{
				Kind: "Deployment", Name: "web", FieldPaths: []string{"spec.template.spec.containers.[name=web].env.[name=PUBLIC_URL].value"},
			}}}},
		},
	}
	for _, name := range []string{"service.yaml", "web.yaml"} {
		bp.Spec.Resources = append(bp.Spec.Resources, v1alpha1.BlueprintFile{Name: name, Content: files[name]})
	}
	return bp
}

func waitBlueprint(t *testing.T, name string) *metav1.Condition {
	t.Helper()
	var ready *metav1.Condition
	waitFor(t, 30*time.Second, "Blueprint "+name+" to be checked", func(ctx context.Context) (bool, error) {
		bp := &v1alpha1.Blueprint{}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: name}, bp); err != nil {
			return false, err
		}
		ready = meta.FindStatusCondition(bp.Status.Conditions, v1alpha1.ReadyCondition)
		return ready != nil && bp.Status.ObservedGeneration == bp.Generation, nil
	})
	return ready
}

func TestBlueprintsAreCheckedOnTheirOwnStatus(t *testing.T) {
	startOperator(t)
	good := testBlueprint(t, "web-good", nil)
	privileged := testBlueprint(t, "web-privileged", func(f map[string]string) {
		f["web.yaml"] = strings.Replace(f["web.yaml"], "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: false\n          privileged: true", 1)
	})
	exposed := testBlueprint(t, "web-exposed", func(f map[string]string) {
		f["service.yaml"] = strings.Replace(f["service.yaml"], "spec:", "spec:\n  type: LoadBalancer", 1)
	})
	exposed.Spec.Expose.Service = "missing"
	create(t, good, privileged, exposed)

	if c := waitBlueprint(t, "web-good"); c.Status != metav1.ConditionTrue {
		t.Errorf("a compliant blueprint: Ready %s %q", c.Status, c.Message)
	}
	c := waitBlueprint(t, "web-privileged")
	if c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.BlueprintChecksFailedReason || !strings.Contains(c.Message, "privileged") {
		t.Errorf("a privileged blueprint: Ready %s %s %q", c.Status, c.Reason, c.Message)
	}
	c = waitBlueprint(t, "web-exposed")
	for _, want := range []string{"LoadBalancer", `spec.expose.service: no Service "missing"`} {
		if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, want) {
			t.Errorf("Ready message %q does not say %q", c.Message, want)
		}
	}
}

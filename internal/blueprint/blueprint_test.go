package blueprint

import (
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func fixture(t *testing.T, edits ...func(map[string]string)) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, name := range []string{"web.yaml", "service.yaml"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(data)
	}
	for _, e := range edits {
		e(files)
	}
	return files
}

func input() Input {
	return Input{
		Namespace:  "coop-bakers",
		NamePrefix: "shop-",
		Labels:     map[string]string{"cooperator.dev/app": "shop"},
		Images:     []Image{{Name: "example.org/web", NewTag: "1.4.2"}},
		Parameters: map[string]string{"url": "https://shop.bakers.example.coop"},
		Targets: map[string][]Target{"url": {{
			Kind: "Deployment", Name: "web",
			FieldPaths: []string{"spec.template.spec.containers.[name=web].env.[name=PUBLIC_URL].value"},
		}}},
	}
}

func byKind(objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}

func TestRenderAppliesTheCoopsOverlay(t *testing.T) {
	objs, err := Render(fixture(t), input())
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Fatalf("rendered %d objects, want Deployment, Service and the parameters ConfigMap", len(objs))
	}
	d := byKind(objs, "Deployment")
	if d.GetName() != "shop-web" || d.GetNamespace() != "coop-bakers" {
		t.Errorf("deployment is %s/%s", d.GetNamespace(), d.GetName())
	}
	if d.GetLabels()["cooperator.dev/app"] != "shop" {
		t.Errorf("labels = %v", d.GetLabels())
	}
	selector, _, _ := unstructured.NestedStringMap(d.Object, "spec", "selector", "matchLabels")
	if _, ok := selector["cooperator.dev/app"]; ok {
		t.Errorf("the label went into the selector, which is immutable: %v", selector)
	}
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	c := containers[0].(map[string]any)
	if c["image"] != "example.org/web:1.4.2" {
		t.Errorf("image = %v", c["image"])
	}
	env := c["env"].([]any)[0].(map[string]any)
	if env["value"] != "https://shop.bakers.example.coop" {
		t.Errorf("PUBLIC_URL = %v, want the url parameter", env["value"])
	}
	if cm := byKind(objs, "ConfigMap"); cm == nil || cm.GetName() != "shop-parameters" {
		t.Errorf("parameters ConfigMap = %v", cm)
	}
	// The Service still selects the renamed Deployment's pods.
	svc := byKind(objs, "Service")
	if sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector"); sel["app"] != "web" {
		t.Errorf("service selector = %v", sel)
	}
}

func TestRenderRefusesPathsOutsideTheBase(t *testing.T) {
	files := fixture(t, func(f map[string]string) { f["../etc/passwd.yaml"] = "x: y" })
	if _, err := Render(files, input()); err == nil || !strings.Contains(err.Error(), "plain file names") {
		t.Errorf("got %v, want a refusal", err)
	}
}

func TestRenderReportsBrokenYAML(t *testing.T) {
	files := fixture(t, func(f map[string]string) { f["web.yaml"] = "kind: [unclosed" })
	if _, err := Render(files, input()); err == nil {
		t.Error("broken YAML rendered")
	}
}

func budget() Budget {
	return Budget{
		CPU: resource.MustParse("2"), Memory: resource.MustParse("1Gi"),
		DefaultCPU: resource.MustParse("500m"), DefaultMemory: resource.MustParse("512Mi"),
	}
}

func TestCheck(t *testing.T) {
	replace := func(name, old, new string) func(map[string]string) {
		return func(f map[string]string) { f[name] = strings.Replace(f[name], old, new, 1) }
	}
	cases := []struct {
		name string
		edit func(map[string]string)
		want string
	}{
		{"compliant app", func(map[string]string) {}, ""},
		{"privileged container", replace("web.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: false\n          privileged: true"), "privileged"},
		{"runs as root", replace("web.yaml", "runAsNonRoot: true\n        runAsUser: 1000", "runAsUser: 0"), "runAsUser=0"},
		{"host network", replace("web.yaml", "securityContext:\n        runAsNonRoot", "hostNetwork: true\n      securityContext:\n        runAsNonRoot"), "host namespaces"},
		{"hostPath volume", replace("web.yaml", "      containers:", "      volumes:\n      - name: h\n        hostPath: {path: /etc}\n      containers:"), "hostPath"},
		{"Ingress from the template", func(f map[string]string) {
			f["ingress.yaml"] = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec: {}\n"
		}, "kind Ingress is not allowed"},
		{"LoadBalancer Service", replace("service.yaml", "spec:", "spec:\n  type: LoadBalancer"), "LoadBalancer"},
		{"over the plan", replace("web.yaml", "replicas: 2", "replicas: 5"), "more than the plan"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Render(fixture(t, tc.edit), input())
			if err != nil {
				t.Fatal(err)
			}
			violations, err := Check(objs, budget())
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if len(violations) != 0 {
					t.Errorf("violations %v, want none", violations)
				}
				return
			}
			found := false
			for _, v := range violations {
				found = found || strings.Contains(v.String(), tc.want)
			}
			if !found {
				t.Errorf("violations %v, want one saying %q", violations, tc.want)
			}
		})
	}
}

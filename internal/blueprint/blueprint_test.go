package blueprint

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// readFiles reads a base's files from dir.
func readFiles(tb testing.TB, dir string, names ...string) map[string]string {
	tb.Helper()
	files := map[string]string{}
	for _, name := range names {
		data, err := os.ReadFile(dir + "/" + name)
		if err != nil {
			tb.Fatal(err)
		}
		files[name] = string(data)
	}
	return files
}

func fixture(t *testing.T, edits ...func(map[string]string)) map[string]string {
	t.Helper()
	files := readFiles(t, "testdata", "web.yaml", "service.yaml")
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

// A base may bring its own kustomization.yaml; the coop's overlay then
// applies on what it renders, its generated objects included.
func TestRenderAppliesTheOverlayOnABasesOwnKustomization(t *testing.T) {
	files := fixture(t,
		replace("web.yaml", `        env:
`, `        envFrom:
        - configMapRef: {name: settings}
        env:
`),
		func(f map[string]string) {
			f["kustomization.yaml"] = `resources: [web.yaml, service.yaml]
commonAnnotations: {example.org/from-base: "yes"}
configMapGenerator:
- name: settings
  literals: [MODE=production]
`
		})
	objs, err := Render(files, input())
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 4 {
		t.Fatalf("rendered %d objects, want Deployment, Service, the base's ConfigMap and the parameters ConfigMap", len(objs))
	}
	var settings *unstructured.Unstructured
	for _, o := range objs {
		if o.GetNamespace() != "coop-bakers" || !strings.HasPrefix(o.GetName(), "shop-") || o.GetLabels()["cooperator.dev/app"] != "shop" {
			t.Errorf("%s %s/%s, labels %v: want the coop's namespace, prefix and labels", o.GetKind(), o.GetNamespace(), o.GetName(), o.GetLabels())
		}
		if o.GetKind() == "ConfigMap" && strings.HasPrefix(o.GetName(), "shop-settings-") {
			settings = o
		}
	}
	if settings == nil {
		t.Fatal("the base's generated ConfigMap is missing, or not prefixed and hashed")
	}
	d := byKind(objs, "Deployment")
	if d.GetAnnotations()["example.org/from-base"] != "yes" {
		t.Errorf("Deployment annotations = %v, want the base's", d.GetAnnotations())
	}
	c, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	container := c[0].(map[string]any)
	if ref, _, _ := unstructured.NestedString(container["envFrom"].([]any)[0].(map[string]any), "configMapRef", "name"); ref != settings.GetName() {
		t.Errorf("envFrom refers to ConfigMap %q, want %q", ref, settings.GetName())
	}
	if env := container["env"].([]any)[0].(map[string]any); env["value"] != "https://shop.bakers.example.coop" {
		t.Errorf("PUBLIC_URL = %v, want the url parameter", env["value"])
	}
	if container["image"] != "example.org/web:1.4.2" {
		t.Errorf("image = %v", container["image"])
	}
}

func TestRenderPrefixesReferencesToProvidedSecrets(t *testing.T) {
	files := fixture(t, func(f map[string]string) {
		f["web.yaml"] = strings.Replace(f["web.yaml"], `        env:
`, `        envFrom:
        - secretRef: {name: redis}
        env:
        - name: DATABASE_URL
          valueFrom: {secretKeyRef: {name: database, key: uri}}
        - name: SECRET_KEY_BASE
          valueFrom: {secretKeyRef: {name: secrets, key: secret_key_base}}
        - name: OTHER
          valueFrom: {secretKeyRef: {name: smtp, key: host}}
`, 1)
	})
	in := input()
	in.Provided = []string{DatabaseSecret, RedisSecret, GeneratedSecret}
	objs, err := Render(files, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Fatalf("rendered %d objects, want the stand-ins of provided Secrets left out", len(objs))
	}
	c, _, _ := unstructured.NestedSlice(byKind(objs, "Deployment").Object, "spec", "template", "spec", "containers")
	container := c[0].(map[string]any)
	refs := map[string]string{}
	for _, e := range container["env"].([]any) {
		env := e.(map[string]any)
		if ref, ok, _ := unstructured.NestedString(env, "valueFrom", "secretKeyRef", "name"); ok {
			refs[env["name"].(string)] = ref
		}
	}
	want := map[string]string{"DATABASE_URL": "shop-database", "SECRET_KEY_BASE": "shop-secrets", "OTHER": "smtp"}
	for k, v := range want {
		if refs[k] != v {
			t.Errorf("%s refers to Secret %q, want %q", k, refs[k], v)
		}
	}
	if ref, _, _ := unstructured.NestedString(container["envFrom"].([]any)[0].(map[string]any), "secretRef", "name"); ref != "shop-redis" {
		t.Errorf("envFrom refers to Secret %q, want shop-redis", ref)
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

// replace edits one file of the fixture.
func replace(name, old, new string) func(map[string]string) {
	return func(f map[string]string) { f[name] = strings.Replace(f[name], old, new, 1) }
}

func TestCheck(t *testing.T) {
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

func TestMigrationJobRunsTheCommandInTheNewVersionsPod(t *testing.T) {
	objs, err := Render(fixture(t), input())
	if err != nil {
		t.Fatal(err)
	}
	m := &v1alpha1.BlueprintMigration{Workload: "web", Container: "web", Command: []string{"bin/migrate", "--yes"}}
	job, err := MigrationJob(objs, m, "shop-", "shop", "1.4.2+build.7")
	if err != nil {
		t.Fatal(err)
	}
	if job.GetName() != "shop-migrate-1-4-2-build-7" || job.GetNamespace() != "coop-bakers" {
		t.Errorf("job %s/%s", job.GetNamespace(), job.GetName())
	}
	containers, _, _ := unstructured.NestedSlice(job.Object, "spec", "template", "spec", "containers")
	c := containers[0].(map[string]any)
	if c["image"] != "example.org/web:1.4.2" || len(c["command"].([]any)) != 2 || c["ports"] != nil {
		t.Errorf("migration container = %v", c)
	}
	if policy, _, _ := unstructured.NestedString(job.Object, "spec", "template", "spec", "restartPolicy"); policy != "Never" {
		t.Errorf("restartPolicy = %s", policy)
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(job.Object, "spec", "template", "spec", "affinity"); found {
		t.Error("a Job without volumes is tied to the app's node")
	}
	withClaim, err := Render(fixture(t, replace("web.yaml", "      containers:", "      volumes:\n      - name: data\n        persistentVolumeClaim: {claimName: data}\n      containers:")), input())
	if err != nil {
		t.Fatal(err)
	}
	claimJob, err := MigrationJob(withClaim, m, "shop-", "shop", "1.4.2")
	if err != nil {
		t.Fatal(err)
	}
	terms, _, _ := unstructured.NestedSlice(claimJob.Object, "spec", "template", "spec", "affinity", "podAffinity", "preferredDuringSchedulingIgnoredDuringExecution")
	if len(terms) != 1 {
		t.Errorf("a Job mounting the app's volume is not sent to the app's node: affinity %v", terms)
	}
	// The app's Service selects app=web: the migration's pod must not get its traffic.
	labels, _, _ := unstructured.NestedStringMap(job.Object, "spec", "template", "metadata", "labels")
	if _, ok := labels["app"]; ok || labels["cooperator.dev/app"] != "shop" {
		t.Errorf("migration pod labels = %v, want the operator's only", labels)
	}
	// The Job passes the same checks as the app.
	if v, err := Check([]*unstructured.Unstructured{job}, budget()); err != nil || len(v) != 0 {
		t.Errorf("the migration Job fails the checks: %v %v", v, err)
	}
	if _, err := MigrationJob(objs, &v1alpha1.BlueprintMigration{Workload: "web", Container: "nope", Command: []string{"x"}}, "shop-", "shop", "1"); err == nil {
		t.Error("a missing container was accepted")
	}
}

func TestStateOf(t *testing.T) {
	job := func(conditions ...map[string]any) *unstructured.Unstructured {
		list := []any{}
		for _, c := range conditions {
			list = append(list, c)
		}
		return &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"conditions": list}}}
	}
	cases := []struct {
		name string
		job  *unstructured.Unstructured
		want JobState
	}{
		{"no status", &unstructured.Unstructured{Object: map[string]any{}}, JobRunning},
		{"complete", job(map[string]any{"type": "SuccessCriteriaMet", "status": "True"}, map[string]any{"type": "Complete", "status": "True"}), JobSucceeded},
		{"failed", job(map[string]any{"type": "FailureTarget", "status": "True"}, map[string]any{"type": "Failed", "status": "True"}), JobFailed},
		{"suspended", job(map[string]any{"type": "Suspended", "status": "True"}), JobRunning},
	}
	for _, tc := range cases {
		if got := StateOf(tc.job); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestTwoAppsOfOneBlueprintSelectTheirOwnPods(t *testing.T) {
	bp := &v1alpha1.Blueprint{Spec: v1alpha1.BlueprintSpec{
		Versions: []v1alpha1.BlueprintVersion{{Version: "1", Images: []v1alpha1.BlueprintImage{{Name: "example.org/web", Tag: "1"}}}},
	}}
	for _, app := range []string{"shop", "blog"} {
		in, err := InputFor(bp, "1", "coop-bakers", app, "", map[string]string{"cooperator.dev/app": app})
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Render(fixture(t), in)
		if err != nil {
			t.Fatal(err)
		}
		selector, _, _ := unstructured.NestedStringMap(byKind(objs, "Deployment").Object, "spec", "selector", "matchLabels")
		podLabels, _, _ := unstructured.NestedStringMap(byKind(objs, "Deployment").Object, "spec", "template", "metadata", "labels")
		service, _, _ := unstructured.NestedStringMap(byKind(objs, "Service").Object, "spec", "selector")
		if selector[v1alpha1.AppLabel] != app || service[v1alpha1.AppLabel] != app || podLabels[v1alpha1.AppLabel] != app {
			t.Errorf("app %s: Deployment selector %v, Service selector %v, pod labels %v: want each to name the app", app, selector, service, podLabels)
		}
	}
}

// BenchmarkRender is one app's render with no kept render, as a new
// process's first pass over a coop.
func BenchmarkRender(b *testing.B) {
	files := readFiles(b, "testdata", "web.yaml", "service.yaml")
	in := input()
	in.SelectorLabels = map[string]string{"cooperator.dev/app-instance": "shop"}
	b.ReportAllocs()
	for b.Loop() {
		objs, err := Render(files, in)
		if err != nil || len(objs) != 3 {
			b.Fatalf("rendered %d objects: %v", len(objs), err)
		}
	}
}

// TestRenderLabelsAsKustomizeDoes renders a base with every kind an app may
// bring, and compares it with kustomize's labels field applied to the same
// render without the coop's labels: the objects must be the same.
func TestRenderLabelsAsKustomizeDoes(t *testing.T) {
	files := readFiles(t, "testdata/kinds", "workloads.yaml", "others.yaml")
	in := input()
	in.Targets = nil
	in.SelectorLabels = map[string]string{"cooperator.dev/app-instance": "shop"}
	got, err := Render(files, in)
	if err != nil {
		t.Fatal(err)
	}

	unlabelled := in
	unlabelled.Labels, unlabelled.SelectorLabels = nil, nil
	plain, err := Render(files, unlabelled)
	if err != nil {
		t.Fatal(err)
	}
	fs := filesys.MakeFsInMemory()
	var base strings.Builder
	for _, obj := range plain {
		data, err := yaml.Marshal(obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		base.WriteString("---\n")
		base.Write(data)
	}
	k, err := yaml.Marshal(types.Kustomization{
		Resources: []string{"rendered.yaml"},
		Labels: []types.Label{
			{Pairs: in.Labels, IncludeTemplates: true},
			{Pairs: in.SelectorLabels, IncludeSelectors: true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.WriteFile("/k/rendered.yaml", []byte(base.String())); err != nil {
		t.Fatal(err)
	}
	if err := fs.WriteFile("/k/kustomization.yaml", k); err != nil {
		t.Fatal(err)
	}
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, "/k")
	if err != nil {
		t.Fatal(err)
	}
	want := resMap.Resources()
	if len(want) != len(got) || len(got) != 12 {
		t.Fatalf("rendered %d objects, kustomize %d; want 12 each", len(got), len(want))
	}
	// The label paths must cover every kind an app may bring.
	for kind := range allowedKinds {
		if byKind(got, kind) == nil {
			t.Errorf("the base has no %s: add one to testdata/kinds", kind)
		}
	}
	for i, r := range want {
		data, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		wantObj := map[string]any{}
		if err := json.Unmarshal(data, &wantObj); err != nil {
			t.Fatal(err)
		}
		gotData, err := got[i].MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		gotObj := map[string]any{}
		if err := json.Unmarshal(gotData, &gotObj); err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(gotObj, wantObj) {
			gotYAML, _ := yaml.Marshal(got[i].Object)
			wantYAML, _ := yaml.Marshal(wantObj)
			t.Errorf("%s %s:\n%s\nkustomize's labels field gives:\n%s", r.GetKind(), r.GetName(), gotYAML, wantYAML)
		}
	}
}

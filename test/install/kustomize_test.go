package install

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const kustomization = "config/default"

// build renders config/default with the pinned kubectl.
func build(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	out, _, err := tool("kubectl", "kustomize", kustomization)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out)
}

func TestKustomizeDryRun(t *testing.T) {
	// A server-side dry run creates nothing, so the namespace the
	// kustomization brings must exist for its namespaced objects: create
	// it as the kustomization has it, labels and all, so that the API
	// server checks the manager's pod against its Pod Security level.
	objs := build(t)
	data, err := yaml.Marshal(find(t, objs, "Namespace").Object)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "namespace.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tool("kubectl", "apply", "-f", path); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := tool("kubectl", "apply", "-k", kustomization, "--dry-run=server")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		want := strings.ToLower(o.GetKind())
		if g := o.GroupVersionKind().Group; g != "" {
			want += "." + g
		}
		want += "/" + o.GetName()
		if !strings.Contains(out, want) {
			t.Errorf("the dry run does not report %s:\n%s", want, out)
		}
	}
	if strings.Contains(stderr, "PodSecurity") {
		t.Errorf("the manager's pod breaks the namespace's Pod Security level:\n%s", stderr)
	}
}

// TestKustomizeMatchesChart: config/default installs the operator the
// chart installs with its default values.
func TestKustomizeMatchesChart(t *testing.T) {
	kustomized := build(t)
	charted, err := render(t, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Namespace: Pod Security "restricted" enforced.
	ns := &corev1.Namespace{}
	into(t, find(t, kustomized, "Namespace"), ns)
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("want namespace %s to enforce Pod Security restricted, got %q", ns.Name, got)
	}

	// The manager: the same pod, flags and update strategy.
	kd, kc := deployment(t, kustomized)
	cd, cc := deployment(t, charted)
	checkRestricted(t, kd.Spec.Template)
	if !slices.Equal(kc.Args, cc.Args) {
		t.Errorf("the manager's args differ:\nconfig/default: %v\nchart:          %v", kc.Args, cc.Args)
	}
	for name, pair := range map[string][2]any{
		"replicas":                  {kd.Spec.Replicas, cd.Spec.Replicas},
		"strategy":                  {kd.Spec.Strategy, cd.Spec.Strategy},
		"pod securityContext":       {kd.Spec.Template.Spec.SecurityContext, cd.Spec.Template.Spec.SecurityContext},
		"container securityContext": {kc.SecurityContext, cc.SecurityContext},
		"resources":                 {kc.Resources, cc.Resources},
		"livenessProbe":             {kc.LivenessProbe, cc.LivenessProbe},
		"readinessProbe":            {kc.ReadinessProbe, cc.ReadinessProbe},
		"ports":                     {kc.Ports, cc.Ports},
		"image":                     {kc.Image, cc.Image},
		"env":                       {kc.Env, cc.Env},
	} {
		if !equalYAML(t, pair[0], pair[1]) {
			t.Errorf("the manager's %s differs:\nconfig/default: %+v\nchart:          %+v", name, pair[0], pair[1])
		}
	}
	sa := kd.Spec.Template.Spec.ServiceAccountName
	if find(t, kustomized, "ServiceAccount").GetName() != sa {
		t.Errorf("the Deployment runs as ServiceAccount %s, which config/default does not create", sa)
	}

	// RBAC: the same least-privilege rules.
	kr, cr := &rbacv1.ClusterRole{}, &rbacv1.ClusterRole{}
	into(t, find(t, kustomized, "ClusterRole"), kr)
	into(t, find(t, charted, "ClusterRole"), cr)
	noWildcards(t, kr.Rules)
	if !equalYAML(t, kr.Rules, cr.Rules) {
		t.Error("the ClusterRole's rules differ between config/default and the chart")
	}
	binding := &rbacv1.ClusterRoleBinding{}
	into(t, find(t, kustomized, "ClusterRoleBinding"), binding)
	if s := binding.Subjects; len(s) != 1 || s[0].Name != sa || s[0].Namespace != ns.Name {
		t.Errorf("want the ClusterRole bound to %s/%s, got %+v", ns.Name, sa, s)
	}

	// CRDs: every one of config/crd/bases.
	bases, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range kustomized {
		if o.GetKind() == "CustomResourceDefinition" {
			names = append(names, o.GetName())
		}
	}
	for _, path := range bases {
		crd := &unstructured.Unstructured{}
		readYAML(t, path, &crd.Object)
		if !slices.Contains(names, crd.GetName()) {
			t.Errorf("config/default does not install CRD %s (%s): run hack/sync-chart.sh", crd.GetName(), filepath.Base(path))
		}
	}
	// Everything namespaced lands in the operator's namespace.
	for _, o := range kustomized {
		if o.GetNamespace() != "" && o.GetNamespace() != ns.Name {
			t.Errorf("%s %s is in namespace %s, not %s", o.GetKind(), o.GetName(), o.GetNamespace(), ns.Name)
		}
	}
}

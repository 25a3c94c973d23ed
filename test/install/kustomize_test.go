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
	"k8s.io/apimachinery/pkg/labels"
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
	// Release "cooperator": the chart's webhook objects get config/default's names.
	charted, err := renderRelease(t, "cooperator", nil)
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
	for _, name := range []string{"cooperator-manager", "cooperator-webhook-certs"} {
		kr, cr := &rbacv1.ClusterRole{}, &rbacv1.ClusterRole{}
		into(t, findNamed(t, kustomized, "ClusterRole", name), kr)
		into(t, findNamed(t, charted, "ClusterRole", name), cr)
		noWildcards(t, kr.Rules)
		if !equalYAML(t, kr.Rules, cr.Rules) {
			t.Errorf("ClusterRole %s: the rules differ between config/default and the chart", name)
		}
		binding := &rbacv1.ClusterRoleBinding{}
		into(t, findNamed(t, kustomized, "ClusterRoleBinding", name), binding)
		if s := binding.Subjects; len(s) != 1 || s[0].Name != sa || s[0].Namespace != ns.Name || binding.RoleRef.Name != name {
			t.Errorf("want ClusterRole %s bound to %s/%s, got %+v", name, ns.Name, sa, binding)
		}
	}
	var clusterRoles int
	for _, o := range kustomized {
		if o.GetKind() == "ClusterRole" {
			clusterRoles++
		}
	}
	if clusterRoles != 2 {
		t.Errorf("want config/default's two ClusterRoles, got %d", clusterRoles)
	}

	// Services: metrics and webhooks, in front of the manager's ports.
	for _, name := range []string{"cooperator-metrics", "cooperator-webhook"} {
		ks, cs := &corev1.Service{}, &corev1.Service{}
		into(t, findNamed(t, kustomized, "Service", name), ks)
		into(t, findNamed(t, charted, "Service", name), cs)
		if !equalYAML(t, ks.Spec.Ports, cs.Spec.Ports) {
			t.Errorf("Service %s: the ports differ:\nconfig/default: %+v\nchart:          %+v", name, ks.Spec.Ports, cs.Spec.Ports)
		}
		if !labels.SelectorFromSet(ks.Spec.Selector).Matches(labels.Set(kd.Spec.Template.Labels)) {
			t.Errorf("Service %s selects %v, not the manager's pods %v", name, ks.Spec.Selector, kd.Spec.Template.Labels)
		}
	}

	// Webhooks: the generated ones, calling the webhook Service, under the
	// names the manager injects the CA into, with the Secret it fills.
	findNamed(t, kustomized, "Secret", "cooperator-webhook-tls")
	for _, kind := range []string{"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} {
		k, c := find(t, kustomized, kind), find(t, charted, kind)
		if k.GetName() != c.GetName() {
			t.Errorf("%s: config/default names it %s, the chart %s", kind, k.GetName(), c.GetName())
		}
		if !slices.Contains(kc.Args, "--webhook-"+map[string]string{
			"ValidatingWebhookConfiguration": "validating", "MutatingWebhookConfiguration": "mutating"}[kind]+"-configuration="+k.GetName()) {
			t.Errorf("the manager is not told to inject the CA into %s %s: %v", kind, k.GetName(), kc.Args)
		}
		kw, _, _ := unstructured.NestedSlice(k.Object, "webhooks")
		cw, _, _ := unstructured.NestedSlice(c.Object, "webhooks")
		if len(kw) == 0 || len(kw) != len(cw) {
			t.Fatalf("%s: config/default has %d webhooks, the chart %d", kind, len(kw), len(cw))
		}
		for i := range kw {
			kwh, cwh := kw[i].(map[string]any), cw[i].(map[string]any)
			for _, path := range [][]string{
				{"name"}, {"rules"}, {"failurePolicy"}, {"sideEffects"},
				// The port is the API's default, 443, either way.
				{"clientConfig", "service", "name"}, {"clientConfig", "service", "namespace"}, {"clientConfig", "service", "path"},
			} {
				kv, _, _ := unstructured.NestedFieldNoCopy(kwh, path...)
				cv, _, _ := unstructured.NestedFieldNoCopy(cwh, path...)
				if !equalYAML(t, kv, cv) {
					t.Errorf("%s webhook %d: %s differs:\nconfig/default: %v\nchart:          %v", kind, i, strings.Join(path, "."), kv, cv)
				}
			}
		}
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

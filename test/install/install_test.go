package install

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// restrictedNamespace creates a namespace that enforces Pod Security
// "restricted", as a sysadmin would for the operator.
func restrictedNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
}

// helmInstall installs the chart and uninstalls it when the test ends.
func helmInstall(t *testing.T, release, namespace string, values map[string]any, extra ...string) {
	t.Helper()
	args := append([]string{"install", release, chart, "--namespace", namespace, "-f", valuesFile(t, values)}, extra...)
	if _, err := helm(args...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := helm("uninstall", release, "--namespace", namespace, "--wait", "--ignore-not-found"); err != nil {
			t.Error(err)
		}
	})
}

func get(t *testing.T, key client.ObjectKey, obj client.Object) {
	t.Helper()
	if err := k8s.Get(context.Background(), key, obj); err != nil {
		t.Fatalf("after install: %T %s: %v", obj, key, err)
	}
}

func TestHelmInstall(t *testing.T) {
	ctx := context.Background()
	const ns = "cooperator-helm"
	restrictedNamespace(t, ns)
	// --wait: the Deployment's pods must be admitted under "restricted" and go Ready.
	helmInstall(t, "cooperator", ns, map[string]any{
		"replicaCount":  2,
		"baseDomain":    "coops.example",
		"clusterIssuer": "letsencrypt",
		"databaseCIDRs": []string{"10.20.0.0/16"},
	}, "--wait", "--timeout", "90s")

	d := &appsv1.Deployment{}
	get(t, client.ObjectKey{Namespace: ns, Name: "cooperator"}, d)
	if d.Status.ReadyReplicas != 2 {
		t.Errorf("want 2 ready replicas, got %d", d.Status.ReadyReplicas)
	}
	c := d.Spec.Template.Spec.Containers[0]
	for _, want := range []string{"--leader-elect", "--base-domain=coops.example", "--cluster-issuer=letsencrypt", "--database-cidrs=10.20.0.0/16"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("want the manager's args to hold %s, got %v", want, c.Args)
		}
	}
	checkRestricted(t, d.Spec.Template)
	// The operator learns its namespace from the downward API.
	pods := &corev1.PodList{}
	if err := k8s.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatal("the Deployment has no pods")
	}
	var fromDownwardAPI bool
	for _, e := range pods.Items[0].Spec.Containers[0].Env {
		fromDownwardAPI = fromDownwardAPI || (e.Name == "POD_NAMESPACE" && e.ValueFrom != nil &&
			e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace")
	}
	if !fromDownwardAPI {
		t.Errorf("want POD_NAMESPACE from metadata.namespace, got %+v", pods.Items[0].Spec.Containers[0].Env)
	}
	if d.Spec.Template.Spec.ServiceAccountName != "cooperator" {
		t.Errorf("want ServiceAccount cooperator, got %q", d.Spec.Template.Spec.ServiceAccountName)
	}
	get(t, client.ObjectKey{Namespace: ns, Name: "cooperator"}, &corev1.ServiceAccount{})

	role := &rbacv1.ClusterRole{}
	get(t, client.ObjectKey{Name: "cooperator-manager"}, role)
	noWildcards(t, role.Rules)
	want := &rbacv1.ClusterRole{}
	readYAML(t, filepath.Join(root, "config", "rbac", "role.yaml"), want)
	if !equalYAML(t, role.Rules, want.Rules) {
		t.Errorf("the installed ClusterRole's rules differ from config/rbac/role.yaml")
	}
	binding := &rbacv1.ClusterRoleBinding{}
	get(t, client.ObjectKey{Name: "cooperator-manager"}, binding)
	if s := binding.Subjects; len(s) != 1 || s[0].Name != "cooperator" || s[0].Namespace != ns {
		t.Errorf("want the ClusterRole bound to ServiceAccount %s/cooperator, got %+v", ns, s)
	}

	// What the operator's ServiceAccount may do, as the API server decides.
	sa := "system:serviceaccount:" + ns + ":cooperator"
	for _, tc := range []struct {
		verb, resource, namespace, want string
	}{
		{"create", "namespaces", "", "yes"},
		{"patch", "cooperatives.cooperator.dev/status", "", "yes"},
		{"update", "leases.coordination.k8s.io", ns, "yes"},
		{"update", "leases.coordination.k8s.io", "kube-system", "no"},
		{"update", "validatingwebhookconfigurations.admissionregistration.k8s.io/cooperator-validating", "", "yes"},
		{"patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io/cooperator-mutating", "", "yes"},
		{"update", "validatingwebhookconfigurations.admissionregistration.k8s.io/someone-elses", "", "no"},
		{"delete", "validatingwebhookconfigurations.admissionregistration.k8s.io/cooperator-validating", "", "no"},
		{"*", "*", "", "no"},
		{"escalate", "clusterroles.rbac.authorization.k8s.io", "", "no"},
		{"bind", "clusterroles.rbac.authorization.k8s.io/cooperator:cooperative-admin", "", "yes"},
		{"bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin", "", "no"},
	} {
		args := []string{"auth", "can-i", tc.verb, tc.resource, "--as", sa}
		if tc.namespace != "" {
			args = append(args, "--namespace", tc.namespace)
		}
		// can-i exits 1 for "no": its answer is on stdout.
		out, _, _ := tool("kubectl", args...)
		if got := strings.TrimSpace(out); got != tc.want {
			t.Errorf("kubectl auth can-i %s %s (namespace %q) as the operator: want %s, got %q", tc.verb, tc.resource, tc.namespace, tc.want, got)
		}
	}

	crds, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(crds) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	for _, path := range crds {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		readYAML(t, path, crd)
		if err := waitEstablished(ctx, crd.Name); err != nil {
			t.Errorf("CRD %s from %s: %v", crd.Name, filepath.Base(path), err)
		}
	}
}

func TestHelmInstallWebhooks(t *testing.T) {
	ctx := context.Background()
	const ns, release = "cooperator-webhooks", "webhooks"
	const name = "webhooks-cooperator"
	restrictedNamespace(t, ns)
	// No --wait: no cert-manager runs here to issue the certificate.
	helmInstall(t, release, ns, map[string]any{"webhook": map[string]any{"enabled": true, "certManager": map[string]any{"enabled": true}}})

	get(t, client.ObjectKey{Namespace: ns, Name: name + "-webhook"}, &corev1.Service{})
	config := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	get(t, client.ObjectKey{Name: name + "-validating"}, config)
	if got := config.Annotations["cert-manager.io/inject-ca-from"]; got != ns+"/"+name+"-webhook" {
		t.Errorf("want cert-manager.io/inject-ca-from=%s/%s-webhook, got %q", ns, name, got)
	}
	for _, kind := range []string{"Issuer", "Certificate"} {
		list := &unstructured.UnstructuredList{}
		list.SetAPIVersion("cert-manager.io/v1")
		list.SetKind(kind + "List")
		if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 1 {
			t.Errorf("want one %s in %s, got %d", kind, ns, len(list.Items))
		}
	}
	d := &appsv1.Deployment{}
	get(t, client.ObjectKey{Namespace: ns, Name: name}, d)
	if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--webhook-port=9443") {
		t.Errorf("want --webhook-port=9443, got %v", d.Spec.Template.Spec.Containers[0].Args)
	}

	// Uninstalling takes the webhook configuration away with it: a
	// leftover one would refuse every Cooperative.
	if _, err := helm("uninstall", release, "--namespace", ns, "--wait"); err != nil {
		t.Fatal(err)
	}
	err := k8s.Get(ctx, client.ObjectKey{Name: name + "-validating"}, &admissionregistrationv1.ValidatingWebhookConfiguration{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("after helm uninstall, want the ValidatingWebhookConfiguration gone, got %v", err)
	}
}

// readYAML reads one object from a file that may start with "---".
func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.TrimPrefix(strings.TrimSpace(string(data)), "---"))
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// equalYAML compares two values by their YAML.
func equalYAML(t *testing.T, a, b any) bool {
	t.Helper()
	ya, err := yaml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	yb, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ya) == string(yb)
}

func waitEstablished(ctx context.Context, name string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}

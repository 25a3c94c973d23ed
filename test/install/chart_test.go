package install

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

const chart = "charts/cooperator"

// valuesFile writes chart values to a file for helm's -f.
func valuesFile(t *testing.T, values map[string]any) string {
	t.Helper()
	data, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// render runs helm template with the given values.
func render(t *testing.T, values map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	return renderRelease(t, "coop", values)
}

// renderRelease runs helm template for a release of that name.
func renderRelease(t *testing.T, release string, values map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	out, err := helm("template", release, chart, "--namespace", "cooperator-system", "-f", valuesFile(t, values))
	if err != nil {
		return nil, err
	}
	return decode(t, out), nil
}

// deployment returns the rendered Deployment and its manager container.
func deployment(t *testing.T, objs []*unstructured.Unstructured) (*appsv1.Deployment, corev1.Container) {
	t.Helper()
	d := &appsv1.Deployment{}
	into(t, find(t, objs, "Deployment"), d)
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("want one container, got %d", n)
	}
	return d, d.Spec.Template.Spec.Containers[0]
}

// checkRestricted fails when a pod template breaks Pod Security "restricted".
func checkRestricted(t *testing.T, tpl corev1.PodTemplateSpec) {
	t.Helper()
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	for _, r := range evaluator.EvaluatePod(restricted, &tpl.ObjectMeta, &tpl.Spec) {
		if !r.Allowed {
			t.Errorf("Pod Security restricted: %s: %s", r.ForbiddenReason, r.ForbiddenDetail)
		}
	}
}

func TestHelmLint(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"defaults":     {},
		"no webhooks":  {"webhook": map[string]any{"enabled": false}},
		"cert-manager": {"webhook": map[string]any{"certManager": map[string]any{"enabled": true}}},
		"metrics":      {"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}, "dashboard": map[string]any{"enabled": true}}},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := helm("lint", "--strict", chart, "-f", valuesFile(t, values))
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

func TestHelmTemplateDefaults(t *testing.T) {
	objs, err := render(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, c := deployment(t, objs)
	checkRestricted(t, d.Spec.Template)
	if slices.Contains(c.Args, "--leader-elect") {
		t.Errorf("one replica: want no --leader-elect, got %v", c.Args)
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("one replica without leader election: want strategy Recreate, got %q", d.Spec.Strategy.Type)
	}
	if c.LivenessProbe == nil || c.ReadinessProbe == nil {
		t.Errorf("want liveness and readiness probes, got %v and %v", c.LivenessProbe, c.ReadinessProbe)
	}
	// Webhooks are on by default, with the operator's own certificate.
	for _, kind := range []string{"Certificate", "Issuer"} {
		for _, o := range objs {
			if o.GetKind() == kind {
				t.Errorf("cert-manager is off by default, yet the chart renders %s %s", kind, o.GetName())
			}
		}
	}
	find(t, objs, "ValidatingWebhookConfiguration")
	find(t, objs, "MutatingWebhookConfiguration")
	findNamed(t, objs, "Service", "coop-cooperator-webhook")
	findNamed(t, objs, "Secret", "coop-cooperator-webhook-tls")
	findNamed(t, objs, "Service", "coop-cooperator-metrics")
	for _, kind := range []string{"ServiceMonitor", "ConfigMap"} {
		for _, o := range objs {
			if o.GetKind() == kind {
				t.Errorf("the ServiceMonitor and the dashboard are off by default, yet the chart renders %s %s", kind, o.GetName())
			}
		}
	}
	for _, want := range []string{"--webhook-port=9443", "--webhook-cert-secret=coop-cooperator-webhook-tls"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("webhooks are on by default: want the manager's args to hold %s, got %v", want, c.Args)
		}
	}

	off, err := render(t, map[string]any{"webhook": map[string]any{"enabled": false}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range off {
		if strings.Contains(o.GetKind(), "Webhook") || strings.Contains(o.GetName(), "webhook") {
			t.Errorf("webhook.enabled=false, yet the chart renders %s %s", o.GetKind(), o.GetName())
		}
	}
	_, c = deployment(t, off)
	for _, arg := range c.Args {
		if strings.HasPrefix(arg, "--webhook-") {
			t.Errorf("webhook.enabled=false, yet the manager gets %s", arg)
		}
	}
}

func TestHelmTemplateFlags(t *testing.T) {
	objs, err := render(t, map[string]any{
		"replicaCount":  3,
		"image":         map[string]any{"repository": "registry.example/cooperator", "tag": "v1.2.3"},
		"baseDomain":    "coops.example",
		"ingressClass":  "nginx",
		"gateway":       "gateways/public",
		"wildcardTLS":   true,
		"clusterIssuer": "letsencrypt",
		"dnsResolver":   "10.0.0.10:53",
		"databaseCIDRs": []string{"10.20.0.0/16", "10.30.0.5/32"},
		"resources":     map[string]any{"limits": map[string]any{"memory": "1Gi"}},
		"extraArgs":     []string{"--zap-log-level=debug"},
	})
	if err != nil {
		t.Fatal(err)
	}
	d, c := deployment(t, objs)
	if *d.Spec.Replicas != 3 {
		t.Errorf("want 3 replicas, got %d", *d.Spec.Replicas)
	}
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		t.Errorf("with leader election, want a rolling update, got Recreate")
	}
	if c.Image != "registry.example/cooperator:v1.2.3" {
		t.Errorf("want image registry.example/cooperator:v1.2.3, got %s", c.Image)
	}
	if got := envValue(c, "RUNNER_IMAGE"); got != c.Image {
		t.Errorf("backups run the operator's image: want RUNNER_IMAGE=%s, got %q", c.Image, got)
	}
	if got := c.Resources.Limits.Memory().String(); got != "1Gi" {
		t.Errorf("want a memory limit of 1Gi, got %s", got)
	}
	for _, want := range []string{
		"--leader-elect", "--base-domain=coops.example", "--ingress-class=nginx", "--gateway=gateways/public",
		"--wildcard-tls", "--cluster-issuer=letsencrypt", "--dns-resolver=10.0.0.10:53",
		"--database-cidrs=10.20.0.0/16,10.30.0.5/32", "--zap-log-level=debug",
	} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("want the manager's args to hold %s, got %v", want, c.Args)
		}
	}
}

func TestHelmTemplateRefusesBadValues(t *testing.T) {
	for name, tc := range map[string]struct {
		values map[string]any
		want   string
	}{
		"wildcard TLS without base domain": {map[string]any{"wildcardTLS": true}, "wildcardTLS needs baseDomain"},
		"gateway not namespace/name":       {map[string]any{"gateway": "public"}, "not namespace/name"},
		"a caBundle of one's own": {
			map[string]any{"webhook": map[string]any{"caBundle": "Q0E="}},
			"webhook.caBundle is no longer read",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := render(t, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error holding %q, got %v", tc.want, err)
			}
		})
	}
}

func TestHelmTemplateWebhooks(t *testing.T) {
	objs, err := render(t, map[string]any{"webhook": map[string]any{"enabled": true, "port": 9443, "certManager": map[string]any{"enabled": true}}})
	if err != nil {
		t.Fatal(err)
	}
	d, c := deployment(t, objs)
	if !slices.Contains(c.Args, "--webhook-port=9443") {
		t.Errorf("want --webhook-port=9443, got %v", c.Args)
	}
	svc := &corev1.Service{}
	into(t, findNamed(t, objs, "Service", "coop-cooperator-webhook"), svc)
	config := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	into(t, find(t, objs, "ValidatingWebhookConfiguration"), config)
	cert := find(t, objs, "Certificate")
	find(t, objs, "Issuer")

	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
	into(t, find(t, objs, "MutatingWebhookConfiguration"), mutating)
	for _, annotations := range []map[string]string{config.Annotations, mutating.Annotations} {
		if got, want := annotations["cert-manager.io/inject-ca-from"], "cooperator-system/"+cert.GetName(); got != want {
			t.Errorf("want the webhook configurations annotated cert-manager.io/inject-ca-from=%s, got %q", want, got)
		}
	}
	for _, arg := range c.Args {
		if strings.HasPrefix(arg, "--webhook-cert-secret") {
			t.Errorf("cert-manager writes the certificate, yet the manager gets %s", arg)
		}
	}
	for _, o := range objs {
		if o.GetKind() == "Secret" || o.GetName() == "coop-cooperator-webhook-certs" {
			t.Errorf("cert-manager writes the certificate, yet the chart renders %s %s", o.GetKind(), o.GetName())
		}
	}
	if len(config.Webhooks) == 0 {
		t.Fatal("the webhook configuration has no webhooks")
	}
	for _, w := range config.Webhooks {
		s := w.ClientConfig.Service
		if s == nil || s.Name != svc.Name || s.Namespace != "cooperator-system" {
			t.Errorf("webhook %s: want Service cooperator-system/%s, got %+v", w.Name, svc.Name, s)
		}
	}
	secretName, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	var mounted bool
	for _, v := range d.Spec.Template.Spec.Volumes {
		mounted = mounted || (v.Secret != nil && v.Secret.SecretName == secretName)
	}
	if !mounted {
		t.Errorf("want the pod to mount Secret %s, the Certificate's, got %+v", secretName, d.Spec.Template.Spec.Volumes)
	}
	dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	if want := svc.Name + ".cooperator-system.svc"; !slices.Contains(dnsNames, want) {
		t.Errorf("want the Certificate to name %s, got %v", want, dnsNames)
	}
	checkRestricted(t, d.Spec.Template)
}

// TestHelmTemplateWebhooksWithoutCertManager: the operator makes the
// certificate in the Secret the pod mounts, and may write only the
// chart's two webhook configurations.
func TestHelmTemplateWebhooksWithoutCertManager(t *testing.T) {
	objs, err := render(t, map[string]any{"webhook": map[string]any{"enabled": true, "certManager": map[string]any{"enabled": false}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "Certificate" || o.GetKind() == "Issuer" {
			t.Errorf("without cert-manager, want no %s", o.GetKind())
		}
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	into(t, find(t, objs, "ValidatingWebhookConfiguration"), validating)
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
	into(t, find(t, objs, "MutatingWebhookConfiguration"), mutating)
	for _, w := range validating.Webhooks {
		if len(w.ClientConfig.CABundle) != 0 {
			t.Errorf("webhook %s: the operator injects the CA, yet the chart sets a caBundle", w.Name)
		}
	}
	if len(mutating.Webhooks) == 0 || mutating.Webhooks[0].ClientConfig.Service.Name != "coop-cooperator-webhook" {
		t.Errorf("want the mutating webhooks to call Service coop-cooperator-webhook, got %+v", mutating.Webhooks)
	}

	d, c := deployment(t, objs)
	secret := findNamed(t, objs, "Secret", "coop-cooperator-webhook-tls")
	for _, want := range []string{
		"--webhook-cert-dir=/etc/cooperator/webhook",
		"--webhook-cert-secret=" + secret.GetName(),
		"--webhook-dns-names=coop-cooperator-webhook.cooperator-system.svc,coop-cooperator-webhook.cooperator-system.svc.cluster.local",
		"--webhook-validating-configuration=" + validating.Name,
		"--webhook-mutating-configuration=" + mutating.Name,
	} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("want the manager's args to hold %s, got %v", want, c.Args)
		}
	}
	var mounted bool
	for _, v := range d.Spec.Template.Spec.Volumes {
		mounted = mounted || (v.Secret != nil && v.Secret.SecretName == secret.GetName())
	}
	if !mounted {
		t.Errorf("want the pod to mount Secret %s, got %+v", secret.GetName(), d.Spec.Template.Spec.Volumes)
	}

	role := &rbacv1.ClusterRole{}
	into(t, findNamed(t, objs, "ClusterRole", "coop-cooperator-webhook-certs"), role)
	noWildcards(t, role.Rules)
	writable := map[string][]string{}
	for _, r := range role.Rules {
		if slices.Contains(r.Verbs, "update") {
			if len(r.ResourceNames) == 0 {
				t.Errorf("the webhook-certs ClusterRole writes without resourceNames: %+v", r)
			}
			for _, res := range r.Resources {
				writable[res] = append(writable[res], r.ResourceNames...)
			}
		}
	}
	if got := writable["validatingwebhookconfigurations"]; !slices.Equal(got, []string{validating.Name}) {
		t.Errorf("want updates on validatingwebhookconfigurations %s only, got %v", validating.Name, got)
	}
	if got := writable["mutatingwebhookconfigurations"]; !slices.Equal(got, []string{mutating.Name}) {
		t.Errorf("want updates on mutatingwebhookconfigurations %s only, got %v", mutating.Name, got)
	}
	binding := &rbacv1.ClusterRoleBinding{}
	into(t, findNamed(t, objs, "ClusterRoleBinding", "coop-cooperator-webhook-certs"), binding)
	if s := binding.Subjects; len(s) != 1 || s[0].Name != d.Spec.Template.Spec.ServiceAccountName {
		t.Errorf("want the webhook-certs ClusterRole bound to the operator's ServiceAccount, got %+v", s)
	}
}

// noWildcards fails on a rule that grants "*".
func noWildcards(t *testing.T, rules []rbacv1.PolicyRule) {
	t.Helper()
	if len(rules) == 0 {
		t.Error("the ClusterRole has no rules")
	}
	for _, r := range rules {
		for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames, r.NonResourceURLs} {
			for _, s := range list {
				if strings.Contains(s, "*") {
					t.Errorf("the ClusterRole grants a wildcard: %+v", r)
				}
			}
		}
	}
}

// envValue is the literal value of a container's variable.
func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

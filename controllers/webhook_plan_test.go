package controllers

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/testenv"
	"cooperator.dev/cooperator/internal/webhook"
)

// installWebhooks creates the generated webhook configurations of
// config/webhook/manifests.yaml as <name>-validating and <name>-mutating,
// calling the webhook server at base, and deletes them when the test ends.
func installWebhooks(t *testing.T, name, base string, caBundle []byte) {
	t.Helper()
	objs, err := testenv.WebhookConfigurations(name, base, caBundle)
	if err != nil {
		t.Fatal(err)
	}
	create(t, objs...)
	t.Cleanup(func() {
		for _, o := range objs {
			_ = adminClient.Delete(context.Background(), o)
		}
	})
}

// warnings collects the API server's warnings.
type warnings struct {
	mu   sync.Mutex
	seen []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

func (w *warnings) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.seen, "\n")
}

// createThroughWebhooks creates obj once the webhook server answers: while
// it starts, the API server refuses everything with a connection error,
// which is not what is tested.
func createThroughWebhooks(t *testing.T, c client.Client, obj client.Object) error {
	t.Helper()
	var err error
	waitFor(t, 60*time.Second, "the webhooks to answer", func(ctx context.Context) (bool, error) {
		err = c.Create(ctx, obj)
		return err == nil || !strings.Contains(err.Error(), "failed calling webhook"), nil
	})
	if err == nil {
		t.Cleanup(func() { _ = adminClient.Delete(context.Background(), obj) })
	}
	return err
}

// badPlan breaks what the schema cannot see.
func badPlan(name string) *v1alpha1.Plan {
	plan := newPlan(name)
	plan.Spec.Backup.Schedule = "61 * * * *"
	plan.Spec.ContainerDefaults.Requests.CPU = new(mustQuantity("1"))
	plan.Spec.ContainerDefaults.Limits.Memory = new(mustQuantity("8Gi"))
	return plan
}

func TestWebhookRefusesPlansWithTheirFields(t *testing.T) {
	serveWebhooks(t)
	err := createThroughWebhooks(t, adminClient, badPlan("webhook-bad"))
	if err == nil {
		t.Fatal("a plan with a bad schedule and contradicting amounts was admitted")
	}
	for _, want := range []string{
		`spec.backup.schedule: Invalid value: "61 * * * *": `,
		`spec.containerDefaults.requests.cpu: Invalid value: "1": must not be more than the default limit, 500m`,
		`spec.containerDefaults.limits.memory: Invalid value: "8Gi": must not be more than spec.quota.memory, 4Gi`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if err := adminClient.Get(context.Background(), client.ObjectKey{Name: "webhook-bad"}, &v1alpha1.Plan{}); err == nil {
		t.Error("the refused plan exists")
	}
}

func TestWebhookStoresPlansWithTheirDefaults(t *testing.T) {
	serveWebhooks(t)
	seen := &warnings{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = seen
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		t.Fatal(err)
	}
	plan := newPlan("webhook-defaults")
	plan.Spec.ContainerDefaults.Limits.CPU = new(mustQuantity("250m"))
	plan.Spec.Backup.Store = "webhook-missing-store"
	if err := createThroughWebhooks(t, c, plan); err != nil {
		t.Fatalf("a valid plan was refused: %v", err)
	}
	stored := &v1alpha1.Plan{}
	mustGet(t, "", plan.Name, stored)
	d := stored.Spec.ContainerDefaults
	for what, pair := range map[string][2]any{
		"requests.cpu":    {d.Requests.CPU, v1alpha1.DefaultRequestCPU.String()},
		"requests.memory": {d.Requests.Memory, v1alpha1.DefaultRequestMemory.String()},
		"limits.cpu":      {d.Limits.CPU, "250m"},
		"limits.memory":   {d.Limits.Memory, v1alpha1.DefaultLimitMemory.String()},
	} {
		q, want := pair[0], pair[1]
		if got := fmt.Sprint(q); got != fmt.Sprint(want) {
			t.Errorf("stored containerDefaults.%s: got %v, want %v", what, got, want)
		}
	}
	// A store that may come later in the same `kubectl apply` is a warning.
	if w := seen.all(); !strings.Contains(w, `spec.backup.store: BackupStore "webhook-missing-store" does not exist`) {
		t.Errorf("want a warning about the missing BackupStore, got %q", w)
	}
}

func TestWebhookRefusesBlueprintsThatFailTheChecks(t *testing.T) {
	serveWebhooks(t)
	privileged := testBlueprint(t, "webhook-privileged", func(f map[string]string) {
		f["web.yaml"] = strings.Replace(f["web.yaml"], "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: false\n          privileged: true", 1)
	})
	err := createThroughWebhooks(t, adminClient, privileged)
	if err == nil {
		t.Fatal("a blueprint with a privileged container was admitted")
	}
	// web.yaml is the second file of the blueprint.
	if want := `spec.resources[1].content: Forbidden: version 1.0: Deployment web: pod security restricted: privileged`; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	missing := testBlueprint(t, "webhook-missing", nil)
	missing.Spec.Expose.Service = "nowhere"
	err = createThroughWebhooks(t, adminClient, missing)
	if want := `spec.expose.service: Forbidden: version 1.0: no Service "nowhere" in the base`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a blueprint exposing a missing Service: %v, want a refusal saying %q", err, want)
	}
	if err := createThroughWebhooks(t, adminClient, testBlueprint(t, "webhook-good", nil)); err != nil {
		t.Errorf("a compliant blueprint was refused: %v", err)
	}

	// A Blueprint that names no data is stored with its base's claims as
	// data, backed up.
	withClaim := volumeBlueprint(t, "webhook-claims")
	if err := createThroughWebhooks(t, adminClient, withClaim); err != nil {
		t.Fatalf("a blueprint with a claim was refused: %v", err)
	}
	if d := withClaim.Spec.Data; len(d) != 1 || d[0].Claim != "data" || d[0].Size.String() != "1Gi" || d[0].Backup == nil || !*d[0].Backup {
		t.Errorf("stored spec.data = %+v, want the claim data of 1Gi, backed up", d)
	}
}

func TestWebhookRefusesRestoresOutsideACoop(t *testing.T) {
	serveWebhooks(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "webhook-no-coop"}}
	create(t, ns)
	t.Cleanup(func() { _ = adminClient.Delete(context.Background(), ns) })
	r := &v1alpha1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "back", Namespace: ns.Name},
		Spec: v1alpha1.RestoreSpec{Source: "webhook-nobody"}}
	err := createThroughWebhooks(t, adminClient, r)
	for _, want := range []string{
		`metadata.namespace: Invalid value: "webhook-no-coop": belongs to no Cooperative`,
		`spec.source: Not found: "webhook-nobody"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a Restore outside any coop, from a missing coop: %v, want a refusal saying %q", err, want)
		}
	}
}

// An in-place Restore is stored naming its source, the coop of its namespace.
func TestWebhookNamesTheSourceOfARestore(t *testing.T) {
	serveWebhooks(t)
	create(t, newPlan("webhook-restore-plan"), newCoop("webhook-restorer", "webhook-restore-plan"))
	waitFor(t, time.Minute, "the coop's namespace", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Name: "coop-webhook-restorer"}, &corev1.Namespace{})
		return err == nil, client.IgnoreNotFound(err)
	})
	r := &v1alpha1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "back", Namespace: "coop-webhook-restorer"}}
	if err := createThroughWebhooks(t, adminClient, r); err != nil {
		t.Fatal(err)
	}
	if r.Spec.Source != "webhook-restorer" {
		t.Errorf("stored spec.source %q, want the namespace's coop", r.Spec.Source)
	}
}

// TestWebhookCertificatesMadeByTheOperator: with --webhook-cert-secret the
// operator makes the CA and the serving certificate in the Secret, puts the
// CA into its two webhook configurations, and the API server calls the
// webhooks with it. The operator runs with the hand-written RBAC of
// config/webhook/certs.yaml on top of its generated ClusterRole.
func TestWebhookCertificatesMadeByTheOperator(t *testing.T) {
	ctx := context.Background()
	const ns, secretName = "webhook-certs", "webhook-tls"
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: ns}})
	t.Cleanup(func() { _ = adminClient.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}) })
	grantWebhookCerts(t)

	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// The configurations come first, as a chart installs them: no caBundle.
	installWebhooks(t, "cooperator", fmt.Sprintf("https://localhost:%d", port), nil)
	certDir := t.TempDir()
	cfg := testConfig
	cfg.Webhooks = true
	cfg.WebhookCerts = &webhook.Certs{Namespace: ns, Secret: secretName, CertDir: certDir,
		DNSNames: []string{"localhost"}, Validating: "cooperator-validating", Mutating: "cooperator-mutating"}
	startOperatorWith(t, cfg, func(o *ctrl.Options) {
		o.WebhookServer = ctrlwebhook.NewServer(ctrlwebhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir})
	})

	// The operator writes the Secret.
	secret := &corev1.Secret{}
	waitFor(t, 60*time.Second, "the operator to write the certificates", func(ctx context.Context) (bool, error) {
		if err := adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: secretName}, secret); err != nil {
			return false, err
		}
		return len(secret.Data["tls.crt"]) > 0 && len(secret.Data["tls.key"]) > 0 && len(secret.Data["ca.crt"]) > 0, nil
	})
	block, _ := pem.Decode(secret.Data["tls.crt"])
	if block == nil {
		t.Fatal("tls.crt is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(secret.Data["ca.crt"]) {
		t.Fatal("ca.crt is not PEM")
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: roots}); err != nil {
		t.Errorf("the serving certificate does not verify for localhost against ca.crt: %v", err)
	}
	// The kubelet mounts the Secret into the pod; here the test does.
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(certDir, name), secret.Data[name], 0o600); err != nil {
			t.Fatal(err)
		}
	}

	waitFor(t, 60*time.Second, "the CA in both webhook configurations", func(ctx context.Context) (bool, error) {
		v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		m := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: "cooperator-validating"}, v); err != nil {
			return false, err
		}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: "cooperator-mutating"}, m); err != nil {
			return false, err
		}
		var bundles [][]byte
		for _, w := range v.Webhooks {
			bundles = append(bundles, w.ClientConfig.CABundle)
		}
		for _, w := range m.Webhooks {
			bundles = append(bundles, w.ClientConfig.CABundle)
		}
		return !slices.ContainsFunc(bundles, func(b []byte) bool { return string(b) != string(secret.Data["ca.crt"]) }), nil
	})

	// The API server trusts the webhook server through the injected CA.
	err = createThroughWebhooks(t, adminClient, badPlan("webhook-rotated-bad"))
	if err == nil || !strings.Contains(err.Error(), `spec.backup.schedule: Invalid value: "61 * * * *"`) {
		t.Fatalf("a bad plan through the operator's certificate: %v, want a refusal naming spec.backup.schedule", err)
	}
	good := newPlan("webhook-rotated-good")
	if err := createThroughWebhooks(t, adminClient, good); err != nil {
		t.Fatalf("a good plan through the operator's certificate: %v", err)
	}
	mustGet(t, "", good.Name, good)
	if good.Spec.ContainerDefaults.Limits.CPU == nil {
		t.Error("the good plan was stored without its container defaults: the mutating webhook was not called")
	}
}

// grantWebhookCerts gives the operator's identity config/webhook/certs.yaml's
// ClusterRole, as the chart and config/default do.
func grantWebhookCerts(t *testing.T) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "webhook", "certs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	for _, doc := range strings.Split(string(data), "\n---") {
		var kind metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &kind); err != nil {
			t.Fatal(err)
		}
		if kind.Kind == "ClusterRole" {
			if err := yaml.UnmarshalStrict([]byte(doc), role); err != nil {
				t.Fatal(err)
			}
		}
	}
	if role.Name == "" {
		t.Fatal("config/webhook/certs.yaml has no ClusterRole")
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: operatorUser}},
	}
	create(t, role, binding)
	t.Cleanup(func() {
		_ = adminClient.Delete(context.Background(), binding)
		_ = adminClient.Delete(context.Background(), role)
	})
}

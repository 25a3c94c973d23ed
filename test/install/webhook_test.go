package install

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/internal/testenv"
)

// TestHelmInstallWebhookCertificates: with the chart's defaults the
// operator makes the webhook certificate in the chart's Secret and injects
// its CA into the chart's two webhook configurations, with no more rights
// than the chart grants its ServiceAccount. The fake nodes run no pods, so
// the operator runs here as a process, as that ServiceAccount; the test
// does what the kubelet would, mounting the Secret into the certificate
// folder, and calls the webhook server as the API server would through the
// Service: over TLS, trusting the injected CA, for the Service's name.
func TestHelmInstallWebhookCertificates(t *testing.T) {
	const ns, release = "cooperator-rotated", "rotated"
	const name = "rotated-cooperator"
	restrictedNamespace(t, ns)
	helmInstall(t, release, ns, nil)

	secretName := name + "-webhook-tls"
	secret := &corev1.Secret{}
	get(t, client.ObjectKey{Namespace: ns, Name: secretName}, secret)
	if len(secret.Data) != 0 {
		t.Fatalf("the chart's Secret holds %d keys before the operator ran", len(secret.Data))
	}

	certDir := t.TempDir()
	webhookPort, probePort := freePort(t), freePort(t)
	dnsName := name + "-webhook." + ns + ".svc"
	runOperator(t, ns, name,
		fmt.Sprintf("--webhook-port=%d", webhookPort),
		"--webhook-cert-dir="+certDir,
		"--webhook-cert-secret="+secretName,
		"--webhook-dns-names="+dnsName+","+dnsName+".cluster.local",
		"--webhook-validating-configuration="+name+"-validating",
		"--webhook-mutating-configuration="+name+"-mutating",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probePort),
		"--metrics-bind-address=0",
		"--namespace="+ns,
	)

	poll(t, 90*time.Second, "the operator to write the certificates", func(ctx context.Context) (bool, error) {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: secretName}, secret); err != nil {
			return false, err
		}
		return len(secret.Data["tls.crt"]) > 0 && len(secret.Data["tls.key"]) > 0 && len(secret.Data["ca.crt"]) > 0, nil
	})
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort)
	var status int
	poll(t, 30*time.Second, "the readiness probe to answer", func(ctx context.Context) (bool, error) {
		resp, err := http.Get(readyz)
		if err != nil {
			return false, nil
		}
		status = resp.StatusCode
		return true, resp.Body.Close()
	})
	if status == http.StatusOK {
		t.Error("the operator is ready before its certificate is mounted")
	}
	// The kubelet's part: the Secret's files in the mounted folder.
	for _, file := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(certDir, file), secret.Data[file], 0o600); err != nil {
			t.Fatal(err)
		}
	}

	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	poll(t, 90*time.Second, "the CA in both of the chart's webhook configurations", func(ctx context.Context) (bool, error) {
		mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: name + "-validating"}, validating); err != nil {
			return false, err
		}
		if err := k8s.Get(ctx, client.ObjectKey{Name: name + "-mutating"}, mutating); err != nil {
			return false, err
		}
		var bundles [][]byte
		for _, w := range validating.Webhooks {
			bundles = append(bundles, w.ClientConfig.CABundle)
		}
		for _, w := range mutating.Webhooks {
			bundles = append(bundles, w.ClientConfig.CABundle)
		}
		for _, b := range bundles {
			if !bytes.Equal(b, secret.Data["ca.crt"]) {
				return false, nil
			}
		}
		return len(bundles) > 0, nil
	})
	poll(t, 60*time.Second, "the operator to be ready", func(ctx context.Context) (bool, error) {
		resp, err := http.Get(readyz)
		if err != nil {
			return false, nil
		}
		return resp.StatusCode == http.StatusOK, resp.Body.Close()
	})

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(validating.Webhooks[0].ClientConfig.CABundle) {
		t.Fatal("the injected caBundle is not PEM")
	}
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: dnsName, MinVersion: tls.VersionTLS12}}}
	plan := map[string]any{
		"apiVersion": "cooperator.dev/v1alpha1", "kind": "Plan", "metadata": map[string]any{"name": "bad"},
		"spec": map[string]any{
			"quota":  map[string]any{"cpu": "2", "memory": "4Gi", "storage": "10Gi", "pods": 20},
			"backup": map[string]any{"schedule": "61 * * * *"},
		},
	}
	path := ""
	for _, w := range validating.Webhooks {
		if strings.HasSuffix(*w.ClientConfig.Service.Path, "-plan") {
			path = *w.ClientConfig.Service.Path
		}
	}
	if path == "" {
		t.Fatal("the chart has no validating webhook for Plans")
	}
	review := admit(t, https, fmt.Sprintf("https://127.0.0.1:%d%s", webhookPort, path), plan)
	if review.Response == nil || review.Response.Allowed {
		t.Fatalf("a Plan with schedule 61 * * * * was allowed: %+v", review.Response)
	}
	if want := `spec.backup.schedule: Invalid value: "61 * * * *"`; !strings.Contains(review.Response.Result.Message, want) {
		t.Errorf("the refusal %q does not say %q", review.Response.Result.Message, want)
	}
}

// runOperator builds the operator and runs `cooperator manager` with args,
// as the chart's ServiceAccount, until the test ends.
func runOperator(t *testing.T, namespace, serviceAccount string, args ...string) {
	t.Helper()
	dir := t.TempDir()
	binary := filepath.Join(dir, "cooperator")
	if err := testenv.BuildOperator(context.Background(), binary); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range kubeconfig.AuthInfos {
		user.Impersonate = "system:serviceaccount:" + namespace + ":" + serviceAccount
		user.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	}
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kubeconfig, kubeconfigPath); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "operator.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, binary, append([]string{"manager"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfigPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		_ = logFile.Close()
		if t.Failed() {
			if out, err := os.ReadFile(logPath); err == nil {
				t.Logf("the operator's log:\n%s", out)
			}
		}
	})
}

// admit sends an AdmissionReview for obj to a webhook, as the API server does.
func admit(t *testing.T, c *http.Client, url string, obj map[string]any) *admissionv1.AdmissionReview {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "0e3f2c4a-0000-4000-8000-000000000001",
			Kind:      metav1.GroupVersionKind{Group: "cooperator.dev", Version: "v1alpha1", Kind: "Plan"},
			Resource:  metav1.GroupVersionResource{Group: "cooperator.dev", Version: "v1alpha1", Resource: "plans"},
			Name:      "bad",
			Operation: admissionv1.Create,
		},
	}
	review.Request.Object.Raw = raw
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("calling the webhook as the API server would: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	out := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("the webhook's answer (%s): %v", resp.Status, err)
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// poll waits until cond holds, failing the test after timeout.
func poll(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// Package install tests the two ways a sysadmin installs the operator: the
// Helm chart in charts/cooperator and the kustomization in config/default,
// against a real local control plane with fake nodes. No image can be
// pulled here: the operator's pods go Running on the fake nodes without
// running, so the tests check the objects the install creates.
package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"cooperator.dev/cooperator/internal/testenv"
)

// certManagerVersion pins the cert-manager CRDs the webhook install needs.
const certManagerVersion = "v1.21.2"

var (
	env *testenv.Env
	// k8s acts as the cluster's admin.
	k8s client.Client
	// root is the repo's root folder; bin its tools.
	root, bin string
	// helmHome holds helm's cache, config and data, away from the user's.
	helmHome string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	var err error
	if root, err = testenv.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	bin = filepath.Join(root, "bin")
	if _, err := os.Stat(filepath.Join(bin, "helm")); err != nil {
		fmt.Fprintln(os.Stderr, "bin/helm is missing: run 'make helm'")
		return 1
	}
	if helmHome, err = os.MkdirTemp("", "cooperator-helm-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(helmHome) }()
	env, err = testenv.Start(ctx, testenv.Options{Prepare: installCertManagerCRDs})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the local control plane:", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		for name, path := range env.Logs() {
			fmt.Fprintf(os.Stderr, "log of %s: %s\n", name, path)
		}
		return code
	}
	env.Stop()
	return code
}

// installCertManagerCRDs installs cert-manager's Issuer and Certificate,
// which the chart's webhooks ask for; the operator's own CRDs are left to
// the install under test.
func installCertManagerCRDs(ctx context.Context, cfg *rest.Config) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return err
	}
	var err error
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	dir, err := testenv.ModuleDir("github.com/cert-manager/cert-manager", certManagerVersion)
	if err != nil {
		return err
	}
	for _, name := range []string{"cert-manager.io_issuers.yaml", "cert-manager.io_certificates.yaml"} {
		data, err := os.ReadFile(filepath.Join(dir, "deploy", "crds", name))
		if err != nil {
			return err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(data, crd); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := k8s.Create(ctx, crd); err != nil {
			return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
		}
	}
	return nil
}

// tool runs one of bin/'s tools from the repo root against the local
// control plane and returns its standard output and error.
func tool(name string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+env.Kubeconfig,
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
	)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), errOut.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), errOut.String(), nil
}

// helm runs bin/helm and returns its standard output.
func helm(args ...string) (string, error) {
	out, _, err := tool("helm", args...)
	return out, err
}

// decode reads a stream of YAML documents, skipping empty ones.
func decode(t *testing.T, manifests string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	var objs []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("decoding manifests: %v\n%s", err, manifests)
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}

// find returns the one object of a kind, failing the test otherwise.
func find(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s, got %d", kind, len(found))
	}
	return found[0]
}

// findNamed returns the object of a kind and name, failing the test when
// there is none.
func findNamed(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("want %s %s, got none", kind, name)
	return nil
}

// into converts an unstructured object to a typed one.
func into(t *testing.T, u *unstructured.Unstructured, obj any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj); err != nil {
		t.Fatalf("converting %s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

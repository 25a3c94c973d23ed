package controllers

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/dns"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/testenv"
)

// The operator's identity in tests: a user bound to the ClusterRole that
// controller-gen writes from the RBAC markers, so a missing marker fails a test.
const operatorUser = "cooperator-manager"

var (
	env *testenv.Env
	// adminClient acts as the cluster's admin (a test's "kubectl").
	adminClient client.Client
	// operatorConfig authenticates as the operator's own identity.
	operatorConfig *rest.Config
	testOptions    = specs.Options{IngressNamespace: "ingress-nginx", DNSNamespace: "kube-system", CNPGNamespace: "cnpg-system",
		BaseDomain: "coops.test", Expose: specs.ExposeOptions{ClusterIssuer: "letsencrypt"},
		OperatorNamespace: adminNamespace, RunnerImage: "cooperator.test/cooperator:test"}
	testConfig = Config{Specs: testOptions, CNPGInstalled: true, CNPGDatabaseInstalled: true, CertManagerInstalled: true}
	// mainPostgres is the shared server most tests' coops are placed on.
	mainPostgres *testenv.Postgres
	// dnsServer is the DNS provider of the coops' custom domains.
	dnsServer *testenv.DNSServer
)

// Pinned versions of the third-party CRDs the tests install.
const (
	certManagerVersion = "v1.21.2"
	gatewayAPIVersion  = "v1.6.3"
)

// Test database servers: plans select them by the label pool.
const (
	poolLabel      = "pool"
	mainServer     = "main"
	adminNamespace = "cooperator-system"
)

func TestMain(m *testing.M) {
	// Operator logs stay quiet unless asked for: COOPERATOR_TEST_LOGS=1.
	logs := io.Discard
	if os.Getenv("COOPERATOR_TEST_LOGS") != "" {
		logs = os.Stderr
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logs)))
	ctx := context.Background()
	var err error
	env, err = testenv.Start(ctx, testenv.Options{Prepare: installCRDs})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the local control plane:", err)
		os.Exit(1)
	}
	mainPostgres, err = testenv.StartPostgres(ctx, "")
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting PostgreSQL:", err)
		env.Stop()
		os.Exit(1)
	}
	dnsServer, err = testenv.StartDNS()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting DNS:", err)
		os.Exit(1)
	}
	testConfig.DNS = dns.Verifier{Resolver: dnsServer.Addr, Timeout: time.Second}
	testConfig.DomainRecheck = 2 * time.Second
	code := 1
	if err := setupCluster(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "setting up the local control plane:", err)
	} else {
		code = m.Run()
	}
	if code != 0 {
		for name, path := range env.Logs() {
			fmt.Fprintf(os.Stderr, "log of %s: %s\n", name, path)
		}
		fmt.Fprintf(os.Stderr, "log of PostgreSQL: %s\n", mainPostgres.LogPath)
		os.Exit(code)
	}
	mainPostgres.Remove()
	env.Stop()
	os.Exit(code)
}

// installCRDs installs the operator's CRDs and CloudNativePG's Cluster.
func installCRDs(ctx context.Context, cfg *rest.Config) error {
	if err := apiextensionsv1.AddToScheme(Scheme); err != nil {
		return err
	}
	var err error
	adminClient, err = client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		return err
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	crds, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil {
		return err
	}
	// cert-manager's own CRDs, from its module at a pinned version.
	certManager, err := testenv.ModuleDir("github.com/cert-manager/cert-manager", certManagerVersion)
	if err != nil {
		return err
	}
	crds = append(crds, filepath.Join(certManager, "deploy", "crds", "cert-manager.io_certificates.yaml"))
	// Gateway API's HTTPRoute, from its module at a pinned version.
	gatewayAPI, err := testenv.ModuleDir("sigs.k8s.io/gateway-api", gatewayAPIVersion)
	if err != nil {
		return err
	}
	crds = append(crds, filepath.Join(gatewayAPI, "config", "crd", "standard", "gateway.networking.k8s.io_httproutes.yaml"))
	for _, path := range crds {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := readYAML(path, crd); err != nil {
			return err
		}
		if err := adminClient.Create(ctx, crd); err != nil {
			return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
		}
		if err := waitEstablished(ctx, crd.Name); err != nil {
			return err
		}
	}
	return installCNPGCRD(ctx)
}

// setupCluster installs the operator's RBAC, as the chart does, and the
// shared database server.
func setupCluster(ctx context.Context) error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	role := &rbacv1.ClusterRole{}
	if err := readYAML(filepath.Join(root, "config", "rbac", "role.yaml"), role); err != nil {
		return err
	}
	if err := adminClient.Create(ctx, role); err != nil {
		return err
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: operatorUser}},
	}
	if err := adminClient.Create(ctx, binding); err != nil {
		return err
	}
	operatorConfig = rest.CopyConfig(env.Config)
	operatorConfig.Impersonate = rest.ImpersonationConfig{UserName: operatorUser}

	if err := adminClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: adminNamespace}}); err != nil {
		return err
	}
	return addDatabaseServer(ctx, mainPostgres, mainServer, mainServer, 1000, "pg_trgm", "citext")
}

// addDatabaseServer gives a PostgreSQL server an admin role, a Secret for it
// and a DatabaseServer labelled pool=<pool>.
func addDatabaseServer(ctx context.Context, pg *testenv.Postgres, name, pool string, max int32, extensions ...string) error {
	// One admin role per PostgreSQL server, shared by its DatabaseServers.
	password := "cooperator-admin-pw"
	if err := pg.CreateAdmin(ctx, "cooperator", password); err != nil && !strings.Contains(err.Error(), "already exists") {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "pg-" + name, Namespace: adminNamespace},
		StringData: map[string]string{"username": "cooperator", "password": password},
	}
	if err := adminClient.Create(ctx, secret); err != nil {
		return err
	}
	return adminClient.Create(ctx, databaseServer(name, pool, pg, secret.Name, max, extensions...))
}

func databaseServer(name, pool string, pg *testenv.Postgres, secret string, max int32, extensions ...string) *v1alpha1.DatabaseServer {
	return &v1alpha1.DatabaseServer{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{poolLabel: pool}},
		Spec: v1alpha1.DatabaseServerSpec{
			Host: pg.Host, Port: int32(pg.Port), SSLMode: "disable",
			AdminSecretRef: v1alpha1.SecretReference{Name: secret, Namespace: adminNamespace},
			MaxDatabases:   max,
			Extensions:     extensions,
		},
	}
}

// installCNPGCRD serves postgresql.cnpg.io/v1 Cluster and Database.
func installCNPGCRD(ctx context.Context) error {
	for _, crd := range []*apiextensionsv1.CustomResourceDefinition{testenv.CNPGClusterCRD(), testenv.CNPGDatabaseCRD()} {
		if err := adminClient.Create(ctx, crd); err != nil {
			return err
		}
		if err := waitEstablished(ctx, crd.Name); err != nil {
			return err
		}
	}
	return nil
}

func readYAML(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// controller-gen writes a leading document separator.
	data = []byte(strings.TrimPrefix(strings.TrimSpace(string(data)), "---"))
	return yaml.UnmarshalStrict(data, into)
}

func waitEstablished(ctx context.Context, name string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			return false, nil
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}

// newManager builds a manager as cmd/cooperator does, as the operator's
// identity; wrap, when set, sees every request it sends.
func newManager(t testing.TB, wrap func(http.RoundTripper) http.RoundTripper, edits ...func(*ctrl.Options)) ctrl.Manager {
	t.Helper()
	cfg := rest.CopyConfig(operatorConfig)
	if wrap != nil {
		cfg.Wrap(wrap)
	}
	// Tests start several managers in one process, one after another.
	controllerConfig := ControllerConfig()
	controllerConfig.SkipNameValidation = ptr.To(true)
	opts := ctrl.Options{
		Scheme:     Scheme,
		Cache:      CacheOptions(testConfig),
		Client:     ClientOptions(),
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: controllerConfig,
		// Past this, the manager's goroutines are written out.
		GracefulShutdownTimeout: ptr.To(time.Minute),
	}
	for _, edit := range edits {
		edit(&opts)
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		t.Fatalf("creating manager: %v", err)
	}
	return mgr
}

// startOperator runs the operator's controllers in this process until the
// test ends or the returned function is called.
func startOperator(t testing.TB) (stop func()) {
	t.Helper()
	return startOperatorWith(t, testConfig)
}

// startOperatorWith runs the operator's controllers with cfg.
func startOperatorWith(t testing.TB, cfg Config, edits ...func(*ctrl.Options)) (stop func()) {
	t.Helper()
	return runOperator(t, cfg, nil, edits...)
}

// runOperator runs the operator's controllers with cfg, their requests
// passed through wrap when it is not nil.
func runOperator(t testing.TB, cfg Config, wrap func(http.RoundTripper) http.RoundTripper, edits ...func(*ctrl.Options)) (stop func()) {
	t.Helper()
	mgr := newManager(t, wrap, edits...)
	ctx, cancel := context.WithCancel(context.Background())
	if err := Setup(ctx, mgr, cfg); err != nil {
		t.Fatalf("setting up controllers: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := mgr.Start(ctx); err != nil {
			if f, ferr := os.Create(filepath.Join(env.Dir, "shutdown-goroutines.txt")); ferr == nil {
				_ = pprof.Lookup("goroutine").WriteTo(f, 1)
				_ = f.Close()
			}
			t.Errorf("manager stopped: %v (goroutines in %s)", err, filepath.Join(env.Dir, "shutdown-goroutines.txt"))
		}
	}()
	stop = func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(stop)
	return stop
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }

// newPlan makes a plan for one test.
func newPlan(name string) *v1alpha1.Plan {
	return &v1alpha1.Plan{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.PlanSpec{
			Quota: v1alpha1.PlanQuota{
				CPU: mustQuantity("2"), Memory: mustQuantity("4Gi"), Storage: mustQuantity("10Gi"), Pods: 20,
			},
			Database: v1alpha1.PlanDatabase{
				ConnectionLimit: 5,
				ServerSelector:  &metav1.LabelSelector{MatchLabels: map[string]string{poolLabel: mainServer}},
			},
		},
	}
}

func newCoop(name, plan string) *v1alpha1.Cooperative {
	return &v1alpha1.Cooperative{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.CooperativeSpec{
			DisplayName: "Coop " + name,
			Plan:        plan,
			Admins:      []v1alpha1.Subject{{Kind: v1alpha1.SubjectKindUser, Name: name + "-admin"}},
		},
	}
}

func create(t testing.TB, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := adminClient.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

// waitFor polls until cond holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, cond)
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// waitReason waits until the coop's Ready condition has the reason wanted,
// for its current generation, and returns the coop.
func waitReason(t testing.TB, name, reason string) *v1alpha1.Cooperative {
	t.Helper()
	coop := &v1alpha1.Cooperative{}
	defer func() {
		if t.Failed() {
			t.Logf("last seen status of %s: %+v", name, coop.Status)
		}
	}()
	waitFor(t, 60*time.Second, fmt.Sprintf("coop %s Ready reason %s", name, reason), func(ctx context.Context) (bool, error) {
		if err := adminClient.Get(ctx, client.ObjectKey{Name: name}, coop); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.ReadyCondition)
		return c != nil && c.Reason == reason && coop.Status.ObservedGeneration == coop.Generation, nil
	})
	return coop
}

// waitReady waits until the coop is Ready for its current generation, and
// returns the coop.
func waitReady(t testing.TB, name string) *v1alpha1.Cooperative {
	const status = metav1.ConditionTrue
	t.Helper()
	coop := &v1alpha1.Cooperative{}
	waitFor(t, 60*time.Second, fmt.Sprintf("coop %s Ready=%s", name, status), func(ctx context.Context) (bool, error) {
		if err := adminClient.Get(ctx, client.ObjectKey{Name: name}, coop); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.ReadyCondition)
		return c != nil && c.Status == status && coop.Status.ObservedGeneration == coop.Generation, nil
	})
	return coop
}

// waitReadyWithin is waitReady with a longer wait, for coops that recover
// from a fault.
func waitReadyWithin(t testing.TB, name string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "coop "+name+" Ready", func(ctx context.Context) (bool, error) {
		coop := &v1alpha1.Cooperative{}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: name}, coop); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return meta.IsStatusConditionTrue(coop.Status.Conditions, v1alpha1.ReadyCondition) && coop.Status.ObservedGeneration == coop.Generation, nil
	})
}

func readFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	return string(data), err
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

package controllers

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/postgres"
	"cooperator.dev/cooperator/internal/specs"
)

// requestCounter counts the requests a client sends, by HTTP method and
// by method and path.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
	paths  map[string]int
	writes []string
}

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		c.mu.Lock()
		if c.counts == nil {
			c.counts, c.paths = map[string]int{}, map[string]int{}
		}
		c.counts[req.Method]++
		c.paths[req.Method+" "+req.URL.Path]++
		if req.Method != http.MethodGet {
			c.writes = append(c.writes, req.Method+" "+req.URL.Path)
		}
		c.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

func (c *requestCounter) writeRequests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.writes...)
}

// requests is how many requests of method went to path.
func (c *requestCounter) requests(method, path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paths[method+" "+path]
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// countedReconciler is a second operator, as after a restart: a fresh
// cache, and every request it sends counted. The database server's
// connection is opened as the DatabaseServer controller would, outside the
// count.
func countedReconciler(t *testing.T) (context.Context, *CooperativeReconciler, *requestCounter, ctrl.Manager) {
	t.Helper()
	counter := &requestCounter{}
	mgr := newManager(t, counter.wrap)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	servers := &postgres.Servers{}
	serverReconciler := &DatabaseServerReconciler{Client: adminClient, APIReader: adminClient, Servers: servers}
	if _, err := serverReconciler.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Name: mainServer}}); err != nil {
		t.Fatal(err)
	}
	r := &CooperativeReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("cooperator-test"),
		Options: testOptions, Servers: servers,
		CNPGInstalled: testConfig.CNPGInstalled, CNPGDatabaseInstalled: testConfig.CNPGDatabaseInstalled, CertManagerInstalled: testConfig.CertManagerInstalled,
	}
	return ctx, r, counter, mgr
}

func TestReconcilingUnchangedCoopWritesNothing(t *testing.T) {
	stop := startOperator(t)
	create(t, newPlan("steady-plan"), newCoop("steady", "steady-plan"))
	waitReady(t, "steady")
	stop()

	ctx, r, counter, mgr := countedReconciler(t)
	ddlBefore, err := mainPostgres.DDLCount("cooperator")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		res, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Name: "steady"}})
		if err != nil || !res.IsZero() {
			t.Fatalf("reconcile %d: result %+v, error %v", i, res, err)
		}
	}
	if writes := counter.writeRequests(); len(writes) != 0 {
		t.Errorf("reconciling an unchanged coop sent %d write requests: %v", len(writes), writes)
	}
	ddlAfter, err := mainPostgres.DDLCount("cooperator")
	if err != nil {
		t.Fatal(err)
	}
	if ddlAfter != ddlBefore || ddlBefore == 0 {
		t.Errorf("DDL statements logged: %d before, %d after reconciling an unchanged coop; want the same, and some from provisioning", ddlBefore, ddlAfter)
	}

	// The counter sees writes: a changed plan must cost exactly the quota
	// that changed. The quota was created, so its first change also moves
	// the create's managedFields entry into the operator's Apply entry.
	changeQuota := func(memory string) []string {
		t.Helper()
		before := len(counter.writeRequests())
		plan := &v1alpha1.Plan{}
		mustGet(t, "", "steady-plan", plan)
		plan.Spec.Quota.Memory = resource.MustParse(memory)
		if err := adminClient.Update(ctx, plan); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the new plan in the cache", func(ctx context.Context) (bool, error) {
			p := &v1alpha1.Plan{}
			err := mgr.GetClient().Get(ctx, client.ObjectKey{Name: "steady-plan"}, p)
			return err == nil && p.Generation == plan.Generation, err
		})
		waitFor(t, 10*time.Second, "the quota's last change in the cache", func(ctx context.Context) (bool, error) {
			q, live := &corev1.ResourceQuota{}, &corev1.ResourceQuota{}
			if err := mgr.GetClient().Get(ctx, client.ObjectKey{Namespace: "coop-steady", Name: specs.ResourceQuotaName}, q); err != nil {
				return false, err
			}
			err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-steady", Name: specs.ResourceQuotaName}, live)
			return err == nil && q.ResourceVersion == live.ResourceVersion, err
		})
		if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Name: "steady"}}); err != nil {
			t.Fatal(err)
		}
		return counter.writeRequests()[before:]
	}
	writes := changeQuota("5Gi")
	if len(writes) != 2 || !strings.Contains(writes[0], "/resourcequotas/") || !strings.Contains(writes[1], "/resourcequotas/") {
		t.Errorf("after the first quota change the writes were %v, want the ResourceQuota's managedFields moved, then one apply", writes)
	}
	if writes := changeQuota("6Gi"); len(writes) != 1 || !strings.Contains(writes[0], "/resourcequotas/") {
		t.Errorf("after the second quota change the writes were %v, want one apply of the ResourceQuota", writes)
	}
}

func TestBadInputIsRefusedWithTheFieldAndReason(t *testing.T) {
	ctx := context.Background()
	coop := func(name string, edit func(*v1alpha1.Cooperative)) *v1alpha1.Cooperative {
		c := newCoop(name, "any")
		edit(c)
		return c
	}
	plan := func(edit func(*v1alpha1.Plan)) *v1alpha1.Plan {
		p := newPlan("bad-plan")
		edit(p)
		return p
	}
	withDomain := func(name, domain string) *v1alpha1.Cooperative {
		return coop(name, func(c *v1alpha1.Cooperative) {
			c.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "shop", Blueprint: "web", Version: "1.0", Domains: []string{domain}}}
		})
	}
	cases := []struct {
		name string
		obj  client.Object
		want []string
	}{
		{"name with a dot", coop("bad.name", func(*v1alpha1.Cooperative) {}), []string{"metadata.name", "no dots"}},
		{"name too long", coop(strings.Repeat("a", 59), func(*v1alpha1.Cooperative) {}), []string{"metadata.name", "58 characters"}},
		{"empty displayName", coop("bad-empty", func(c *v1alpha1.Cooperative) { c.Spec.DisplayName = "" }), []string{"spec.displayName"}},
		{"blank displayName", coop("bad-blank", func(c *v1alpha1.Cooperative) { c.Spec.DisplayName = "   " }), []string{"spec.displayName", "must not be blank"}},
		{"unknown deletionPolicy", coop("bad-policy", func(c *v1alpha1.Cooperative) { c.Spec.DeletionPolicy = "Shred" }), []string{"spec.deletionPolicy", "Unsupported value"}},
		{"unknown admin kind", coop("bad-admin", func(c *v1alpha1.Cooperative) { c.Spec.Admins[0].Kind = "Robot" }), []string{"spec.admins[0].kind"}},
		{"wildcard domain", withDomain("bad-wildcard", "*.bakers.example"), []string{"spec.apps[0].domains[0]", "wildcards are not allowed"}},
		{"IP address domain", withDomain("bad-ip", "192.0.2.10"), []string{"spec.apps[0].domains[0]", "IP addresses are not allowed"}},
		{"upper-case domain", withDomain("bad-upper", "Shop.Bakers.Example"), []string{"spec.apps[0].domains[0]", "must be lower case"}},
		{"single-label domain", withDomain("bad-single", "localhost"), []string{"spec.apps[0].domains[0]", "two labels or more"}},
		{"label over 63", withDomain("bad-label", strings.Repeat("a", 64)+".example"), []string{"spec.apps[0].domains[0]", "at most 63"}},
		{"name over 253", withDomain("bad-long", strings.Repeat(strings.Repeat("a", 60)+".", 5)+"example"), []string{"spec.apps[0].domains[0]", "253"}},
		{"negative cpu", plan(func(p *v1alpha1.Plan) { p.Spec.Quota.CPU = resource.MustParse("-1") }), []string{"spec.quota.cpu", "must not be negative"}},
		{"negative pods", plan(func(p *v1alpha1.Plan) { p.Spec.Quota.Pods = -3 }), []string{"spec.quota.pods"}},
		{"negative default memory", plan(func(p *v1alpha1.Plan) {
			m := resource.MustParse("-64Mi")
			p.Spec.ContainerDefaults.Limits.Memory = &m
		}), []string{"spec.containerDefaults.limits", "memory must not be negative"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := adminClient.Create(ctx, tc.obj)
			if err == nil {
				_ = adminClient.Delete(ctx, tc.obj)
				t.Fatalf("created; want a refusal naming %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err.Error(), w)
				}
			}
			if err := adminClient.Get(ctx, client.ObjectKeyFromObject(tc.obj), tc.obj.DeepCopyObject().(client.Object)); err == nil {
				t.Errorf("a refused object exists")
			}
		})
	}
}

package controllers

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/testenv"
)

// serveWebhooks runs the operator with its webhook server on loopback and
// installs the generated webhook configurations, pointed at it, so the real
// API server calls the real webhooks.
func serveWebhooks(t *testing.T) {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig
	cfg.Webhooks = true
	startOperatorWith(t, cfg, func(o *ctrl.Options) {
		o.WebhookServer = webhook.NewServer(webhook.Options{
			Host: "127.0.0.1", Port: port,
			CertDir: filepath.Dir(env.ServingCert), CertName: filepath.Base(env.ServingCert), KeyName: filepath.Base(env.ServingKey),
		})
	})

	installWebhooks(t, "cooperator-test", fmt.Sprintf("https://127.0.0.1:%d", port), env.CABundle)
}

func TestWebhookRefusesDomainsTheCoopCannotHave(t *testing.T) {
	serveWebhooks(t)
	ctx := context.Background()
	holder := &v1alpha1.DomainClaim{}
	holder.Name = "taken.example.org"
	holder.Spec = v1alpha1.DomainClaimSpec{Cooperative: "holder", App: "shop", Token: "cooperator-0123456789abcdef"}
	create(t, holder)
	t.Cleanup(func() { _ = adminClient.Delete(context.Background(), holder) })

	coop := newCoop("asker", "any")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{
		{Name: "shop", Blueprint: "web", Version: "1.0", Domains: []string{"free.example.org"}},
		{Name: "blog", Blueprint: "web", Version: "1.0", Domains: []string{"taken.example.org", "free.example.org", "x.other.coops.test"}},
	}
	var err error
	// The webhook server may still be starting: the API server then refuses
	// every coop with a connection error, which is not what is tested.
	waitFor(t, 30*time.Second, "the webhook to answer", func(ctx context.Context) (bool, error) {
		err = adminClient.Create(ctx, coop)
		return err == nil || !strings.Contains(err.Error(), "failed calling webhook"), nil
	})
	if err == nil {
		t.Fatal("a coop asking for a claimed domain was admitted")
	}
	for _, want := range []string{
		`spec.apps[1].domains[0]: Forbidden: "taken.example.org" is already claimed by another cooperative`,
		`spec.apps[1].domains[1]: Duplicate value`,
		`spec.apps[1].domains[2]: Forbidden: "x.other.coops.test" is under the platform's domain coops.test`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if err := adminClient.Get(ctx, client.ObjectKeyFromObject(coop), &v1alpha1.Cooperative{}); err == nil {
		t.Error("the refused coop exists")
	}

	// A coop without custom domains costs the validator no call, and its
	// updates cost the defaulter none: the API server counts each call its
	// match conditions left out. Its create still goes to the defaulter.
	before := matchConditionExclusions(t)
	plain := newCoop("plain", "any")
	create(t, plain)
	t.Cleanup(func() { _ = adminClient.Delete(context.Background(), plain) })
	if !slices.Contains(plain.Finalizers, v1alpha1.DatabaseFinalizer) {
		t.Errorf("a new coop without domains has finalizers %v, want %s", plain.Finalizers, v1alpha1.DatabaseFinalizer)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mustGet(t, "", "plain", plain)
		plain.Spec.DisplayName = "Plain, renamed"
		return adminClient.Update(ctx, plain)
	})
	if err != nil {
		t.Fatalf("updating a coop without domains: %v", err)
	}
	after := matchConditionExclusions(t)
	for _, call := range []string{"vcooperative.cooperator.dev CREATE", "vcooperative.cooperator.dev UPDATE", "mcooperative.cooperator.dev UPDATE"} {
		if after[call] <= before[call] {
			t.Errorf("%s: the API server left out no call for a coop without domains (%v, then %v)", call, before[call], after[call])
		}
	}
	if call := "mcooperative.cooperator.dev CREATE"; after[call] != before[call] {
		t.Errorf("%s: the API server left out a create's call to the defaulter, which gives the finalizer", call)
	}

	// The holder itself, and the coop's own part of the platform's domain,
	// pass; domains are stored as DNS compares them.
	ok := newCoop("holder", "any")
	ok.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "shop", Blueprint: "web", Version: "1.0", Domains: []string{"Taken.Example.ORG.", "www.holder.coops.test"}}}
	if err := adminClient.Create(ctx, ok); err != nil {
		t.Fatalf("the holder was refused: %v", err)
	}
	if got := ok.Spec.Apps[0].Domains[0]; got != "taken.example.org" {
		t.Errorf("stored domain %q, want taken.example.org", got)
	}
	// The database finalizer comes with the coop, before anything exists.
	if !slices.Contains(ok.Finalizers, v1alpha1.DatabaseFinalizer) {
		t.Errorf("a new coop has finalizers %v, want %s", ok.Finalizers, v1alpha1.DatabaseFinalizer)
	}
	if err := adminClient.Delete(ctx, ok); err != nil {
		t.Fatal(err)
	}
	// An update never adds it back: the operator removes it for good.
	waitFor(t, 30*time.Second, "the coop with the finalizer to go", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKeyFromObject(ok), &v1alpha1.Cooperative{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})

	// A coop keeps the domains it had, even one another coop came to hold:
	// its other changes are taken; a domain it adds is still checked.
	keeper := newCoop("keeper", "any")
	keeper.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "shop", Blueprint: "web", Version: "1.0", Domains: []string{"kept.example.org"}}}
	create(t, keeper)
	t.Cleanup(func() { _ = adminClient.Delete(context.Background(), keeper) })
	lost := &v1alpha1.DomainClaim{}
	lost.Name = "kept.example.org"
	lost.Spec = v1alpha1.DomainClaimSpec{Cooperative: "holder", App: "shop", Token: "cooperator-0123456789abcdef"}
	create(t, lost)
	t.Cleanup(func() { _ = adminClient.Delete(context.Background(), lost) })
	// The operator writes the coop too (its database server), hence the retries.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mustGet(t, "", "keeper", keeper)
		keeper.Spec.DisplayName = "Keeper, renamed"
		return adminClient.Update(ctx, keeper)
	})
	if err != nil {
		t.Errorf("a change beside a domain the coop had was refused: %v", err)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mustGet(t, "", "keeper", keeper)
		keeper.Spec.Apps[0].Domains = append(keeper.Spec.Apps[0].Domains, "taken.example.org")
		return adminClient.Update(ctx, keeper)
	})
	if err == nil || !strings.Contains(err.Error(), `spec.apps[0].domains[1]: Forbidden`) {
		t.Errorf("a claimed domain added by an update: %v, want a refusal naming it", err)
	}
}

// matchConditionExclusions reads from the API server's metrics the calls to
// each webhook that its match conditions left out, by "<webhook> <operation>".
func matchConditionExclusions(t *testing.T) map[string]float64 {
	t.Helper()
	hc, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(env.Config.Host + "/metrics")
	if err != nil {
		t.Fatalf("reading the API server's metrics: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the API server's metrics: %v", err)
	}
	out := map[string]float64{}
	for _, m := range families["apiserver_admission_match_condition_exclusions_total"].GetMetric() {
		out[labelValue(m, "name")+" "+labelValue(m, "operation")] += m.GetCounter().GetValue()
	}
	return out
}

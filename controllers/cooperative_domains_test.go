package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/dns"
	"cooperator.dev/cooperator/internal/specs"
)

// ingressHosts are the hosts of the shop app's Ingress in coop bakers.
func ingressHosts(t testing.TB) []string {
	t.Helper()
	ing := &networkingv1.Ingress{}
	mustGet(t, "coop-bakers", "shop", ing)
	var hosts []string
	for _, r := range ing.Spec.Rules {
		hosts = append(hosts, r.Host)
	}
	return hosts
}

func domainsReason(t testing.TB, name, reason string) *v1alpha1.Cooperative {
	t.Helper()
	coop := &v1alpha1.Cooperative{}
	waitFor(t, 60*time.Second, fmt.Sprintf("coop %s DomainsReady reason %s", name, reason), func(ctx context.Context) (bool, error) {
		if err := adminClient.Get(ctx, client.ObjectKey{Name: name}, coop); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.DomainsReadyCondition)
		return c != nil && c.Reason == reason, nil
	})
	return coop
}

func TestCustomDomainsAreExposedOnlyWhileVerified(t *testing.T) {
	startOperator(t)
	coop := newCoop("bakers", "domain-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "shop", Blueprint: "web-domains", Version: "1.0", Domains: []string{"shop.bakers.example"}}}
	create(t, testBlueprint(t, "web-domains", nil), newPlan("domain-plan"), coop)

	// Missing record: the app serves on its platform hostname only, and the
	// coop is told what to publish.
	coop = domainsReason(t, "bakers", v1alpha1.DomainUnverifiedReason)
	d := coop.Status.Apps[0].Domains[0]
	if d.TXTRecord != "_cooperator-challenge.shop.bakers.example" || !strings.HasPrefix(d.TXTValue, "cooperator-") || d.Verified {
		t.Errorf("domain status = %+v", d)
	}
	waitFor(t, 30*time.Second, "the Ingress", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-bakers", Name: "shop"}, &networkingv1.Ingress{})
		return err == nil, client.IgnoreNotFound(err)
	})
	if hosts := ingressHosts(t); slices.Contains(hosts, "shop.bakers.example") {
		t.Errorf("an unverified domain is exposed: %v", hosts)
	}

	// Wrong token: still not exposed.
	dnsServer.SetTXT(d.TXTRecord, "cooperator-not-the-token")
	waitFor(t, 30*time.Second, "the wrong token to be reported", func(ctx context.Context) (bool, error) {
		c := &v1alpha1.Cooperative{}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: "bakers"}, c); err != nil {
			return false, err
		}
		return len(c.Status.Apps) == 1 && len(c.Status.Apps[0].Domains) == 1 &&
			strings.Contains(c.Status.Apps[0].Domains[0].Message, "another value") && !c.Status.Apps[0].Domains[0].Verified, nil
	})
	if hosts := ingressHosts(t); slices.Contains(hosts, "shop.bakers.example") {
		t.Errorf("a domain with the wrong token is exposed: %v", hosts)
	}

	// Right token: exposed.
	dnsServer.SetTXT(d.TXTRecord, "v=spf1 -all", d.TXTValue)
	coop = domainsReason(t, "bakers", v1alpha1.DomainsVerifiedReason)
	if hosts := ingressHosts(t); !slices.Contains(hosts, "shop.bakers.example") || !slices.Contains(hosts, "shop.bakers.coops.test") {
		t.Errorf("Ingress hosts %v", hosts)
	}
	if !slices.Contains(coop.Status.Apps[0].URLs, "https://shop.bakers.example") {
		t.Errorf("URLs %v", coop.Status.Apps[0].URLs)
	}
	claim := &v1alpha1.DomainClaim{}
	mustGet(t, "", "shop.bakers.example", claim)
	if !claim.Status.Verified || claim.Spec.Cooperative != "bakers" {
		t.Errorf("claim = %+v", claim)
	}

	// Record removed later: taken off the Ingress.
	dnsServer.SetTXT(d.TXTRecord)
	domainsReason(t, "bakers", v1alpha1.DomainUnverifiedReason)
	waitFor(t, 30*time.Second, "the domain to leave the Ingress", func(ctx context.Context) (bool, error) {
		return !slices.Contains(ingressHosts(t), "shop.bakers.example"), nil
	})

	// A hostname under the platform's domain is refused.
	update(t, "bakers", func(c *v1alpha1.Cooperative) { c.Spec.Apps[0].Domains = []string{"shop.other.coops.test"} })
	coop = domainsReason(t, "bakers", v1alpha1.DomainInvalidReason)
	if !meta.IsStatusConditionTrue(coop.Status.Conditions, v1alpha1.StalledCondition) {
		t.Errorf("an invalid domain does not stall the coop: %+v", coop.Status.Conditions)
	}
	// Its old claim is released.
	waitFor(t, 30*time.Second, "the old claim to be released", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Name: "shop.bakers.example"}, &v1alpha1.DomainClaim{})
		return client.IgnoreNotFound(err) == nil && err != nil, nil
	})

	// A hostname under the coop's own part of the platform's domain needs no TXT record.
	update(t, "bakers", func(c *v1alpha1.Cooperative) { c.Spec.Apps[0].Domains = []string{"www.bakers.coops.test"} })
	coop = domainsReason(t, "bakers", v1alpha1.DomainsVerifiedReason)
	if d := coop.Status.Apps[0].Domains[0]; !d.Verified || d.TXTRecord != "" {
		t.Errorf("the coop's own hostname: %+v", d)
	}
	waitFor(t, 30*time.Second, "the coop's own hostname on the Ingress", func(ctx context.Context) (bool, error) {
		return slices.Contains(ingressHosts(t), "www.bakers.coops.test"), nil
	})
}

func TestWildcardTLSCertifiesOnlyCustomDomains(t *testing.T) {
	cfg := testConfig
	cfg.Specs.Expose.WildcardTLS = true
	startOperatorWith(t, cfg)
	create(t, testBlueprint(t, "web-wild", nil), newPlan("wild-plan"))
	coop := newCoop("wild", "wild-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "shop", Blueprint: "web-wild", Version: "1.0", Domains: []string{"shop.wild.example"}}}
	create(t, coop)
	coop = domainsReason(t, "wild", v1alpha1.DomainUnverifiedReason)
	dnsServer.SetTXT(coop.Status.Apps[0].Domains[0].TXTRecord, coop.Status.Apps[0].Domains[0].TXTValue)
	waitReady(t, "wild")

	ing := &networkingv1.Ingress{}
	waitFor(t, 30*time.Second, "both hostnames on the Ingress", func(ctx context.Context) (bool, error) {
		if err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-wild", Name: "shop"}, ing); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return len(ing.Spec.Rules) == 2, nil
	})
	if len(ing.Spec.TLS) != 2 || ing.Spec.TLS[0].SecretName != "" || !slices.Equal(ing.Spec.TLS[0].Hosts, []string{"shop-wild.coops.test"}) ||
		ing.Spec.TLS[1].SecretName != "shop-tls" || !slices.Equal(ing.Spec.TLS[1].Hosts, []string{"shop.wild.example"}) {
		t.Errorf("TLS = %+v: want the platform's hostname under the controller's wildcard, the custom domain in shop-tls", ing.Spec.TLS)
	}
	cert := &unstructured.Unstructured{}
	cert.SetGroupVersionKind(CertManagerCertificate)
	mustGet(t, "coop-wild", "shop", cert)
	if names, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames"); !slices.Equal(names, []string{"shop.wild.example"}) {
		t.Errorf("the app's Certificate covers %v; want only its custom domain", names)
	}

	// app "a" of coop "b-c" and app "a-b" of coop "c" both make a-b-c.coops.test:
	// the first holds it, the second is told, and the first keeps it.
	first := newCoop("b-c", "wild-plan")
	first.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "a", Blueprint: "web-wild", Version: "1.0"}}
	create(t, first)
	waitReady(t, "b-c")
	second := newCoop("c", "wild-plan")
	second.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "a-b", Blueprint: "web-wild", Version: "1.0"}}
	create(t, second)
	second = domainsReason(t, "c", v1alpha1.DomainConflictReason)
	if c := meta.FindStatusCondition(second.Status.Conditions, v1alpha1.DomainsReadyCondition); !strings.Contains(c.Message, `"a-b-c.coops.test" is already claimed by another cooperative`) {
		t.Errorf("message = %q", c.Message)
	}
	claim := &v1alpha1.DomainClaim{}
	mustGet(t, "", "a-b-c.coops.test", claim)
	if claim.Spec.Cooperative != "b-c" {
		t.Errorf("the hostname moved to %s", claim.Spec.Cooperative)
	}
	if err := adminClient.Get(context.Background(), client.ObjectKey{Namespace: "coop-c", Name: "a-b"}, &networkingv1.Ingress{}); !apierrors.IsNotFound(err) {
		t.Errorf("the loser got an Ingress for a hostname it does not hold: %v", err)
	}
}

func TestGatewayExposesAppsWithHTTPRoutes(t *testing.T) {
	cfg := testConfig
	cfg.Specs.Expose.Gateway = &specs.GatewayRef{Namespace: "gateways", Name: "public"}
	startOperatorWith(t, cfg)
	create(t, testBlueprint(t, "web-routed", nil), newPlan("routed-plan"))
	coop := newCoop("routed", "routed-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "shop", Blueprint: "web-routed", Version: "1.0"}}
	create(t, coop)
	waitReady(t, "routed")

	route := &unstructured.Unstructured{}
	route.SetGroupVersionKind(specs.HTTPRoute)
	mustGet(t, "coop-routed", "shop", route)
	hosts, _, _ := unstructured.NestedStringSlice(route.Object, "spec", "hostnames")
	parents, _, _ := unstructured.NestedSlice(route.Object, "spec", "parentRefs")
	if !slices.Equal(hosts, []string{"shop.routed.coops.test"}) || len(parents) != 1 || parents[0].(map[string]any)["name"] != "public" {
		t.Errorf("HTTPRoute hostnames %v, parents %v", hosts, parents)
	}
	if err := adminClient.Get(context.Background(), client.ObjectKey{Namespace: "coop-routed", Name: "shop"}, &networkingv1.Ingress{}); !apierrors.IsNotFound(err) {
		t.Errorf("an Ingress was made beside the HTTPRoute: %v", err)
	}

	// An app taken out takes its route with it.
	update(t, "routed", func(c *v1alpha1.Cooperative) { c.Spec.Apps = nil })
	waitFor(t, 30*time.Second, "the HTTPRoute to go", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-routed", Name: "shop"}, route)
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

func TestHundredCoopsRaceForTenHostnames(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	create(t, testBlueprint(t, "web-race", nil), newPlan("race-plan"))
	const coops, hostnames = 100, 10
	t.Cleanup(func() {
		// Their rechecks would load the tests that follow.
		_ = adminClient.DeleteAllOf(context.Background(), &v1alpha1.Cooperative{}, client.MatchingLabels{"test": "race"})
	})
	for i := range coops {
		c := newCoop(fmt.Sprintf("race-%03d", i), "race-plan")
		c.Labels = map[string]string{"test": "race"}
		c.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "web", Blueprint: "web-race", Version: "1.0",
			Domains: []string{fmt.Sprintf("h%d.race.example", i%hostnames)}}}
		create(t, c)
	}
	// Every coop settles: it either holds its hostname or is told it is taken.
	var claims v1alpha1.DomainClaimList
	waitFor(t, 3*time.Minute, "every racing coop to settle", func(ctx context.Context) (bool, error) {
		var list v1alpha1.CooperativeList
		if err := adminClient.List(ctx, &list); err != nil {
			return false, err
		}
		settled := 0
		for _, c := range list.Items {
			cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.DomainsReadyCondition)
			if strings.HasPrefix(c.Name, "race-") && cond != nil &&
				(cond.Reason == v1alpha1.DomainConflictReason || cond.Reason == v1alpha1.DomainUnverifiedReason) {
				settled++
			}
		}
		return settled == coops, nil
	})
	if err := adminClient.List(ctx, &claims); err != nil {
		t.Fatal(err)
	}
	winners := map[string]string{}
	for _, c := range claims.Items {
		if strings.HasSuffix(c.Name, ".race.example") {
			winners[c.Name] = c.Spec.Cooperative
			// The winner publishes its token and gets the hostname.
			dnsServer.SetTXT(dns.RecordName(c.Name), c.Spec.Token)
		}
	}
	if len(winners) != hostnames {
		t.Fatalf("%d hostnames claimed, want %d: %v", len(winners), hostnames, winners)
	}
	for host, coop := range winners {
		domainsReason(t, coop, v1alpha1.DomainsVerifiedReason)
		// Exactly one coop exposes the hostname.
		var ingresses networkingv1.IngressList
		if err := adminClient.List(ctx, &ingresses); err != nil {
			t.Fatal(err)
		}
		holders := 0
		for _, ing := range ingresses.Items {
			for _, r := range ing.Spec.Rules {
				if r.Host == host {
					holders++
				}
			}
		}
		if holders != 1 {
			t.Errorf("%s is exposed by %d Ingresses, want 1", host, holders)
		}
	}
	var list v1alpha1.CooperativeList
	if err := adminClient.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	losers := 0
	for _, c := range list.Items {
		if cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.DomainsReadyCondition); strings.HasPrefix(c.Name, "race-") &&
			cond != nil && cond.Reason == v1alpha1.DomainConflictReason {
			losers++
		}
	}
	if losers != coops-hostnames {
		t.Errorf("%d coops were told their hostname is taken, want %d", losers, coops-hostnames)
	}
}

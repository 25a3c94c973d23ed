package specs

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestAppHostname(t *testing.T) {
	coop := testCoop()
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no base domain: not exposed", Options{}, ""},
		{"one certificate per app", Options{BaseDomain: "coops.example"}, "shop.bakers.coops.example"},
		{"one wildcard certificate: one label below the base", Options{BaseDomain: "coops.example", Expose: ExposeOptions{WildcardTLS: true}}, "shop-bakers.coops.example"},
	} {
		if got := AppHostname(coop, "shop", tc.opts); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestAppIngressTLS(t *testing.T) {
	coop := testCoop()
	platform, domains := []string{"shop.bakers.coops.example"}, []string{"shop.bakers.example"}

	ing := AppIngress(coop, "shop", "shop-web", 80, platform, domains, ExposeOptions{IngressClass: "nginx"})
	if len(ing.Spec.TLS) != 1 || *ing.Spec.TLS[0].SecretName != "shop-tls" || !slices.Equal(ing.Spec.TLS[0].Hosts, append(platform, domains...)) {
		t.Errorf("per-app certificate: TLS = %+v, want every host in shop-tls", ing.Spec.TLS)
	}
	if *ing.Spec.IngressClassName != "nginx" || len(ing.Spec.Rules) != 2 {
		t.Errorf("class %v, %d rules", ing.Spec.IngressClassName, len(ing.Spec.Rules))
	}

	ing = AppIngress(coop, "shop", "shop-web", 80, []string{"shop-bakers.coops.example"}, domains, ExposeOptions{WildcardTLS: true})
	if len(ing.Spec.TLS) != 2 {
		t.Fatalf("wildcard: TLS = %+v, want the platform's hosts and the custom domains apart", ing.Spec.TLS)
	}
	if ing.Spec.TLS[0].SecretName != nil {
		t.Errorf("wildcard: the platform's hostnames name Secret %q; the controller's default certificate must serve them", *ing.Spec.TLS[0].SecretName)
	}
	if *ing.Spec.TLS[1].SecretName != "shop-tls" || !slices.Equal(ing.Spec.TLS[1].Hosts, domains) {
		t.Errorf("wildcard: custom domains TLS = %+v", ing.Spec.TLS[1])
	}
	if got := CertifiedHosts([]string{"shop-bakers.coops.example"}, nil, ExposeOptions{WildcardTLS: true}); len(got) != 0 {
		t.Errorf("wildcard with no custom domain certifies %v, want nothing", got)
	}
}

func TestAppHTTPRouteAttachesToTheGateway(t *testing.T) {
	route := AppHTTPRoute(testCoop(), "shop", "shop-web", 8080, []string{"shop.bakers.coops.example"}, GatewayRef{Namespace: "gateways", Name: "public"})
	if route.GetKind() != "HTTPRoute" || route.GetNamespace() != "coop-bakers" || route.GetName() != "shop" {
		t.Errorf("route is %s %s/%s", route.GetKind(), route.GetNamespace(), route.GetName())
	}
	parents, _, _ := unstructured.NestedSlice(route.Object, "spec", "parentRefs")
	if p := parents[0].(map[string]any); p["namespace"] != "gateways" || p["name"] != "public" || p["kind"] != "Gateway" {
		t.Errorf("parentRefs = %v", parents)
	}
	hosts, _, _ := unstructured.NestedStringSlice(route.Object, "spec", "hostnames")
	rules, _, _ := unstructured.NestedSlice(route.Object, "spec", "rules")
	backend := rules[0].(map[string]any)["backendRefs"].([]any)[0].(map[string]any)
	if !slices.Equal(hosts, []string{"shop.bakers.coops.example"}) || backend["name"] != "shop-web" || backend["port"] != int64(8080) {
		t.Errorf("hostnames %v, backend %v", hosts, backend)
	}
	if refs := route.GetOwnerReferences(); len(refs) != 1 || refs[0].Name != "bakers" {
		t.Errorf("owner references = %v", refs)
	}
}

package specs

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// AppLabel names the app of a coop an object belongs to.
const AppLabel = v1alpha1.AppLabel

// AppLabels are put on every object of one app.
func AppLabels(coop *v1alpha1.Cooperative, app string) map[string]string {
	l := Labels(coop)
	l[AppLabel] = app
	return l
}

// AppSecretName holds an app's generated parameters.
func AppSecretName(app string) string { return app + "-secrets" }

// AppSecret holds the values of an app's Generated parameters, made once
// and kept across reconciles.
func AppSecret(coop *v1alpha1.Cooperative, app string, values map[string]string) *corev1ac.SecretApplyConfiguration {
	data := make(map[string][]byte, len(values))
	for k, v := range values {
		data[k] = []byte(v)
	}
	return corev1ac.Secret(AppSecretName(app), coop.NamespaceName()).
		WithLabels(AppLabels(coop, app)).
		WithOwnerReferences(OwnerReference(coop)).
		WithType(corev1.SecretTypeOpaque).
		WithData(data)
}

// ExposeOptions say how the host exposes apps.
type ExposeOptions struct {
	// IngressClass of the Ingresses, when set.
	IngressClass string
	// ClusterIssuer, when set and cert-manager is installed, issues each
	// app's certificate through a Certificate object.
	ClusterIssuer string
	// Gateway, when set, exposes apps with Gateway API HTTPRoutes attached
	// to this Gateway instead of Ingresses.
	Gateway *GatewayRef
	// WildcardTLS gives apps the hostnames <app>-<coop>.<base domain>, all
	// served under one certificate for *.<base domain> that the ingress
	// controller or the Gateway holds: a host with a thousand coops stays
	// under Let's Encrypt's 50 certificates per registered domain a week.
	// Only custom domains then get Certificates of their own.
	WildcardTLS bool
}

// GatewayRef names a Gateway API Gateway.
type GatewayRef struct {
	Namespace, Name string
}

// AppHostname is the hostname the platform gives an app of a coop, or ""
// when the host has no base domain.
func AppHostname(coop *v1alpha1.Cooperative, app string, opts Options) string {
	switch {
	case opts.BaseDomain == "":
		return ""
	case opts.Expose.WildcardTLS:
		return app + "-" + coop.Name + "." + opts.BaseDomain
	default:
		return app + "." + coop.Name + "." + opts.BaseDomain
	}
}

// PlatformDomain says where a custom hostname stands in the platform's base
// domain: own is true under <coop>.<base>, the coop's own part, which needs
// no proof; reserved says why any other hostname under base is not the
// coop's. A hostname outside base gives false and "".
func PlatformDomain(coop *v1alpha1.Cooperative, host, base string) (own bool, reserved string) {
	if base == "" || (host != base && !strings.HasSuffix(host, "."+base)) {
		return false, ""
	}
	if strings.HasSuffix(host, "."+coop.Name+"."+base) {
		return true, ""
	}
	return false, fmt.Sprintf("%q is under the platform's domain %s, where only hostnames under %s.%s are this coop's", host, base, coop.Name, base)
}

// AppTLSSecretName holds the certificate of an app's hostnames.
func AppTLSSecretName(app string) string { return app + "-tls" }

// CertifiedHosts are the hostnames an app's own Certificate covers: all of
// them, or with a wildcard certificate only the coop's custom domains.
func CertifiedHosts(platform, domains []string, opts ExposeOptions) []string {
	if opts.WildcardTLS {
		return domains
	}
	return append(slices.Clone(platform), domains...)
}

// AppIngress exposes an app's Service on its platform hostnames and its
// verified custom domains, with TLS.
func AppIngress(coop *v1alpha1.Cooperative, app, service string, port int32, platform, domains []string, opts ExposeOptions) *networkingv1ac.IngressApplyConfiguration {
	pathType := networkingv1.PathTypePrefix
	backend := networkingv1ac.IngressBackend().WithService(networkingv1ac.IngressServiceBackend().
		WithName(service).WithPort(networkingv1ac.ServiceBackendPort().WithNumber(port)))
	spec := networkingv1ac.IngressSpec()
	if opts.WildcardTLS {
		// No Secret: the ingress controller's default certificate, the
		// wildcard, serves the platform's hostnames.
		if len(platform) > 0 {
			spec.WithTLS(networkingv1ac.IngressTLS().WithHosts(platform...))
		}
		if len(domains) > 0 {
			spec.WithTLS(networkingv1ac.IngressTLS().WithHosts(domains...).WithSecretName(AppTLSSecretName(app)))
		}
	} else {
		spec.WithTLS(networkingv1ac.IngressTLS().WithHosts(CertifiedHosts(platform, domains, opts)...).WithSecretName(AppTLSSecretName(app)))
	}
	if opts.IngressClass != "" {
		spec.WithIngressClassName(opts.IngressClass)
	}
	for _, h := range append(slices.Clone(platform), domains...) {
		spec.WithRules(networkingv1ac.IngressRule().WithHost(h).WithHTTP(
			networkingv1ac.HTTPIngressRuleValue().WithPaths(
				networkingv1ac.HTTPIngressPath().WithPath("/").WithPathType(pathType).WithBackend(backend))))
	}
	return networkingv1ac.Ingress(app, coop.NamespaceName()).
		WithLabels(AppLabels(coop, app)).
		WithOwnerReferences(OwnerReference(coop)).
		WithSpec(spec)
}

// AppCertificate asks cert-manager for the certificate of an app's
// hostnames, stored in the Secret the app's Ingress names.
func AppCertificate(coop *v1alpha1.Cooperative, app string, hosts []string, issuer string) *unstructured.Unstructured {
	names := make([]any, len(hosts))
	for i, h := range hosts {
		names[i] = h
	}
	return child(coop, schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}, app, AppLabels(coop, app), map[string]any{
		"secretName": AppTLSSecretName(app),
		"dnsNames":   names,
		"issuerRef":  map[string]any{"group": "cert-manager.io", "kind": "ClusterIssuer", "name": issuer},
	})
}

// HTTPRoute is the Gateway API kind apps are exposed with when the host
// uses a Gateway.
var HTTPRoute = schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "HTTPRoute"}

// AppHTTPRoute attaches an app's Service to the host's Gateway on its
// hostnames. TLS is the Gateway's: its listeners hold the certificates.
func AppHTTPRoute(coop *v1alpha1.Cooperative, app, service string, port int32, hosts []string, gw GatewayRef) *unstructured.Unstructured {
	names := make([]any, len(hosts))
	for i, h := range hosts {
		names[i] = h
	}
	return child(coop, HTTPRoute, app, AppLabels(coop, app), map[string]any{
		"parentRefs": []any{map[string]any{
			"group": HTTPRoute.Group, "kind": "Gateway", "namespace": gw.Namespace, "name": gw.Name,
		}},
		"hostnames": names,
		"rules": []any{map[string]any{
			"matches":     []any{map[string]any{"path": map[string]any{"type": "PathPrefix", "value": "/"}}},
			"backendRefs": []any{map[string]any{"name": service, "port": int64(port)}},
		}},
	})
}

// child is an object of a kind the operator has no Go types for, in the
// coop's namespace, labelled and owned by the coop.
func child(coop *v1alpha1.Cooperative, gvk schema.GroupVersionKind, name string, labels map[string]string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{
			"name":      name,
			"namespace": coop.NamespaceName(),
			"labels":    toAnyMap(labels),
		},
		"spec": spec,
	}}
	u.SetGroupVersionKind(gvk)
	Own(u, coop)
	return u
}

// Own makes the coop the controller owner of a rendered app object.
func Own(obj *unstructured.Unstructured, coop *v1alpha1.Cooperative) {
	owner := OwnerReference(coop)
	obj.SetOwnerReferences(nil)
	_ = unstructured.SetNestedSlice(obj.Object, []any{map[string]any{
		"apiVersion":         *owner.APIVersion,
		"kind":               *owner.Kind,
		"name":               *owner.Name,
		"uid":                string(*owner.UID),
		"controller":         true,
		"blockOwnerDeletion": true,
	}}, "metadata", "ownerReferences")
}

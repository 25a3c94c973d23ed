package specs

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// AppLabel names the app of a coop an object belongs to.
const AppLabel = "cooperator.dev/app"

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
}

// AppIngress exposes an app's Service on its hostnames, with TLS.
func AppIngress(coop *v1alpha1.Cooperative, app, service string, port int32, hosts []string, opts ExposeOptions) *networkingv1ac.IngressApplyConfiguration {
	pathType := networkingv1.PathTypePrefix
	backend := networkingv1ac.IngressBackend().WithService(networkingv1ac.IngressServiceBackend().
		WithName(service).WithPort(networkingv1ac.ServiceBackendPort().WithNumber(port)))
	spec := networkingv1ac.IngressSpec().
		WithTLS(networkingv1ac.IngressTLS().WithHosts(hosts...).WithSecretName(app + "-tls"))
	if opts.IngressClass != "" {
		spec.WithIngressClassName(opts.IngressClass)
	}
	for _, h := range hosts {
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
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cert-manager.io/v1",
		"kind":       "Certificate",
		"metadata": map[string]any{
			"name":      app,
			"namespace": coop.NamespaceName(),
			"labels":    toAnyMap(AppLabels(coop, app)),
		},
		"spec": map[string]any{
			"secretName": app + "-tls",
			"dnsNames":   names,
			"issuerRef":  map[string]any{"group": "cert-manager.io", "kind": "ClusterIssuer", "name": issuer},
		},
	}}
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

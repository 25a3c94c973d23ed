package specs

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// Names of the NetworkPolicies of every coop namespace.
const (
	DenyAllPolicy         = "deny-all"
	AllowSameNamespace    = "allow-same-namespace"
	AllowDNSPolicy        = "allow-dns"
	AllowFromIngress      = "allow-from-ingress"
	AllowToDatabasePolicy = "allow-to-databases"
	// AllowDatabaseCluster lets a dedicated CloudNativePG cluster be managed.
	AllowDatabaseCluster = "allow-database-cluster"
)

// DatabaseServerLabel marks pods of in-cluster shared database servers that
// every coop may reach.
const DatabaseServerLabel = "cooperator.dev/database-server"

const namespaceNameLabel = "kubernetes.io/metadata.name"

// NetworkPolicies isolate the coop: everything is denied, then the coop's own
// pods may talk to each other, resolve names, be reached from the ingress
// controller, reach the database servers and send their volumes to their
// own backup runner. Nothing opens a path to another coop.
func NetworkPolicies(coop *v1alpha1.Cooperative, opts Options) []*networkingv1ac.NetworkPolicyApplyConfiguration {
	both := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	all := metav1ac.LabelSelector()
	sameNamespace := networkingv1ac.NetworkPolicyPeer().WithPodSelector(metav1ac.LabelSelector())
	inNamespace := func(ns string) *metav1ac.LabelSelectorApplyConfiguration {
		return metav1ac.LabelSelector().WithMatchLabels(map[string]string{namespaceNameLabel: ns})
	}

	dbPeers := []*networkingv1ac.NetworkPolicyPeerApplyConfiguration{
		networkingv1ac.NetworkPolicyPeer().
			WithNamespaceSelector(metav1ac.LabelSelector()).
			WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{DatabaseServerLabel: "true"})),
	}
	for _, cidr := range opts.DatabaseCIDRs {
		dbPeers = append(dbPeers, networkingv1ac.NetworkPolicyPeer().WithIPBlock(networkingv1ac.IPBlock().WithCIDR(cidr)))
	}

	policies := []*networkingv1ac.NetworkPolicyApplyConfiguration{
		networkPolicy(coop, DenyAllPolicy, networkingv1ac.NetworkPolicySpec().
			WithPodSelector(all).
			WithPolicyTypes(both...)),
		networkPolicy(coop, AllowSameNamespace, networkingv1ac.NetworkPolicySpec().
			WithPodSelector(all).
			WithPolicyTypes(both...).
			WithIngress(networkingv1ac.NetworkPolicyIngressRule().WithFrom(sameNamespace)).
			WithEgress(networkingv1ac.NetworkPolicyEgressRule().WithTo(sameNamespace))),
		networkPolicy(coop, AllowDNSPolicy, networkingv1ac.NetworkPolicySpec().
			WithPodSelector(all).
			WithPolicyTypes(networkingv1.PolicyTypeEgress).
			WithEgress(networkingv1ac.NetworkPolicyEgressRule().
				WithTo(networkingv1ac.NetworkPolicyPeer().WithNamespaceSelector(inNamespace(opts.DNSNamespace))).
				WithPorts(port(corev1.ProtocolUDP, 53), port(corev1.ProtocolTCP, 53)))),
		networkPolicy(coop, AllowFromIngress, networkingv1ac.NetworkPolicySpec().
			WithPodSelector(all).
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(networkingv1ac.NetworkPolicyIngressRule().
				WithFrom(networkingv1ac.NetworkPolicyPeer().WithNamespaceSelector(inNamespace(opts.IngressNamespace))))),
		networkPolicy(coop, AllowToDatabasePolicy, networkingv1ac.NetworkPolicySpec().
			WithPodSelector(all).
			WithPolicyTypes(networkingv1.PolicyTypeEgress).
			WithEgress(networkingv1ac.NetworkPolicyEgressRule().
				WithTo(dbPeers...).
				WithPorts(port(corev1.ProtocolTCP, 5432)))),
	}
	if opts.OperatorNamespace != "" {
		policies = append(policies, backupRunnerPolicy(coop, opts))
	}
	return policies
}

func networkPolicy(coop *v1alpha1.Cooperative, name string, spec *networkingv1ac.NetworkPolicySpecApplyConfiguration) *networkingv1ac.NetworkPolicyApplyConfiguration {
	return networkingv1ac.NetworkPolicy(name, coop.NamespaceName()).
		WithLabels(Labels(coop)).
		WithOwnerReferences(OwnerReference(coop)).
		WithSpec(spec)
}

func port(proto corev1.Protocol, n int) *networkingv1ac.NetworkPolicyPortApplyConfiguration {
	return networkingv1ac.NetworkPolicyPort().WithProtocol(proto).WithPort(intstr.FromInt(n))
}

// DatabaseClusterPolicy lets the CloudNativePG operator reach the coop's
// database pods (status on 8000, PostgreSQL on 5432), and lets those pods
// reach the Kubernetes API, which their instance manager uses. Only for
// coops in Dedicated mode; it opens nothing to other coops.
func DatabaseClusterPolicy(coop *v1alpha1.Cooperative, opts Options) *networkingv1ac.NetworkPolicyApplyConfiguration {
	clusterPods := metav1ac.LabelSelector().WithMatchExpressions(
		metav1ac.LabelSelectorRequirement().WithKey(CNPGClusterLabel).WithOperator(metav1.LabelSelectorOpExists))
	return networkPolicy(coop, AllowDatabaseCluster, networkingv1ac.NetworkPolicySpec().
		WithPodSelector(clusterPods).
		WithPolicyTypes(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress).
		WithIngress(networkingv1ac.NetworkPolicyIngressRule().
			WithFrom(networkingv1ac.NetworkPolicyPeer().WithNamespaceSelector(
				metav1ac.LabelSelector().WithMatchLabels(map[string]string{namespaceNameLabel: opts.CNPGNamespace}))).
			WithPorts(port(corev1.ProtocolTCP, 8000), port(corev1.ProtocolTCP, 5432)),
			// The coop's own backup and restore runners, and no other coop's.
			networkingv1ac.NetworkPolicyIngressRule().
				WithFrom(networkingv1ac.NetworkPolicyPeer().
					WithNamespaceSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{namespaceNameLabel: opts.OperatorNamespace})).
					WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{BackupRunnerLabel: coop.Name}))).
				WithPorts(port(corev1.ProtocolTCP, 5432))).
		WithEgress(networkingv1ac.NetworkPolicyEgressRule().
			WithPorts(port(corev1.ProtocolTCP, 443), port(corev1.ProtocolTCP, 6443))))
}

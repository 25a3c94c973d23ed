package specs

import (
	corev1 "k8s.io/api/core/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// Pod Security Admission labels: every coop namespace enforces restricted.
const (
	psaEnforce        = "pod-security.kubernetes.io/enforce"
	psaEnforceVersion = "pod-security.kubernetes.io/enforce-version"
	psaWarn           = "pod-security.kubernetes.io/warn"
	psaAudit          = "pod-security.kubernetes.io/audit"
	psaRestricted     = "restricted"
)

// Namespace is the coop's namespace, with Pod Security Admission restricted enforced.
func Namespace(coop *v1alpha1.Cooperative) *corev1ac.NamespaceApplyConfiguration {
	labels := Labels(coop)
	labels[psaEnforce] = psaRestricted
	labels[psaEnforceVersion] = "latest"
	labels[psaWarn] = psaRestricted
	labels[psaAudit] = psaRestricted
	return corev1ac.Namespace(coop.NamespaceName()).
		WithLabels(labels).
		WithOwnerReferences(OwnerReference(coop))
}

// ResourceQuotaName is the name of the coop's ResourceQuota.
const ResourceQuotaName = "cooperative"

// ResourceQuota caps what the coop's workloads use, from its plan. Requests
// and limits share the plan's amounts, and tenants get no LoadBalancer or
// NodePort Services: exposure goes through the host's ingress.
func ResourceQuota(coop *v1alpha1.Cooperative, plan *v1alpha1.Plan) *corev1ac.ResourceQuotaApplyConfiguration {
	q := plan.Spec.Quota
	return corev1ac.ResourceQuota(ResourceQuotaName, coop.NamespaceName()).
		WithLabels(Labels(coop)).
		WithOwnerReferences(OwnerReference(coop)).
		WithSpec(corev1ac.ResourceQuotaSpec().WithHard(corev1.ResourceList{
			corev1.ResourceRequestsCPU:           q.CPU,
			corev1.ResourceLimitsCPU:             q.CPU,
			corev1.ResourceRequestsMemory:        q.Memory,
			corev1.ResourceLimitsMemory:          q.Memory,
			corev1.ResourceRequestsStorage:       q.Storage,
			corev1.ResourcePods:                  *resourceCount(q.Pods),
			corev1.ResourceServicesLoadBalancers: *resourceCount(0),
			corev1.ResourceServicesNodePorts:     *resourceCount(0),
		}))
}

// LimitRangeName is the name of the coop's LimitRange.
const LimitRangeName = "cooperative"

// LimitRange gives containers that set no requests or limits the plan's defaults.
func LimitRange(coop *v1alpha1.Cooperative, plan *v1alpha1.Plan) *corev1ac.LimitRangeApplyConfiguration {
	d := plan.Spec.EffectiveContainerDefaults()
	return corev1ac.LimitRange(LimitRangeName, coop.NamespaceName()).
		WithLabels(Labels(coop)).
		WithOwnerReferences(OwnerReference(coop)).
		WithSpec(corev1ac.LimitRangeSpec().WithLimits(
			corev1ac.LimitRangeItem().
				WithType(corev1.LimitTypeContainer).
				WithDefaultRequest(corev1.ResourceList{
					corev1.ResourceCPU:    *d.Requests.CPU,
					corev1.ResourceMemory: *d.Requests.Memory,
				}).
				WithDefault(corev1.ResourceList{
					corev1.ResourceCPU:    *d.Limits.CPU,
					corev1.ResourceMemory: *d.Limits.Memory,
				}),
		))
}

package v1alpha1

import "k8s.io/apimachinery/pkg/api/resource"

// Container requests and limits used when a plan sets none. The namespace
// quota caps limits as well as requests, so every container needs both.
var (
	DefaultRequestCPU    = resource.MustParse("50m")
	DefaultRequestMemory = resource.MustParse("64Mi")
	DefaultLimitCPU      = resource.MustParse("500m")
	DefaultLimitMemory   = resource.MustParse("512Mi")
)

// EffectiveContainerDefaults is the plan's container defaults with every
// missing amount filled in.
func (p *PlanSpec) EffectiveContainerDefaults() ContainerDefaults {
	d := *p.ContainerDefaults.DeepCopy()
	fill := func(q **resource.Quantity, def resource.Quantity) {
		if *q == nil {
			v := def.DeepCopy()
			*q = &v
		}
	}
	fill(&d.Requests.CPU, DefaultRequestCPU)
	fill(&d.Requests.Memory, DefaultRequestMemory)
	fill(&d.Limits.CPU, DefaultLimitCPU)
	fill(&d.Limits.Memory, DefaultLimitMemory)
	return d
}

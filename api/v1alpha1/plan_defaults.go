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

// Backup and drill schedules used when a plan sets none: backups daily at
// 03:00, drills weekly two hours after a backup.
const (
	DefaultBackupSchedule = "0 3 * * *"
	DefaultDrillSchedule  = "0 5 * * 0"
)

// EffectiveBackupSchedule is the plan's backup schedule, or the default.
func (b *PlanBackup) EffectiveBackupSchedule() string {
	if b.Schedule == "" {
		return DefaultBackupSchedule
	}
	return b.Schedule
}

// EffectiveDrillSchedule is the plan's drill schedule, the default when it
// names none, or "" when the plan turns drills off.
func (b *PlanBackup) EffectiveDrillSchedule() string {
	switch {
	case b.Drill.Enabled != nil && !*b.Drill.Enabled:
		return ""
	case b.Drill.Schedule == "":
		return DefaultDrillSchedule
	}
	return b.Drill.Schedule
}

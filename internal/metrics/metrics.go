// Package metrics exports each cooperative's state to Prometheus: whether it
// is ready, how old its last backup is, how its last restore drill went,
// and how much of its quota it uses.
// The values are read at scrape time from the operator's cache, so a scrape
// sends no request to the API server.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/specs"
)

// BackupGrace is how long after a scheduled run its backup may still come:
// the runner's expected duration, with room to start late.
const BackupGrace = time.Hour

// scrapeTimeout bounds the reads of one scrape from the cache.
const scrapeTimeout = 10 * time.Second

// Resources of the quota gauges, as their resource label says them.
const (
	ResourceCPU     = "cpu"
	ResourceMemory  = "memory"
	ResourceStorage = "storage"
	ResourcePods    = "pods"
)

// Names of the metrics the collector exports.
const (
	ReadyMetric          = "cooperator_cooperative_ready"
	ConditionMetric      = "cooperator_cooperative_condition"
	LastBackupTimeMetric = "cooperator_cooperative_last_backup_timestamp_seconds"
	LastBackupSizeMetric = "cooperator_cooperative_last_backup_size_bytes"
	BackupStaleMetric    = "cooperator_cooperative_backup_stale"
	// LastVerifiedRestoreMetric and DrillFailedMetric say how the coop's
	// newest restore drill went.
	LastVerifiedRestoreMetric = "cooperator_cooperative_last_verified_restore_timestamp_seconds"
	DrillFailedMetric         = "cooperator_cooperative_restore_drill_failed"
	QuotaMetric               = "cooperator_cooperative_quota"
	QuotaUsedMetric           = "cooperator_cooperative_quota_used"
	ScrapeErrorMetric         = "cooperator_cooperative_metrics_scrape_error"
)

// Names lists every metric the collector exports.
var Names = []string{ReadyMetric, ConditionMetric, LastBackupTimeMetric, LastBackupSizeMetric, BackupStaleMetric,
	LastVerifiedRestoreMetric, DrillFailedMetric, QuotaMetric, QuotaUsedMetric, ScrapeErrorMetric}

var (
	readyDesc = prometheus.NewDesc(ReadyMetric,
		"1 when the cooperative's Ready condition is True, else 0.",
		[]string{"cooperative", "plan"}, nil)
	conditionDesc = prometheus.NewDesc(ConditionMetric,
		"1 when the cooperative's condition of this type is True, else 0 (False or Unknown).",
		[]string{"cooperative", "type"}, nil)
	lastBackupTimeDesc = prometheus.NewDesc(LastBackupTimeMetric,
		"When the cooperative's newest backup in its store was taken, in seconds since the epoch; absent before its first backup.",
		[]string{"cooperative"}, nil)
	lastBackupSizeDesc = prometheus.NewDesc(LastBackupSizeMetric,
		"Size of the cooperative's newest backup in its store; absent before its first backup.",
		[]string{"cooperative"}, nil)
	backupStaleDesc = prometheus.NewDesc(BackupStaleMetric,
		"1 when the cooperative is backed up to a store and no backup came by the second run of its plan's schedule after its last backup (or its creation), plus an hour; else 0.",
		[]string{"cooperative", "plan"}, nil)
	lastVerifiedRestoreDesc = prometheus.NewDesc(LastVerifiedRestoreMetric,
		"When the cooperative's newest restore drill ran, passed or failed (see cooperator_cooperative_restore_drill_failed), in seconds since the epoch; absent before its first drill.",
		[]string{"cooperative"}, nil)
	drillFailedDesc = prometheus.NewDesc(DrillFailedMetric,
		"1 when the cooperative's newest restore drill failed: its backup is damaged, does not restore, or has other row counts than recorded; else 0.",
		[]string{"cooperative", "plan"}, nil)
	quotaDesc = prometheus.NewDesc(QuotaMetric,
		"The cooperative's quota from its plan: cpu in cores, memory and storage in bytes, pods.",
		[]string{"cooperative", "plan", "resource"}, nil)
	quotaUsedDesc = prometheus.NewDesc(QuotaUsedMetric,
		"What the cooperative's namespace uses of its quota, as its ResourceQuota counts it: cpu limits in cores, memory limits and storage requests in bytes, pods.",
		[]string{"cooperative", "plan", "resource"}, nil)
	scrapeErrorDesc = prometheus.NewDesc(ScrapeErrorMetric,
		"1 when the cooperatives could not be read from the operator's cache for this scrape, so their metrics are missing; else 0.",
		nil, nil)
)

// Collector exports the metrics of every Cooperative.
type Collector struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu sync.Mutex
	// reader lists Cooperatives, Plans and ResourceQuotas: the manager's cache.
	reader client.Reader
}

// NewCollector reads from reader, which should be the manager's cache.
func NewCollector(reader client.Reader) *Collector {
	return &Collector{reader: reader}
}

var _ prometheus.Collector = &Collector{}

// Describe sends the descriptions of every metric the collector exports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{readyDesc, conditionDesc, lastBackupTimeDesc, lastBackupSizeDesc,
		backupStaleDesc, lastVerifiedRestoreDesc, drillFailedDesc, quotaDesc, quotaUsedDesc, scrapeErrorDesc} {
		ch <- d
	}
}

// Collect reads the cooperatives, their plans and their quotas from the
// reader and sends their metrics. A failed read is logged and reported by
// cooperator_cooperative_metrics_scrape_error; the scrape itself goes on,
// so the operator's other metrics are not lost with it.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	failed := 0.0
	if err := c.collect(ctx, now(), ch); err != nil {
		ctrl.Log.WithName("metrics").Error(err, "Reading cooperatives for their metrics failed")
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, failed)
}

func (c *Collector) collect(ctx context.Context, now time.Time, ch chan<- prometheus.Metric) error {
	c.mu.Lock()
	reader := c.reader
	c.mu.Unlock()
	// A scrape only reads the cached objects, so it takes them without the
	// deep copy a List makes of each: a thousand coops would otherwise be
	// copied at every scrape.
	coops := &v1alpha1.CooperativeList{}
	if err := reader.List(ctx, coops, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	plans := &v1alpha1.PlanList{}
	if err := reader.List(ctx, plans, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	byName := make(map[string]*v1alpha1.Plan, len(plans.Items))
	for i := range plans.Items {
		byName[plans.Items[i].Name] = &plans.Items[i]
	}
	// The operator's ResourceQuotas, one per coop namespace, in one list.
	quotas := &corev1.ResourceQuotaList{}
	if err := reader.List(ctx, quotas, client.UnsafeDisableDeepCopy,
		client.MatchingLabels{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}); err != nil {
		return err
	}
	used := make(map[string]corev1.ResourceList, len(quotas.Items))
	for _, q := range quotas.Items {
		if q.Name == specs.ResourceQuotaName {
			used[q.Namespace] = q.Status.Used
		}
	}
	for i := range coops.Items {
		coop := &coops.Items[i]
		for _, m := range Metrics(coop, byName[coop.Spec.Plan], used[coop.NamespaceName()], now) {
			ch <- m
		}
	}
	return nil
}

// Metrics are the metrics of one coop. plan is nil when the coop's plan
// does not exist, and used when its ResourceQuota has not been counted yet.
func Metrics(coop *v1alpha1.Cooperative, plan *v1alpha1.Plan, used corev1.ResourceList, now time.Time) []prometheus.Metric {
	name, planName := coop.Name, coop.Spec.Plan
	gauge := func(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
		return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	// Without its plan, a coop keeps the default schedule's rule.
	schedule := v1alpha1.DefaultBackupSchedule
	if plan != nil {
		schedule = plan.Spec.Backup.EffectiveBackupSchedule()
	}
	drill := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.RestoreVerifiedCondition)
	out := []prometheus.Metric{
		gauge(readyDesc, boolValue(meta.IsStatusConditionTrue(coop.Status.Conditions, v1alpha1.ReadyCondition)), name, planName),
		gauge(backupStaleDesc, boolValue(BackupStale(coop, specs.BackupSchedule(coop, schedule), now)), name, planName),
		gauge(drillFailedDesc, boolValue(drill != nil && drill.Reason == v1alpha1.DrillFailedReason), name, planName),
	}
	if last := coop.Status.LastVerifiedRestore; last != nil {
		out = append(out, gauge(lastVerifiedRestoreDesc, float64(last.Time.UnixMilli())/1000, name))
	}
	for _, cond := range coop.Status.Conditions {
		out = append(out, gauge(conditionDesc, boolValue(cond.Status == metav1.ConditionTrue), name, cond.Type))
	}
	if last := coop.Status.LastBackup; last != nil {
		out = append(out,
			gauge(lastBackupTimeDesc, float64(last.Time.UnixMilli())/1000, name),
			gauge(lastBackupSizeDesc, float64(last.Size), name))
	}
	if plan != nil {
		q := Quota(plan)
		for _, r := range sortedResources {
			out = append(out, gauge(quotaDesc, q[r], name, planName, r))
		}
	}
	if used != nil {
		u := QuotaUsed(used)
		for _, r := range sortedResources {
			if v, ok := u[r]; ok {
				out = append(out, gauge(quotaUsedDesc, v, name, planName, r))
			}
		}
	}
	return out
}

var sortedResources = []string{ResourceCPU, ResourceMemory, ResourceStorage, ResourcePods}

// BackupStale says whether a coop that should be backed up has gone too
// long without a backup, by the schedule its backups run on (see
// BackupDue). A store that is missing or down makes no backups: its coops
// go stale too, as do those of a schedule that does not parse, which runs
// none. A coop that is not to be backed up (no store) is never stale.
func BackupStale(coop *v1alpha1.Cooperative, schedule string, now time.Time) bool {
	c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.BackupsReadyCondition)
	if c == nil || c.Reason == v1alpha1.BackupsNotRequestedReason {
		return false
	}
	due, err := BackupDue(coop, schedule)
	return err != nil || now.After(due)
}

// BackupDue is when a coop's next backup is due at the latest: by the
// second run of schedule (a cron expression in UTC, as its CronJob runs
// it) after its last backup, or after it was created, plus BackupGrace.
// The second, because the first may come a moment after a backup taken
// by hand or after the coop was created, and one run that fails is
// retried by the next: two runs missed in a row are stale.
func BackupDue(coop *v1alpha1.Cooperative, schedule string) (time.Time, error) {
	sched, err := cron.ParseStandard(schedule)
	if err != nil {
		return time.Time{}, fmt.Errorf("backup schedule %q: %w", schedule, err)
	}
	if spec, ok := sched.(*cron.SpecSchedule); ok {
		spec.Location = time.UTC
	}
	from := coop.CreationTimestamp.Time
	if last := coop.Status.LastBackup; last != nil {
		from = last.Time.Time
	}
	next := sched.Next(sched.Next(from))
	if next.IsZero() {
		return time.Time{}, fmt.Errorf("backup schedule %q never runs", schedule)
	}
	return next.Add(BackupGrace), nil
}

// Quota is the quota a plan gives each of its coops, by resource label:
// cpu in cores, memory and storage in bytes, and pods.
func Quota(plan *v1alpha1.Plan) map[string]float64 {
	q := plan.Spec.Quota
	return map[string]float64{
		ResourceCPU:     q.CPU.AsApproximateFloat64(),
		ResourceMemory:  q.Memory.AsApproximateFloat64(),
		ResourceStorage: q.Storage.AsApproximateFloat64(),
		ResourcePods:    float64(q.Pods),
	}
}

// QuotaUsed is what a coop's ResourceQuota counts as used, by resource
// label. The quota caps requests and limits alike at the plan's amount;
// limits are never below requests, so the limits are what comes nearer the
// cap. Resources the quota has not counted yet are left out.
func QuotaUsed(used corev1.ResourceList) map[string]float64 {
	out := map[string]float64{}
	for label, name := range map[string]corev1.ResourceName{
		ResourceCPU:     corev1.ResourceLimitsCPU,
		ResourceMemory:  corev1.ResourceLimitsMemory,
		ResourceStorage: corev1.ResourceRequestsStorage,
		ResourcePods:    corev1.ResourcePods,
	} {
		if v, ok := used[name]; ok {
			out[label] = v.AsApproximateFloat64()
		}
	}
	return out
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Register adds a collector reading from reader to controller-runtime's
// registry, which the manager's metrics endpoint serves.
func Register(reader client.Reader) error {
	return RegisterWith(crmetrics.Registry, reader)
}

// RegisterWith adds a collector reading from reader to registry. When the
// registry holds one already (a manager set up again in the same process),
// that one reads from reader from now on.
func RegisterWith(registry prometheus.Registerer, reader client.Reader) error {
	err := registry.Register(NewCollector(reader))
	if already := (prometheus.AlreadyRegisteredError{}); errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(*Collector); ok {
			existing.mu.Lock()
			existing.reader = reader
			existing.mu.Unlock()
			return nil
		}
	}
	return err
}

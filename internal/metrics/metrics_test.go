package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"cooperator.dev/cooperator/api/v1alpha1"
)

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// coop builds a coop created at created, with options.
func coop(created time.Time, opts ...func(*v1alpha1.Cooperative)) *v1alpha1.Cooperative {
	c := &v1alpha1.Cooperative{
		ObjectMeta: metav1.ObjectMeta{Name: "velo", CreationTimestamp: metav1.NewTime(created)},
		Spec:       v1alpha1.CooperativeSpec{Plan: "seed"},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func condition(t, reason string, status metav1.ConditionStatus) func(*v1alpha1.Cooperative) {
	return func(c *v1alpha1.Cooperative) {
		c.Status.Conditions = append(c.Status.Conditions, metav1.Condition{Type: t, Reason: reason, Status: status})
	}
}

func backups(reason string) func(*v1alpha1.Cooperative) {
	status := metav1.ConditionTrue
	if reason == v1alpha1.BackupMissingReason {
		status = metav1.ConditionFalse
	}
	return condition(v1alpha1.BackupsReadyCondition, reason, status)
}

func lastBackup(at time.Time, size int64) func(*v1alpha1.Cooperative) {
	return func(c *v1alpha1.Cooperative) {
		c.Status.LastBackup = &v1alpha1.BackupRecord{ID: "x", Time: metav1.NewTime(at), Size: size}
	}
}

func TestBackupStale(t *testing.T) {
	// Daily at 03:00; now is 12:00 on the 30th.
	const daily = "0 3 * * *"
	old := now.Add(-72 * time.Hour)
	for name, tc := range map[string]struct {
		coop     *v1alpha1.Cooperative
		schedule string
		want     bool
	}{
		"backup of an hour ago":                       {coop(old, backups(v1alpha1.BackupsScheduledReason), lastBackup(now.Add(-time.Hour), 1)), daily, false},
		"one run missed since the last backup":        {coop(old, backups(v1alpha1.BackupsScheduledReason), lastBackup(now.Add(-33*time.Hour), 1)), daily, false},
		"two runs missed since the last backup":       {coop(old, backups(v1alpha1.BackupsScheduledReason), lastBackup(now.Add(-34*time.Hour), 1)), daily, true},
		"two hourly runs missed":                      {coop(old, backups(v1alpha1.BackupsScheduledReason), lastBackup(now.Add(-4*time.Hour), 1)), "0 * * * *", true},
		"weekly, backup of four days ago":             {coop(old, backups(v1alpha1.BackupsScheduledReason), lastBackup(now.Add(-96*time.Hour), 1)), "0 3 * * 0", false},
		"backup missing from the store, old":          {coop(old, backups(v1alpha1.BackupMissingReason), lastBackup(now.Add(-60*time.Hour), 1)), daily, true},
		"new coop without a backup yet":               {coop(now.Add(-time.Hour), backups(v1alpha1.BackupsScheduledReason)), daily, false},
		"coop without a backup since two runs":        {coop(now.Add(-34*time.Hour), backups(v1alpha1.BackupsScheduledReason)), daily, true},
		"coop whose backup is missing since two runs": {coop(now.Add(-34*time.Hour), backups(v1alpha1.BackupMissingReason)), daily, true},
		"no backup store":                             {coop(old, backups(v1alpha1.BackupsNotRequestedReason)), daily, false},
		"store down, no backup for three days":        {coop(old, backups(v1alpha1.BackupStoreNotReadyReason)), daily, true},
		"store gone, last backup an hour ago":         {coop(old, backups(v1alpha1.BackupStoreNotFoundReason), lastBackup(now.Add(-time.Hour), 1)), daily, false},
		"a schedule that does not parse runs none":    {coop(old, backups(v1alpha1.BackupsScheduledReason), lastBackup(now.Add(-time.Hour), 1)), "daily", true},
		"no BackupsReady condition yet":               {coop(old), daily, false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := BackupStale(tc.coop, tc.schedule, now); got != tc.want {
				t.Errorf("BackupStale = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestQuota(t *testing.T) {
	plan := &v1alpha1.Plan{Spec: v1alpha1.PlanSpec{Quota: v1alpha1.PlanQuota{
		CPU: resource.MustParse("1500m"), Memory: resource.MustParse("2Gi"), Storage: resource.MustParse("10G"), Pods: 12,
	}}}
	want := map[string]float64{ResourceCPU: 1.5, ResourceMemory: 2 << 30, ResourceStorage: 10e9, ResourcePods: 12}
	got := Quota(plan)
	for r, v := range want {
		if got[r] != v {
			t.Errorf("Quota[%s] = %v, want %v", r, got[r], v)
		}
	}
}

func TestQuotaUsed(t *testing.T) {
	used := corev1.ResourceList{
		corev1.ResourceRequestsCPU:     resource.MustParse("250m"),
		corev1.ResourceLimitsCPU:       resource.MustParse("750m"),
		corev1.ResourceRequestsMemory:  resource.MustParse("128Mi"),
		corev1.ResourceLimitsMemory:    resource.MustParse("512Mi"),
		corev1.ResourceRequestsStorage: resource.MustParse("1Gi"),
		corev1.ResourcePods:            resource.MustParse("3"),
	}
	want := map[string]float64{ResourceCPU: 0.75, ResourceMemory: 512 << 20, ResourceStorage: 1 << 30, ResourcePods: 3}
	got := QuotaUsed(used)
	if len(got) != len(want) {
		t.Errorf("QuotaUsed = %v, want %v", got, want)
	}
	for r, v := range want {
		if got[r] != v {
			t.Errorf("QuotaUsed[%s] = %v, want %v", r, got[r], v)
		}
	}
	// Not counted yet: left out, not reported as 0.
	if got := QuotaUsed(corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}); len(got) != 1 {
		t.Errorf("a quota that counted only pods: want one resource, got %v", got)
	}
}

// scrape gathers the collector's metrics from a registry, as a scrape
// would, as name{labels} value; the scrape error gauge is left out.
func scrape(t *testing.T, objs ...client.Object) map[string]float64 {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
	registry := prometheus.NewPedanticRegistry()
	c := NewCollector(reader)
	c.Now = func() time.Time { return now }
	if err := registry.Register(c); err != nil {
		t.Fatal(err)
	}
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if f.GetName() == "cooperator_cooperative_metrics_scrape_error" {
				if v := m.GetGauge().GetValue(); v != 0 {
					t.Errorf("scrape error = %v, want 0", v)
				}
				continue
			}
			out[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	plan := &v1alpha1.Plan{ObjectMeta: metav1.ObjectMeta{Name: "seed"}, Spec: v1alpha1.PlanSpec{Quota: v1alpha1.PlanQuota{
		CPU: resource.MustParse("2"), Memory: resource.MustParse("1Gi"), Storage: resource.MustParse("5Gi"), Pods: 10,
	}}}
	// Two runs of the default schedule, 03:00 spread over the hour, missed.
	taken := now.Add(-60 * time.Hour)
	c := coop(now.Add(-72*time.Hour),
		condition(v1alpha1.ReadyCondition, v1alpha1.ReadyReason, metav1.ConditionTrue),
		condition(v1alpha1.AppsReadyCondition, v1alpha1.AppsProgressingReason, metav1.ConditionFalse),
		backups(v1alpha1.BackupsScheduledReason),
		lastBackup(taken, 4096),
		condition(v1alpha1.RestoreVerifiedCondition, v1alpha1.DrillFailedReason, metav1.ConditionFalse))
	drilled := now.Add(-5 * time.Hour)
	c.Status.LastVerifiedRestore = &v1alpha1.DrillRecord{BackupID: "x", Time: metav1.NewTime(drilled), Result: v1alpha1.DrillFailed}
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "cooperative", Namespace: "coop-velo",
			Labels: map[string]string{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}},
		Status: corev1.ResourceQuotaStatus{Used: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("4")}},
	}
	// Another coop's quota, and one that is not the operator's, count for nothing here.
	other := quota.DeepCopy()
	other.Namespace = "coop-other"
	other.Status.Used[corev1.ResourcePods] = resource.MustParse("9")
	foreign := quota.DeepCopy()
	foreign.Name, foreign.Labels = "extra", nil
	foreign.Status.Used[corev1.ResourcePods] = resource.MustParse("7")

	got := scrape(t, c, plan, quota, other, foreign)
	want := map[string]float64{
		"cooperator_cooperative_ready{cooperative=velo,plan=seed}":                         1,
		"cooperator_cooperative_condition{cooperative=velo,type=Ready}":                    1,
		"cooperator_cooperative_condition{cooperative=velo,type=AppsReady}":                0,
		"cooperator_cooperative_condition{cooperative=velo,type=BackupsReady}":             1,
		"cooperator_cooperative_last_backup_timestamp_seconds{cooperative=velo}":           float64(taken.Unix()),
		"cooperator_cooperative_last_backup_size_bytes{cooperative=velo}":                  4096,
		"cooperator_cooperative_backup_stale{cooperative=velo,plan=seed}":                  1,
		"cooperator_cooperative_condition{cooperative=velo,type=RestoreVerified}":          0,
		"cooperator_cooperative_restore_drill_failed{cooperative=velo,plan=seed}":          1,
		"cooperator_cooperative_last_verified_restore_timestamp_seconds{cooperative=velo}": float64(drilled.Unix()),
		"cooperator_cooperative_quota{cooperative=velo,plan=seed,resource=cpu}":            2,
		"cooperator_cooperative_quota{cooperative=velo,plan=seed,resource=memory}":         1 << 30,
		"cooperator_cooperative_quota{cooperative=velo,plan=seed,resource=storage}":        5 << 30,
		"cooperator_cooperative_quota{cooperative=velo,plan=seed,resource=pods}":           10,
		"cooperator_cooperative_quota_used{cooperative=velo,plan=seed,resource=pods}":      4,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present: %v), want %v", k, g, ok, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("want %d series, got %d: %v", len(want), len(got), got)
	}

	// A coop that never reconciled, whose plan is missing and whose quota
	// is not counted: not ready, and nothing invented.
	got = scrape(t, coop(now))
	want = map[string]float64{
		"cooperator_cooperative_ready{cooperative=velo,plan=seed}":                0,
		"cooperator_cooperative_backup_stale{cooperative=velo,plan=seed}":         0,
		"cooperator_cooperative_restore_drill_failed{cooperative=velo,plan=seed}": 0,
	}
	if len(got) != len(want) {
		t.Errorf("a new coop without a plan: want %v, got %v", want, got)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present: %v), want %v", k, g, ok, v)
		}
	}
}

func TestCollectReportsAFailedRead(t *testing.T) {
	// A reader that knows no Cooperatives fails to list them.
	reader := fake.NewClientBuilder().WithScheme(runtime.NewScheme()).Build()
	registry := prometheus.NewPedanticRegistry()
	if err := RegisterWith(registry, reader); err != nil {
		t.Fatal(err)
	}
	families, err := registry.Gather()
	if err != nil {
		t.Fatalf("a failed read must not fail the scrape: %v", err)
	}
	if len(families) != 1 || families[0].GetName() != "cooperator_cooperative_metrics_scrape_error" ||
		families[0].GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Errorf("want only cooperator_cooperative_metrics_scrape_error 1, got %v", families)
	}
	// Registered again, as a second manager in the process does: the
	// collector reads from the new reader.
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := RegisterWith(registry, fake.NewClientBuilder().WithScheme(scheme).Build()); err != nil {
		t.Fatalf("registering again: %v", err)
	}
	families, err = registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 1 || families[0].GetMetric()[0].GetGauge().GetValue() != 0 {
		t.Errorf("after registering a working reader, want scrape error 0, got %v", families)
	}
}

func TestBackupDue(t *testing.T) {
	created := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC) // a Sunday
	at := func(day, hour, minute int) time.Time { return time.Date(2026, 11, day, hour, minute, 0, 0, time.UTC) }
	for name, tc := range map[string]struct {
		schedule string
		last     time.Time // zero: no backup yet
		want     time.Time
	}{
		"daily, no backup yet":          {"17 3 * * *", time.Time{}, at(3, 4, 17)},
		"daily, after a backup":         {"17 3 * * *", at(10, 3, 17).Add(40 * time.Second), at(12, 4, 17)},
		"daily, backup taken by hand":   {"17 3 * * *", at(10, 3, 0), at(11, 4, 17)},
		"hourly, no backup yet":         {"5 * * * *", time.Time{}, at(1, 14, 5)},
		"hourly, after a backup":        {"5 * * * *", at(10, 7, 5).Add(3 * time.Second), at(10, 10, 5)},
		"weekly on Sundays, no backup":  {"0 2 * * 0", time.Time{}, at(15, 3, 0)},
		"weekly on Sundays, a backup":   {"0 2 * * 0", at(8, 2, 0).Add(time.Minute), at(22, 3, 0)},
		"every six hours, after backup": {"30 */6 * * *", at(10, 12, 31), at(11, 1, 30)},
	} {
		t.Run(name, func(t *testing.T) {
			c := coop(created)
			if !tc.last.IsZero() {
				c.Status.LastBackup = &v1alpha1.BackupRecord{ID: "x", Time: metav1.NewTime(tc.last)}
			}
			got, err := BackupDue(c, tc.schedule)
			if err != nil || !got.Equal(tc.want) {
				t.Errorf("BackupDue = %s (%v), want %s", got, err, tc.want)
			}
		})
	}
	if _, err := BackupDue(coop(created), "every day"); err == nil || !strings.Contains(err.Error(), `backup schedule "every day"`) {
		t.Errorf("a schedule that does not parse: error %v, want one naming it", err)
	}
}

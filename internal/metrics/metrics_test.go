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
	old := now.Add(-48 * time.Hour)
	for name, tc := range map[string]struct {
		coop *v1alpha1.Cooperative
		want bool
	}{
		"backup of an hour ago":                {coop(old, backups(v1alpha1.BackupsScheduledReason), lastBackup(now.Add(-time.Hour), 1)), false},
		"backup of 25 hours ago: a late run":   {coop(old, backups(v1alpha1.BackupsScheduledReason), lastBackup(now.Add(-25*time.Hour), 1)), false},
		"backup of 27 hours ago":               {coop(old, backups(v1alpha1.BackupsScheduledReason), lastBackup(now.Add(-27*time.Hour), 1)), true},
		"backup missing from the store, old":   {coop(old, backups(v1alpha1.BackupMissingReason), lastBackup(now.Add(-30*time.Hour), 1)), true},
		"new coop without a backup yet":        {coop(now.Add(-time.Hour), backups(v1alpha1.BackupsScheduledReason)), false},
		"day-old coop without any backup":      {coop(now.Add(-25*time.Hour), backups(v1alpha1.BackupsScheduledReason)), true},
		"day-old coop whose backup is missing": {coop(now.Add(-25*time.Hour), backups(v1alpha1.BackupMissingReason)), true},
		"no backup store":                      {coop(old, backups(v1alpha1.BackupsNotRequestedReason)), false},
		"dedicated database":                   {coop(old, backups(v1alpha1.BackupsUnsupportedReason)), false},
		"store down, no backup for two days":   {coop(old, backups(v1alpha1.BackupStoreNotReadyReason)), true},
		"store gone, last backup an hour ago":  {coop(old, backups(v1alpha1.BackupStoreNotFoundReason), lastBackup(now.Add(-time.Hour), 1)), false},
		"no BackupsReady condition yet":        {coop(old), false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := BackupStale(tc.coop, now); got != tc.want {
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
	taken := now.Add(-30 * time.Hour)
	c := coop(now.Add(-72*time.Hour),
		condition(v1alpha1.ReadyCondition, v1alpha1.ReadyReason, metav1.ConditionTrue),
		condition(v1alpha1.AppsReadyCondition, v1alpha1.AppsProgressingReason, metav1.ConditionFalse),
		backups(v1alpha1.BackupsScheduledReason),
		lastBackup(taken, 4096))
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
		"cooperator_cooperative_ready{cooperative=velo,plan=seed}":                    1,
		"cooperator_cooperative_condition{cooperative=velo,type=Ready}":               1,
		"cooperator_cooperative_condition{cooperative=velo,type=AppsReady}":           0,
		"cooperator_cooperative_condition{cooperative=velo,type=BackupsReady}":        1,
		"cooperator_cooperative_last_backup_timestamp_seconds{cooperative=velo}":      float64(taken.Unix()),
		"cooperator_cooperative_last_backup_size_bytes{cooperative=velo}":             4096,
		"cooperator_cooperative_backup_stale{cooperative=velo,plan=seed}":             1,
		"cooperator_cooperative_quota{cooperative=velo,plan=seed,resource=cpu}":       2,
		"cooperator_cooperative_quota{cooperative=velo,plan=seed,resource=memory}":    1 << 30,
		"cooperator_cooperative_quota{cooperative=velo,plan=seed,resource=storage}":   5 << 30,
		"cooperator_cooperative_quota{cooperative=velo,plan=seed,resource=pods}":      10,
		"cooperator_cooperative_quota_used{cooperative=velo,plan=seed,resource=pods}": 4,
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
		"cooperator_cooperative_ready{cooperative=velo,plan=seed}":        0,
		"cooperator_cooperative_backup_stale{cooperative=velo,plan=seed}": 0,
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
	created := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	c := &v1alpha1.Cooperative{}
	c.CreationTimestamp = metav1.NewTime(created)
	if got := BackupDue(c); !got.Equal(created.Add(FirstBackupWithin)) {
		t.Errorf("no backup yet: due %s, want a day after creation", got)
	}
	last := created.Add(72 * time.Hour)
	c.Status.LastBackup = &v1alpha1.BackupRecord{ID: "x", Time: metav1.NewTime(last)}
	if got := BackupDue(c); !got.Equal(last.Add(StaleAfter)) {
		t.Errorf("after a backup: due %s, want %s after it", got, StaleAfter)
	}
}

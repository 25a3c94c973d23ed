package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/backup"
	"cooperator.dev/cooperator/internal/blueprint"
	"cooperator.dev/cooperator/internal/postgres"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/ssa"
)

// A backup never restored is a hope. A drill restores the coop's latest
// backup, one database at a time, into a scratch database of the coop's
// own and compares every table's row count with the manifest; the runner
// records what it found in the store, and the operator reads that record
// into status.lastVerifiedRestore and the RestoreVerified condition after
// each drill Job.
//
// RestoreVerified is not part of Ready: Ready says whether the coop is
// served and its backups are taken, and a new coop would otherwise wait a
// week for its first drill. A failed drill is told by the condition, a
// Warning event and cooperator_cooperative_restore_drill_failed.

// waitForDrill is how often a coop whose drill Job runs looks again, in
// case the Job's end reaches the cache after its CronJob's.
const waitForDrill = time.Minute

// maxDrillMessage caps what a drill's message brings into the status.
const maxDrillMessage = 1024

var errScratchTaken = errors.New("scratch database owned by another role")

// reconcileDrills schedules the coop's restore drills and reads how the
// last one went. It runs once the backup store answers and the newest
// backup has been read.
func (r *CooperativeReconciler) reconcileDrills(ctx context.Context, s *scope, target specs.BackupTarget, store *v1alpha1.BackupStore) (ctrl.Result, error) {
	coop := s.coop
	schedule := s.plan.Spec.Backup.EffectiveDrillSchedule()
	if schedule == "" {
		return ctrl.Result{}, r.unscheduleDrills(ctx, coop,
			fmt.Sprintf("Plan %s turns restore drills off: the coop's backups are not proven by restoring them", s.plan.Name))
	}
	var scratch string
	var err error
	if coop.Status.Database.Mode == v1alpha1.DatabaseModeDedicated {
		scratch = specs.DedicatedDrillDatabase
		var pending string
		if pending, err = r.ensureClusterScratchDatabase(ctx, coop); err != nil || pending != "" {
			if err == nil {
				err = r.deleteDrillCronJob(ctx, coop)
			}
			return ctrl.Result{}, err
		}
	} else {
		scratch, err = r.ensureScratchDatabase(ctx, coop)
	}
	if errors.Is(err, errScratchTaken) {
		// Nothing of another role is touched; the coop keeps its backups.
		key := metav1.ObjectMeta{Namespace: r.Options.OperatorNamespace, Name: specs.DrillName(coop)}
		if err := r.deleteIfPresent(ctx, &batchv1.CronJob{ObjectMeta: key}); err != nil {
			return ctrl.Result{}, err
		}
		setCondition(coop, v1alpha1.RestoreVerifiedCondition, metav1.ConditionFalse, v1alpha1.DatabaseNameTakenReason,
			fmt.Sprintf("Database %s, where drills restore, exists on DatabaseServer %s and belongs to another role; drills cannot run",
				scratch, coop.Status.Database.Server))
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	cronJob := specs.DrillCronJob(coop, target, scratch, schedule, r.Options)
	if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &batchv1.CronJob{}, cronJob, batchv1ac.ExtractCronJob); err != nil {
		return ctrl.Result{}, fmt.Errorf("while applying the drill CronJob: %w", err)
	}
	running, err := r.observeLastDrill(ctx, coop, store)
	if err != nil {
		return ctrl.Result{}, err
	}
	status, reason, message := drillCondition(coop, *cronJob.Spec.Schedule)
	setCondition(coop, v1alpha1.RestoreVerifiedCondition, status, reason, message)
	if running {
		return ctrl.Result{RequeueAfter: waitForDrill}, nil
	}
	return ctrl.Result{}, nil
}

// ensureScratchDatabase makes the coop's scratch database on its server,
// owned by the coop's role, which the drill connects as: the coop's
// password opens nothing of another coop. An unchanged one costs one
// read-only query and no DDL. It is no database of the coop's backups,
// and goes with the coop's databases when they are dropped.
func (r *CooperativeReconciler) ensureScratchDatabase(ctx context.Context, coop *v1alpha1.Cooperative) (string, error) {
	st := coop.Status.Database
	db := postgres.AppDatabase{Name: postgres.DrillDatabaseName(coop.DatabaseName()), Owner: coop.DatabaseName()}
	pg, ok := r.Servers.Lookup(st.Server)
	if !ok {
		return db.Name, fmt.Errorf("no connection to DatabaseServer %s for the scratch database", st.Server)
	}
	observed, err := pg.ObserveAppDatabases(ctx, []string{db.Name})
	if err != nil {
		return db.Name, fmt.Errorf("while reading the scratch database on %s: %w", st.Server, err)
	}
	if o := observed[db.Name]; !o.UpToDate(db) {
		if err := pg.EnsureAppDatabase(ctx, db, o); err != nil {
			if errors.Is(err, postgres.ErrOwnedElsewhere) {
				return db.Name, errScratchTaken
			}
			return db.Name, fmt.Errorf("while creating the scratch database on %s: %w", st.Server, err)
		}
		ctrl.LoggerFrom(ctx).Info("Provisioned scratch database for drills", "server", st.Server, "database", db.Name)
	}
	return db.Name, nil
}

// ensureClusterScratchDatabase asks CloudNativePG, with a Database object,
// for the scratch database specs.DedicatedDrillDatabase in the coop's
// dedicated cluster. It says what is still awaited, "" once CloudNativePG
// has made it, and sets RestoreVerified to say so. Drills wait for it;
// backups do not.
func (r *CooperativeReconciler) ensureClusterScratchDatabase(ctx context.Context, coop *v1alpha1.Cooperative) (pending string, err error) {
	if !r.CNPGDatabaseInstalled {
		pending = "Drills restore into a scratch database that CloudNativePG makes from a Database object (CloudNativePG 1.25 or later), which this cluster does not serve: this coop's backups are taken but not proven by a drill (a Restore still checks every checksum first)"
		setCondition(coop, v1alpha1.RestoreVerifiedCondition, metav1.ConditionFalse, v1alpha1.DrillUnsupportedReason, pending)
		return pending, nil
	}
	desired := specs.DrillDatabase(coop)
	if _, err := ssa.ApplyUnstructured(ctx, r.Client, r.APIReader, desired); err != nil {
		return "", fmt.Errorf("while applying the scratch Database: %w", err)
	}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(desired.GroupVersionKind())
	if err := r.Get(ctx, client.ObjectKeyFromObject(desired), live); client.IgnoreNotFound(err) != nil {
		return "", fmt.Errorf("while getting the scratch Database: %w", err)
	}
	applied, found, _ := unstructured.NestedBool(live.Object, "status", "applied")
	observed, _, _ := unstructured.NestedInt64(live.Object, "status", "observedGeneration")
	if found && applied && observed == live.GetGeneration() {
		return "", nil
	}
	pending = fmt.Sprintf("Waiting for CloudNativePG to make the drills' scratch database %s (Database %s/%s)",
		specs.DedicatedDrillDatabase, coop.NamespaceName(), specs.DrillDatabaseObjectName)
	if message, _, _ := unstructured.NestedString(live.Object, "status", "message"); message != "" {
		pending += ": " + message
	}
	setCondition(coop, v1alpha1.RestoreVerifiedCondition, metav1.ConditionFalse, v1alpha1.ScratchDatabasePendingReason, pending)
	return pending, nil
}

// observeLastDrill reads the coop's newest drill record from the store
// once after each drill Job that finished, into
// status.lastVerifiedRestore. A Job that ended without recording a drill
// counts as a failed drill. It says whether a drill Job still runs.
func (r *CooperativeReconciler) observeLastDrill(ctx context.Context, coop *v1alpha1.Cooperative, store *v1alpha1.BackupStore) (running bool, err error) {
	job, err := r.lastDrillJob(ctx, coop)
	if err != nil || job.finished.IsZero() {
		return job.running, err
	}
	last := coop.Status.LastVerifiedRestore
	if last != nil && !last.CheckedAt.Before(&job.finished) {
		return job.running, nil
	}
	cfg, err := storeConfig(ctx, r.APIReader, store)
	if err != nil {
		return job.running, fmt.Errorf("while reading the keys of BackupStore %s: %w", store.Name, err)
	}
	c, err := backup.Open(cfg)
	if err != nil {
		return job.running, err
	}
	found, err := c.LatestDrill(ctx, coop.Name)
	if err != nil {
		return job.running, fmt.Errorf("while reading the coop's newest drill record: %w", err)
	}
	record := drillRecord(found, job, store.Name)
	if record.Result == v1alpha1.DrillFailed {
		// Once per drill Job: the next pass finds it checked.
		r.Recorder.Eventf(coop, nil, corev1.EventTypeWarning, v1alpha1.DrillFailedReason, "Drill", "Restore drill failed: %s", record.Message)
	}
	coop.Status.LastVerifiedRestore = record
	return job.running, nil
}

// drillJob is what the coop's drill Jobs say: when the newest one that
// finished started and finished, whether it failed, and whether one runs.
type drillJob struct {
	name              string
	started, finished metav1.Time
	failed, running   bool
}

// lastDrillJob reads the drill CronJob's Jobs from the cache.
func (r *CooperativeReconciler) lastDrillJob(ctx context.Context, coop *v1alpha1.Cooperative) (drillJob, error) {
	var out drillJob
	jobs := &unstructured.UnstructuredList{}
	jobs.SetGroupVersionKind(batchv1.SchemeGroupVersion.WithKind("JobList"))
	if err := r.List(ctx, jobs, client.InNamespace(r.Options.OperatorNamespace),
		client.MatchingLabels{v1alpha1.CooperativeLabel: coop.Name}); err != nil {
		return out, fmt.Errorf("while listing the drill Jobs: %w", err)
	}
	name := specs.DrillName(coop)
	for i := range jobs.Items {
		job := &jobs.Items[i]
		if owner := metav1.GetControllerOf(job); owner == nil || owner.Kind != "CronJob" || owner.Name != name {
			continue
		}
		state := blueprint.StateOf(job)
		if state == blueprint.JobRunning {
			out.running = true
			continue
		}
		finished := jobFinished(job, state)
		if finished.IsZero() || (!out.finished.IsZero() && !out.finished.Before(&finished)) {
			continue
		}
		out.name, out.finished, out.failed = job.GetName(), finished, state == blueprint.JobFailed
		out.started = job.GetCreationTimestamp()
		if s, ok, _ := unstructured.NestedString(job.Object, "status", "startTime"); ok {
			if t, err := time.Parse(time.RFC3339, s); err == nil {
				out.started = metav1.NewTime(t)
			}
		}
	}
	return out, nil
}

// jobFinished is when a Job that ended ended: its completionTime, or when
// it was marked Failed.
func jobFinished(job *unstructured.Unstructured, state blueprint.JobState) metav1.Time {
	if state == blueprint.JobSucceeded {
		if s, ok, _ := unstructured.NestedString(job.Object, "status", "completionTime"); ok {
			if t, err := time.Parse(time.RFC3339, s); err == nil {
				return metav1.NewTime(t)
			}
		}
	}
	conditions, _, _ := unstructured.NestedSlice(job.Object, "status", "conditions")
	for _, c := range conditions {
		m, ok := c.(map[string]any)
		if !ok || m["status"] != "True" || (m["type"] != "Complete" && m["type"] != "Failed") {
			continue
		}
		if s, ok := m["lastTransitionTime"].(string); ok {
			if t, err := time.Parse(time.RFC3339, s); err == nil {
				return metav1.NewTime(t)
			}
		}
	}
	return metav1.Time{}
}

// drillRecord is status.lastVerifiedRestore after the drill Job job
// ended: the store's newest record. A runner that succeeds has written
// its record; one that failed may have ended before it could, so a record
// older than the failed Job is not its drill.
func drillRecord(found *backup.DrillRecord, job drillJob, store string) *v1alpha1.DrillRecord {
	// Records are written with the runner's clock: a second of skew is allowed.
	if found != nil && (!job.failed || !found.Time.Before(job.started.Add(-time.Second))) {
		out := &v1alpha1.DrillRecord{BackupID: found.BackupID, Time: metav1.NewTime(found.Time), Result: v1alpha1.DrillVerified,
			Message: truncate(found.Message, maxDrillMessage), Tables: int32(found.Tables), CheckedAt: job.finished}
		switch {
		case !found.OK:
			out.Result = v1alpha1.DrillFailed
		case found.ChecksumsOnly:
			out.Result = v1alpha1.DrillChecksumsVerified
		}
		return out
	}
	out := &v1alpha1.DrillRecord{Time: job.finished, Result: v1alpha1.DrillFailed, CheckedAt: job.finished}
	if job.failed {
		out.Message = fmt.Sprintf("drill Job %s failed without recording a drill: its pod's log says why", job.name)
	} else {
		out.Message = fmt.Sprintf("drill Job %s succeeded, but BackupStore %s holds no record of its drill", job.name, store)
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n-3], "") + "..."
}

// drillCondition is RestoreVerified from the coop's newest drill. A coop
// without a backup has nothing to drill: that is no failure, unless a
// backup had been seen and is gone.
func drillCondition(coop *v1alpha1.Cooperative, schedule string) (metav1.ConditionStatus, string, string) {
	last := coop.Status.LastVerifiedRestore
	switch {
	case (last == nil || (last.Result == v1alpha1.DrillFailed && last.BackupID == "")) && coop.Status.LastBackup == nil:
		return metav1.ConditionFalse, v1alpha1.NoBackupYetReason,
			fmt.Sprintf("The coop has no backup to drill yet; drills run at %q (UTC)", schedule)
	case last == nil:
		return metav1.ConditionFalse, v1alpha1.DrillPendingReason,
			fmt.Sprintf("The first drill, a restore of backup %s, runs at %q (UTC)", coop.Status.LastBackup.ID, schedule)
	case last.Result == v1alpha1.DrillVerified:
		return metav1.ConditionTrue, v1alpha1.RestoreVerifiedReason,
			fmt.Sprintf("Backup %s restores into a scratch database and has the recorded row counts; drills run at %q (UTC)", last.BackupID, schedule)
	case last.Result == v1alpha1.DrillChecksumsVerified:
		return metav1.ConditionTrue, v1alpha1.ChecksumsVerifiedReason,
			fmt.Sprintf("Backup %s is encrypted to the coop's keys: every object matches its checksum, and only the coop can restore it to count its rows; drills run at %q (UTC)", last.BackupID, schedule)
	case last.BackupID == "":
		return metav1.ConditionFalse, v1alpha1.DrillFailedReason, "The newest drill failed: " + last.Message
	default:
		return metav1.ConditionFalse, v1alpha1.DrillFailedReason,
			fmt.Sprintf("The newest drill, of backup %s, failed: %s", last.BackupID, last.Message)
	}
}

// unscheduleDrills removes the drill CronJob of a coop whose backups are
// not drilled, and says why. The scratch database stays until the coop's
// databases go.
func (r *CooperativeReconciler) unscheduleDrills(ctx context.Context, coop *v1alpha1.Cooperative, why string) error {
	if err := r.deleteDrillCronJob(ctx, coop); err != nil {
		return err
	}
	setCondition(coop, v1alpha1.RestoreVerifiedCondition, metav1.ConditionTrue, v1alpha1.DrillsNotRequestedReason, why)
	return nil
}

// deleteDrillCronJob removes the coop's drill CronJob, if it has one.
func (r *CooperativeReconciler) deleteDrillCronJob(ctx context.Context, coop *v1alpha1.Cooperative) error {
	ns := r.Options.OperatorNamespace
	if ns == "" {
		return nil
	}
	return r.deleteIfPresent(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: specs.DrillName(coop)}})
}

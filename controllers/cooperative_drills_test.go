package controllers

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/backup"
	"cooperator.dev/cooperator/internal/postgres"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/testenv"
)

// flipByte changes one byte in the middle of a stored object.
func flipByte(t *testing.T, raw *minio.Client, bucket, key string) {
	t.Helper()
	ctx := context.Background()
	obj, err := raw.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(obj)
	_ = obj.Close()
	if err != nil || len(data) == 0 {
		t.Fatalf("reading %s: %v", key, err)
	}
	data[len(data)/2] ^= 0xff
	if _, err := raw.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// runCronJob runs a CronJob's command here as a process, with its
// arguments and the values of its Secrets, as its pod would.
func runCronJob(t *testing.T, runner string, cronJob *batchv1.CronJob) (string, error) {
	t.Helper()
	container := cronJob.Spec.JobTemplate.Spec.Template.Spec.Containers[0]
	env := os.Environ()
	for _, e := range container.Env {
		secret := &corev1.Secret{}
		mustGet(t, adminNamespace, e.ValueFrom.SecretKeyRef.Name, secret)
		env = append(env, e.Name+"="+string(secret.Data[e.ValueFrom.SecretKeyRef.Key]))
	}
	cmd := exec.Command(runner, container.Args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func restoreVerified(t *testing.T, name, reason string) *v1alpha1.Cooperative {
	t.Helper()
	coop := &v1alpha1.Cooperative{}
	waitFor(t, 3*time.Minute, "coop "+name+" RestoreVerified reason "+reason, func(ctx context.Context) (bool, error) {
		if err := adminClient.Get(ctx, client.ObjectKey{Name: name}, coop); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.RestoreVerifiedCondition)
		return c != nil && c.Reason == reason, nil
	})
	return coop
}

// The drill CronJob the operator schedules really proves the coop's
// backup: run as a process, it restores the latest backup into the
// coop's scratch database, records the drill in the store, and the
// operator reads the record into the status. A damaged backup fails its
// drill, and the coop says so.
func TestDrillsProveTheBackupAndTellAFailedOne(t *testing.T) {
	ctx := context.Background()
	s3, err := testenv.StartS3(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3.Remove)
	if err := s3.CreateBucket(ctx, "drill-backups"); err != nil {
		t.Fatal(err)
	}
	stop := startOperator(t)
	runner := operatorBinary(t)
	keys := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: adminNamespace, Name: "drill-keys"},
		StringData: map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": s3.SecretKey},
	}
	store := &v1alpha1.BackupStore{
		ObjectMeta: metav1.ObjectMeta{Name: "drilled"},
		Spec: v1alpha1.BackupStoreSpec{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: "drill-backups", Prefix: "cluster", Insecure: true, PathStyle: true,
			CredentialsSecretRef: v1alpha1.SecretReference{Namespace: adminNamespace, Name: keys.Name}},
	}
	plan := newPlan("drill-plan")
	plan.Spec.Backup = v1alpha1.PlanBackup{Store: "drilled", Schedule: "0 2 * * *", Retention: v1alpha1.BackupRetention{Daily: 7}}
	coop := newCoop("drilled", "drill-plan")
	coop.Spec.DeletionPolicy = v1alpha1.DeletionPolicyDelete
	create(t, keys, store, plan, coop, newPlan("drill-other-plan"), newCoop("drill-other", "drill-other-plan"))
	waitStore(t, "drilled", v1alpha1.ReachableReason)
	coop = restoreVerified(t, "drilled", v1alpha1.NoBackupYetReason)
	waitReady(t, "drilled")
	other := waitReady(t, "drill-other")
	if c := meta.FindStatusCondition(other.Status.Conditions, v1alpha1.RestoreVerifiedCondition); c == nil ||
		c.Status != metav1.ConditionTrue || c.Reason != v1alpha1.DrillsNotRequestedReason {
		t.Errorf("a coop without backups: RestoreVerified %+v, want True NotRequested", c)
	}

	// (a) The drill CronJob: the plan's default weekly schedule, spread
	// over the hour as backups are, restoring into the scratch database.
	scratch := postgres.DrillDatabaseName(coop.Status.Database.Name)
	drill := &batchv1.CronJob{}
	mustGet(t, adminNamespace, specs.DrillName(coop), drill)
	if want := specs.BackupSchedule(coop, v1alpha1.DefaultDrillSchedule); drill.Spec.Schedule != want {
		t.Errorf("drill schedule %q, want %q", drill.Spec.Schedule, want)
	}
	args := drill.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args
	for _, want := range []string{"verify", "--coop=drilled", "--scratch-db=" + scratch, "--db-user=" + coop.Status.Database.Role} {
		if !slices.Contains(args, want) {
			t.Errorf("drill args %v lack %s", args, want)
		}
	}
	assertControlledBy(t, drill, coop)
	backupJob := &batchv1.CronJob{}
	mustGet(t, adminNamespace, specs.BackupName(coop), backupJob)
	if args := backupJob.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args; slices.Contains(args, "--db-name="+scratch) {
		t.Errorf("the scratch database is backed up: %v", args)
	}

	// (d) The scratch database belongs to the coop's role; another coop's
	// role cannot even connect to it.
	if owner := databaseOwner(t, mainPostgres, scratch); owner != coop.Status.Database.Role {
		t.Errorf("scratch database %s has owner %q, want the coop's role %s", scratch, owner, coop.Status.Database.Role)
	}
	if conn, err := connectAs(ctx, mainPostgres, databaseSecret(t, "drill-other"), scratch); err == nil {
		_ = conn.Close(ctx)
		t.Errorf("another coop's role connected to the scratch database")
	} else if !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("another coop's role connecting to the scratch database: %v, want permission denied", err)
	}

	// A steady coop with drills costs no write to the API server and no
	// DDL on its server: the scratch database is only looked at.
	stop()
	ctxCounted, r, counter, _ := countedReconciler(t)
	ddlBefore, err := mainPostgres.DDLCount("cooperator")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := r.Reconcile(ctxCounted, reconcile.Request{NamespacedName: types.NamespacedName{Name: "drilled"}}); err != nil {
			t.Fatalf("reconcile %d: %v", i, err)
		}
	}
	if writes := counter.writeRequests(); len(writes) != 0 {
		t.Errorf("reconciling an unchanged coop with drills sent %d write requests: %v", len(writes), writes)
	}
	if ddlAfter, err := mainPostgres.DDLCount("cooperator"); err != nil || ddlAfter != ddlBefore {
		t.Errorf("DDL statements logged: %d before, %d after (%v); want none on an unchanged coop", ddlBefore, ddlAfter, err)
	}
	startOperator(t)

	// A backup of some data, taken by the backup CronJob's command.
	own, err := pgx.Connect(ctx, databaseSecret(t, "drilled")["uri"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := own.Exec(ctx, "CREATE TABLE deliveries (id int PRIMARY KEY, route text); INSERT INTO deliveries SELECT g, 'route ' || g FROM generate_series(1, 500) g"); err != nil {
		t.Fatal(err)
	}
	_ = own.Close(ctx)
	if out, err := runCronJob(t, runner, backupJob); err != nil {
		t.Fatalf("the scheduled backup failed: %v\n%s", err, out)
	}
	c, err := backup.Open(backup.Store{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: "drill-backups", Prefix: "cluster",
		AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Latest(ctx, "drilled")
	if err != nil {
		t.Fatal(err)
	}

	// (b) The drill's command restores it and records a drill that passed.
	if out, err := runCronJob(t, runner, drill); err != nil {
		t.Fatalf("the drill of a good backup failed: %v\n%s", err, out)
	}
	record, err := c.LatestDrill(ctx, "drilled")
	if err != nil || record == nil || !record.OK || record.BackupID != m.ID || record.Tables != 1 {
		t.Fatalf("drill record %+v (%v), want backup %s passed with 1 table", record, err, m.ID)
	}

	// Every minute: the CronJobs' Jobs succeed on the fake nodes, and the
	// operator reads the newest drill record into the status.
	plan = &v1alpha1.Plan{}
	mustGet(t, "", "drill-plan", plan)
	plan.Spec.Backup.Schedule = "* * * * *"
	plan.Spec.Backup.Drill.Schedule = "* * * * *"
	if err := adminClient.Update(ctx, plan); err != nil {
		t.Fatal(err)
	}
	coop = restoreVerified(t, "drilled", v1alpha1.RestoreVerifiedReason)
	last := coop.Status.LastVerifiedRestore
	if last == nil || last.BackupID != m.ID || last.Result != v1alpha1.DrillVerified || last.Tables != 1 || last.Time.Unix() != record.Time.Unix() {
		t.Errorf("status.lastVerifiedRestore = %+v, want the drill of backup %s that passed", last, m.ID)
	}
	if c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.RestoreVerifiedCondition); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, m.ID) {
		t.Errorf("RestoreVerified %+v, want True naming backup %s", c, m.ID)
	}

	// (c) A flipped byte in the stored dump: the drill fails and records
	// why; the coop is told by its condition, an event and a metric.
	dump, _ := m.DatabaseObject(coop.Status.Database.Name)
	raw, err := s3.Client()
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, raw, "drill-backups", "cluster/drilled/"+m.ID+"/"+dump.Name)
	if out, err := runCronJob(t, runner, drill); err == nil || !strings.Contains(out, "is corrupt or incomplete") {
		t.Fatalf("the drill of a damaged backup: %v\n%s; want it to fail naming the damage", err, out)
	}
	if record, err := c.LatestDrill(ctx, "drilled"); err != nil || record == nil || record.OK || record.BackupID != m.ID {
		t.Fatalf("drill record %+v (%v), want the failed drill of backup %s", record, err, m.ID)
	}
	coop = restoreVerified(t, "drilled", v1alpha1.DrillFailedReason)
	last = coop.Status.LastVerifiedRestore
	if last.Result != v1alpha1.DrillFailed || last.BackupID != m.ID || !strings.Contains(last.Message, "sha256 mismatch") {
		t.Errorf("status.lastVerifiedRestore = %+v, want the failed drill of backup %s", last, m.ID)
	}
	if c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.RestoreVerifiedCondition); c.Status != metav1.ConditionFalse {
		t.Errorf("RestoreVerified %+v, want False", c)
	}
	if c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.ReadyCondition); c.Reason == v1alpha1.DrillFailedReason {
		t.Errorf("Ready %+v: a failed drill is told apart, not through Ready", c)
	}
	waitFor(t, 30*time.Second, "a Warning event of the failed drill", func(ctx context.Context) (bool, error) {
		var events corev1.EventList
		if err := adminClient.List(ctx, &events); err != nil {
			return false, err
		}
		return slices.ContainsFunc(events.Items, func(e corev1.Event) bool {
			return e.Type == corev1.EventTypeWarning && e.Reason == v1alpha1.DrillFailedReason && e.InvolvedObject.Name == "drilled" &&
				strings.Contains(e.Message, "sha256 mismatch")
		}), nil
	})
	waitFor(t, 10*time.Second, "the drill metrics", func(context.Context) (bool, error) {
		g := coopGauges(t, "drilled")
		_, stamped := g["cooperator_cooperative_last_verified_restore_timestamp_seconds"][""]
		return g["cooperator_cooperative_restore_drill_failed"][""] == 1 && stamped, nil
	})

	// A plan that turns drills off: the CronJob goes, and the coop says so.
	plan = &v1alpha1.Plan{}
	mustGet(t, "", "drill-plan", plan)
	plan.Spec.Backup.Drill.Enabled = ptr.To(false)
	if err := adminClient.Update(ctx, plan); err != nil {
		t.Fatal(err)
	}
	coop = restoreVerified(t, "drilled", v1alpha1.DrillsNotRequestedReason)
	if err := adminClient.Get(ctx, client.ObjectKeyFromObject(drill), &batchv1.CronJob{}); !apierrors.IsNotFound(err) {
		t.Errorf("drills off: the drill CronJob is still there (%v)", err)
	}

	// Deleted with deletionPolicy Delete, the coop's scratch database
	// goes with its other databases.
	if err := adminClient.Delete(ctx, coop); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the coop to be gone", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Name: "drilled"}, &v1alpha1.Cooperative{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if n := countDatabases(t, mainPostgres, scratch); n != 0 {
		t.Errorf("scratch database %s is still there after the coop was deleted with deletionPolicy Delete", scratch)
	}
}

func TestDrillCondition(t *testing.T) {
	const schedule = "17 5 * * 0"
	lastBackup := &v1alpha1.BackupRecord{ID: "20261129T031700Z"}
	drilled := func(id string, result v1alpha1.DrillResult, message string) *v1alpha1.DrillRecord {
		return &v1alpha1.DrillRecord{BackupID: id, Result: result, Message: message}
	}
	for name, tc := range map[string]struct {
		backup       *v1alpha1.BackupRecord
		drill        *v1alpha1.DrillRecord
		status       metav1.ConditionStatus
		reason, says string
	}{
		"no backup, no drill":         {nil, nil, metav1.ConditionFalse, v1alpha1.NoBackupYetReason, "no backup to drill yet"},
		"drill found no backup":       {nil, drilled("", v1alpha1.DrillFailed, "coop x has no backups"), metav1.ConditionFalse, v1alpha1.NoBackupYetReason, schedule},
		"a backup, no drill yet":      {lastBackup, nil, metav1.ConditionFalse, v1alpha1.DrillPendingReason, "20261129T031700Z"},
		"drill passed":                {lastBackup, drilled("20261129T031700Z", v1alpha1.DrillVerified, "ok"), metav1.ConditionTrue, v1alpha1.RestoreVerifiedReason, "Backup 20261129T031700Z restores"},
		"drill failed":                {lastBackup, drilled("20261129T031700Z", v1alpha1.DrillFailed, "sha256 mismatch"), metav1.ConditionFalse, v1alpha1.DrillFailedReason, "of backup 20261129T031700Z, failed: sha256 mismatch"},
		"backups gone from the store": {lastBackup, drilled("", v1alpha1.DrillFailed, "coop x has no backups"), metav1.ConditionFalse, v1alpha1.DrillFailedReason, "has no backups"},
	} {
		t.Run(name, func(t *testing.T) {
			coop := &v1alpha1.Cooperative{Status: v1alpha1.CooperativeStatus{LastBackup: tc.backup, LastVerifiedRestore: tc.drill}}
			status, reason, message := drillCondition(coop, schedule)
			if status != tc.status || reason != tc.reason || !strings.Contains(message, tc.says) {
				t.Errorf("drillCondition = %s %s %q, want %s %s saying %q", status, reason, message, tc.status, tc.reason, tc.says)
			}
		})
	}
}

func TestDrillRecordOfAJobThatEndedWithoutOne(t *testing.T) {
	started := metav1.NewTime(time.Date(2026, 11, 29, 5, 17, 0, 0, time.UTC))
	finished := metav1.NewTime(started.Add(3 * time.Minute))
	older := &backup.DrillRecord{BackupID: "20261122T031700Z", Time: started.Add(-7 * 24 * time.Hour), OK: true, Tables: 4}
	newer := &backup.DrillRecord{BackupID: "20261129T031700Z", Time: started.Add(5 * time.Second), OK: false, Message: "drill failed"}
	for name, tc := range map[string]struct {
		found  *backup.DrillRecord
		failed bool
		want   v1alpha1.DrillResult
		id     string
		says   string
	}{
		"a Job that failed, and its record":          {newer, true, v1alpha1.DrillFailed, newer.BackupID, "drill failed"},
		"a Job that failed before recording":         {older, true, v1alpha1.DrillFailed, "", "failed without recording a drill"},
		"a Job that succeeded: the newest record":    {older, false, v1alpha1.DrillVerified, older.BackupID, ""},
		"a Job that succeeded, and no record at all": {nil, false, v1alpha1.DrillFailed, "", "holds no record of its drill"},
	} {
		t.Run(name, func(t *testing.T) {
			got := drillRecord(tc.found, drillJob{name: "drill-x-1", started: started, finished: finished, failed: tc.failed}, "store")
			if got.Result != tc.want || got.BackupID != tc.id || !strings.Contains(got.Message, tc.says) || !got.CheckedAt.Equal(&finished) {
				t.Errorf("drillRecord = %+v, want %s of backup %q saying %q, checked at the Job's end", got, tc.want, tc.id, tc.says)
			}
		})
	}
}

// A database of the scratch database's name that another role owns is
// left alone: no drill runs into it, and the coop's backups go on.
func TestDrillsLeaveAScratchNameOfAnotherRoleAlone(t *testing.T) {
	ctx := context.Background()
	s3, err := testenv.StartS3(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3.Remove)
	if err := s3.CreateBucket(ctx, "scratch-squat-backups"); err != nil {
		t.Fatal(err)
	}
	admin, err := mainPostgres.Superuser(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close(ctx) }()
	scratch := postgres.DrillDatabaseName("coop_squatted")
	for _, stmt := range []string{"CREATE ROLE squatter NOLOGIN", "CREATE DATABASE " + scratch + " OWNER squatter"} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+scratch)
		_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS squatter")
	})
	startOperator(t)
	keys := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: adminNamespace, Name: "scratch-squat-keys"},
		StringData: map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": s3.SecretKey},
	}
	store := &v1alpha1.BackupStore{
		ObjectMeta: metav1.ObjectMeta{Name: "scratch-squat"},
		Spec: v1alpha1.BackupStoreSpec{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: "scratch-squat-backups", Insecure: true, PathStyle: true,
			CredentialsSecretRef: v1alpha1.SecretReference{Namespace: adminNamespace, Name: keys.Name}},
	}
	plan := newPlan("scratch-squat-plan")
	plan.Spec.Backup = v1alpha1.PlanBackup{Store: "scratch-squat", Schedule: "0 2 * * *"}
	create(t, keys, store, plan, newCoop("squatted", "scratch-squat-plan"))
	coop := restoreVerified(t, "squatted", v1alpha1.DatabaseNameTakenReason)
	if c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.RestoreVerifiedCondition); !strings.Contains(c.Message, scratch) {
		t.Errorf("RestoreVerified %+v, want it to name %s", c, scratch)
	}
	backupsReason(t, "squatted", v1alpha1.BackupsScheduledReason)
	if owner := databaseOwner(t, mainPostgres, scratch); owner != "squatter" {
		t.Errorf("database %s now has owner %q; another role's database must be left alone", scratch, owner)
	}
	err = adminClient.Get(ctx, client.ObjectKey{Namespace: adminNamespace, Name: specs.DrillName(coop)}, &batchv1.CronJob{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("a drill CronJob exists although its scratch database is another role's (%v)", err)
	}
}

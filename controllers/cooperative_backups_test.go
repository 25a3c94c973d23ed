package controllers

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/backup"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/testenv"
)

func backupsReason(t *testing.T, name, reason string) *v1alpha1.Cooperative {
	t.Helper()
	coop := &v1alpha1.Cooperative{}
	waitFor(t, 90*time.Second, "coop "+name+" BackupsReady reason "+reason, func(ctx context.Context) (bool, error) {
		if err := adminClient.Get(ctx, client.ObjectKey{Name: name}, coop); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.BackupsReadyCondition)
		return c != nil && c.Reason == reason && coop.Status.ObservedGeneration == coop.Generation, nil
	})
	return coop
}

// The backup CronJob the operator schedules is a command that really backs
// the coop up: run here as a process, with its arguments and the values of
// its Secrets, it writes a backup with a manifest into the store.
func TestBackupsAreScheduledAndTheirCommandBacksTheCoopUp(t *testing.T) {
	ctx := context.Background()
	s3, err := testenv.StartS3(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3.Remove)
	if err := s3.CreateBucket(ctx, "coop-backups"); err != nil {
		t.Fatal(err)
	}
	startOperator(t)
	keys := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: adminNamespace, Name: "scheduled-keys"},
		StringData: map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": s3.SecretKey},
	}
	store := &v1alpha1.BackupStore{
		ObjectMeta: metav1.ObjectMeta{Name: "scheduled"},
		Spec: v1alpha1.BackupStoreSpec{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: "coop-backups", Prefix: "cluster", Insecure: true, PathStyle: true,
			CredentialsSecretRef: v1alpha1.SecretReference{Namespace: adminNamespace, Name: keys.Name}},
	}
	plan := newPlan("backup-plan")
	plan.Spec.Backup = v1alpha1.PlanBackup{Store: "scheduled", Schedule: "0 2 * * *", Retention: v1alpha1.BackupRetention{Daily: 7, Weekly: 4, Monthly: 6}}
	coop := newCoop("backed-up", "backup-plan")
	create(t, keys, store, plan, coop)
	waitStore(t, "scheduled", v1alpha1.ReachableReason)
	coop = backupsReason(t, "backed-up", v1alpha1.BackupsScheduledReason)
	waitReady(t, "backed-up")

	cronJob := &batchv1.CronJob{}
	mustGet(t, adminNamespace, specs.BackupName(coop), cronJob)
	if cronJob.Spec.Schedule != specs.BackupSchedule(coop, "0 2 * * *") {
		t.Errorf("schedule %q, want the plan's spread over its hour", cronJob.Spec.Schedule)
	}
	assertControlledBy(t, cronJob, coop)

	// Run the scheduled command, as the CronJob's pod would.
	pod := cronJob.Spec.JobTemplate.Spec.Template.Spec
	container := pod.Containers[0]
	env := os.Environ()
	for _, e := range container.Env {
		secret := &corev1.Secret{}
		mustGet(t, adminNamespace, e.ValueFrom.SecretKeyRef.Name, secret)
		env = append(env, e.Name+"="+string(secret.Data[e.ValueFrom.SecretKeyRef.Key]))
	}
	cmd := exec.Command(operatorBinary(t), container.Args...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the scheduled backup failed: %v\n%s", err, out)
	}
	c, err := backup.Open(backup.Store{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: "coop-backups", Prefix: "cluster",
		AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Latest(ctx, "backed-up")
	if err != nil || m == nil {
		t.Fatalf("no backup of the coop in the store after the scheduled command: %v", err)
	}

	// Every minute: the CronJob's Job succeeds on the fake nodes, and the
	// operator reads the newest backup from the store into the status.
	plan = &v1alpha1.Plan{}
	mustGet(t, "", "backup-plan", plan)
	plan.Spec.Backup.Schedule = "* * * * *"
	if err := adminClient.Update(ctx, plan); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "status.lastBackup", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Name: "backed-up"}, coop)
		return err == nil && coop.Status.LastBackup != nil, err
	})
	if last := coop.Status.LastBackup; last.ID != m.ID || last.Size <= 0 || last.Location != "s3://coop-backups/cluster/backed-up/"+m.ID+"/" {
		t.Errorf("status.lastBackup = %+v, want backup %s", last, m.ID)
	}

	// A store that goes away is reported; a plan that names none unschedules.
	if err := adminClient.Delete(ctx, store); err != nil {
		t.Fatal(err)
	}
	backupsReason(t, "backed-up", v1alpha1.BackupStoreNotFoundReason)
	plan = &v1alpha1.Plan{}
	mustGet(t, "", "backup-plan", plan)
	plan.Spec.Backup.Store = ""
	if err := adminClient.Update(ctx, plan); err != nil {
		t.Fatal(err)
	}
	backupsReason(t, "backed-up", v1alpha1.BackupsNotRequestedReason)
	waitFor(t, 30*time.Second, "the CronJob to go", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKeyFromObject(cronJob), &batchv1.CronJob{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

// Deleting a coop with deletionPolicy Delete takes a final backup first; a
// final backup that fails keeps its databases.
func TestFinalBackupHoldsTheDropAndAFailedOneKeepsTheData(t *testing.T) {
	ctx := context.Background()
	s3, err := testenv.StartS3(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3.Remove)
	if err := s3.CreateBucket(ctx, "final-backups"); err != nil {
		t.Fatal(err)
	}
	// Backup Jobs run the failing image: the fake nodes fail their pods.
	cfg := testConfig
	cfg.Specs.RunnerImage = testenv.FailingImage
	stop := startOperatorWith(t, cfg)
	keys := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: adminNamespace, Name: "final-keys"},
		StringData: map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": s3.SecretKey},
	}
	store := &v1alpha1.BackupStore{
		ObjectMeta: metav1.ObjectMeta{Name: "final"},
		Spec: v1alpha1.BackupStoreSpec{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: "final-backups", Insecure: true, PathStyle: true,
			CredentialsSecretRef: v1alpha1.SecretReference{Namespace: adminNamespace, Name: keys.Name}},
	}
	plan := newPlan("final-plan")
	plan.Spec.Backup = v1alpha1.PlanBackup{Store: "final", Schedule: "0 4 * * *"}
	coop := newCoop("leaving", "final-plan")
	coop.Spec.DeletionPolicy = v1alpha1.DeletionPolicyDelete
	create(t, keys, store, plan, coop)
	coop = backupsReason(t, "leaving", v1alpha1.BackupsScheduledReason)
	database := coop.Status.Database.Name
	if n := countDatabases(t, mainPostgres, database); n != 1 {
		t.Fatalf("database %s: %d", database, n)
	}

	if err := adminClient.Delete(ctx, coop); err != nil {
		t.Fatal(err)
	}
	backupsReason(t, "leaving", v1alpha1.FinalBackupFailedReason)
	if n := countDatabases(t, mainPostgres, database); n != 1 {
		t.Fatalf("the database was dropped although the final backup failed")
	}

	// With a runner that works, deleting the failed Job tries again; the
	// Job succeeds and the databases go.
	stop()
	startOperator(t)
	job := &batchv1.Job{}
	mustGet(t, adminNamespace, specs.BackupName(coop)+"-final", job)
	if err := adminClient.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the coop to be gone", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Name: "leaving"}, &v1alpha1.Cooperative{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if n := countDatabases(t, mainPostgres, database); n != 0 {
		t.Errorf("database %s is still there after the coop was deleted with deletionPolicy Delete", database)
	}
}

package controllers

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/backup"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/testenv"
)

var (
	operatorOnce sync.Once
	operatorPath string
	operatorErr  error
)

// operatorBinary is cmd/cooperator, built once for the tests that run it as a
// process: the manager, the backup runner and the volume senders.
func operatorBinary(t *testing.T) string {
	t.Helper()
	operatorOnce.Do(func() {
		operatorPath = filepath.Join(env.Dir, "cooperator")
		operatorErr = testenv.BuildOperator(context.Background(), operatorPath)
	})
	if operatorErr != nil {
		t.Fatal(operatorErr)
	}
	return operatorPath
}

// runContainer runs a pod's one container as a process here, with its
// arguments and the values of the Secrets its environment names, and
// returns its exit code, its output and its termination message.
func runContainer(t *testing.T, pod corev1.PodSpec) (code int, output, message string) {
	t.Helper()
	return runContainerWith(t, pod, nil)
}

// runContainerWith runs the container with its arguments rewritten, as
// for addresses that differ here.
func runContainerWith(t *testing.T, pod corev1.PodSpec, rewrite func([]string) []string) (code int, output, message string) {
	t.Helper()
	container := pod.Containers[0]
	if rewrite != nil {
		container.Args = rewrite(container.Args)
	}
	termination := filepath.Join(t.TempDir(), "termination-log")
	environ := append(os.Environ(), "TERMINATION_MESSAGE_PATH="+termination)
	for _, e := range container.Env {
		secret := &corev1.Secret{}
		mustGet(t, adminNamespace, e.ValueFrom.SecretKeyRef.Name, secret)
		environ = append(environ, e.Name+"="+string(secret.Data[e.ValueFrom.SecretKeyRef.Key]))
	}
	cmd := exec.Command(operatorBinary(t), container.Args...)
	cmd.Env = environ
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	msg, _ := os.ReadFile(termination)
	return code, string(out), string(msg)
}

// runHeldJob waits for a Job of the held image and its Running pod, runs
// the pod's command here, and ends the pod with its exit code and
// termination message, as a kubelet would; the Job controller then ends
// the Job. It returns the command's exit code and output.
func runHeldJob(t *testing.T, name string) (int, string) {
	t.Helper()
	return runHeldJobWith(t, name, nil)
}

// runHeldJobWith is runHeldJob with the command's arguments rewritten.
func runHeldJobWith(t *testing.T, name string, rewrite func([]string) []string) (int, string) {
	t.Helper()
	ctx := context.Background()
	job := &batchv1.Job{}
	pod := &corev1.Pod{}
	waitFor(t, 60*time.Second, "a Running pod of Job "+name, func(ctx context.Context) (bool, error) {
		if err := adminClient.Get(ctx, client.ObjectKey{Namespace: adminNamespace, Name: name}, job); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		pods := &corev1.PodList{}
		if err := adminClient.List(ctx, pods, client.InNamespace(adminNamespace), client.MatchingLabels{batchv1.JobNameLabel: name}); err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1 {
				*pod = p
				return true, nil
			}
		}
		return false, nil
	})
	code, output, message := runContainerWith(t, pod.Spec, rewrite)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := adminClient.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		now := metav1.Now()
		pod.Status.Phase = corev1.PodSucceeded
		reason := "Completed"
		if code != 0 {
			pod.Status.Phase, reason = corev1.PodFailed, "Error"
		}
		cs := &pod.Status.ContainerStatuses[0]
		cs.Ready, cs.Started = false, ptr.To(false)
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: int32(code), Reason: reason, Message: message, StartedAt: now, FinishedAt: now}}
		for i := range pod.Status.Conditions {
			if c := &pod.Status.Conditions[i]; c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
				c.Status = corev1.ConditionFalse
			}
		}
		return adminClient.Status().Update(ctx, pod)
	})
	if err != nil {
		t.Fatalf("ending the pod of Job %s: %v", name, err)
	}
	return code, output
}

// restoreEnv is a store that answers, a plan that backs up to it, and the
// operator with Jobs that the tests run themselves.
func restoreEnv(t *testing.T, prefix string) (*testenv.S3, backup.Store) {
	t.Helper()
	ctx := context.Background()
	s3, err := testenv.StartS3(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3.Remove)
	bucket := prefix + "-backups"
	if err := s3.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig
	cfg.Specs.RunnerImage = testenv.HeldImage
	startOperatorWith(t, cfg)
	keys := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: adminNamespace, Name: prefix + "-keys"},
		StringData: map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": s3.SecretKey},
	}
	store := &v1alpha1.BackupStore{
		ObjectMeta: metav1.ObjectMeta{Name: prefix},
		Spec: v1alpha1.BackupStoreSpec{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: bucket, Prefix: "cluster", Insecure: true, PathStyle: true,
			CredentialsSecretRef: v1alpha1.SecretReference{Namespace: adminNamespace, Name: keys.Name}},
	}
	plan := newPlan(prefix + "-plan")
	plan.Spec.Backup = v1alpha1.PlanBackup{Store: prefix, Schedule: "0 3 * * *"}
	create(t, keys, store, plan, needsBlueprint(t, prefix+"-web", v1alpha1.BlueprintNeeds{Database: true}))
	waitStore(t, prefix, v1alpha1.ReachableReason)
	return s3, backup.Store{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: bucket, Prefix: "cluster",
		AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, PathStyle: true}
}

// restoreCoop is a coop on the plan of restoreEnv, running one app with a
// database of its own, Ready and with its backups scheduled.
func restoreCoop(t *testing.T, prefix, name string, edit func(*v1alpha1.Cooperative)) *v1alpha1.Cooperative {
	t.Helper()
	coop := newCoop(name, prefix+"-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "web", Blueprint: prefix + "-web", Version: "1.0"}}
	if edit != nil {
		edit(coop)
	}
	create(t, coop)
	backupsReason(t, name, v1alpha1.BackupsScheduledReason)
	return waitReady(t, name)
}

// backUp runs the coop's scheduled backup command now, and returns the
// backup's manifest.
func backUp(t *testing.T, store backup.Store, coop *v1alpha1.Cooperative) *backup.Manifest {
	t.Helper()
	cronJob := &batchv1.CronJob{}
	mustGet(t, adminNamespace, specs.BackupName(coop), cronJob)
	if code, out, _ := runContainer(t, cronJob.Spec.JobTemplate.Spec.Template.Spec); code != 0 {
		t.Fatalf("the scheduled backup failed: %s", out)
	}
	return latestBackup(t, store, coop.Name)
}

// latestBackup is the manifest of a coop's newest backup in the store.
func latestBackup(t *testing.T, store backup.Store, coop string) *backup.Manifest {
	t.Helper()
	c, err := backup.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Latest(context.Background(), coop)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sql runs statements in one of a coop's databases with the coop's own
// credentials, as its apps would.
func sql(t *testing.T, coop, database string, statements ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := connectAs(ctx, mainPostgres, databaseSecret(t, coop), database)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	for _, s := range statements {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s in %s: %v", s, database, err)
		}
	}
}

// rows reads one text column of a query, in order, joined by commas.
func rows(t *testing.T, coop, database, query string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := connectAs(ctx, mainPostgres, databaseSecret(t, coop), database)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	r, err := conn.Query(ctx, query)
	if err != nil {
		t.Fatalf("%s in %s: %v", query, database, err)
	}
	defer r.Close()
	var out []string
	for r.Next() {
		var s string
		if err := r.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

func newRestore(coop, name string, spec v1alpha1.RestoreSpec) *v1alpha1.Restore {
	return &v1alpha1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: "coop-" + coop, Name: name}, Spec: spec}
}

// waitRestorePhase waits for a Restore to reach a phase, and returns it.
func waitRestorePhase(t *testing.T, restore *v1alpha1.Restore, phase v1alpha1.RestorePhase) *v1alpha1.Restore {
	t.Helper()
	got := &v1alpha1.Restore{}
	defer func() {
		if t.Failed() {
			t.Logf("last seen status of Restore %s: %+v", restore.Name, got.Status)
		}
	}()
	waitFor(t, 90*time.Second, "Restore "+restore.Name+" "+string(phase), func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKeyFromObject(restore), got)
		return err == nil && got.Status.Phase == phase, client.IgnoreNotFound(err)
	})
	return got
}

func deploymentOf(t *testing.T, coop string) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	mustGet(t, "coop-"+coop, "web-web", d)
	return d
}

// A coop's admins restore its last backup in place: the apps stop while the
// databases are restored, the data is the backup's after, and the apps
// come back. A damaged backup is refused before the apps are touched.
func TestRestoreInPlaceAndRefuseADamagedBackup(t *testing.T) {
	ctx := context.Background()
	s3, store := restoreEnv(t, "inplace")
	coop := restoreCoop(t, "inplace", "undo", nil)
	appDB := coop.Status.Database.Apps[0].Name
	sql(t, "undo", "coop_undo", "CREATE TABLE items (name text)", "INSERT INTO items VALUES ('bread'), ('jam')")
	sql(t, "undo", appDB, "CREATE TABLE posts (body text)", "INSERT INTO posts VALUES ('hello')")
	m := backUp(t, store, coop)

	sql(t, "undo", "coop_undo", "DELETE FROM items WHERE name = 'jam'", "INSERT INTO items VALUES ('mistake')")
	sql(t, "undo", appDB, "UPDATE posts SET body = 'defaced'")

	restore := newRestore("undo", "yesterday", v1alpha1.RestoreSpec{})
	create(t, restore)
	if code, out := runHeldJob(t, specs.VerifyJobName(restore)); code != 0 {
		t.Fatalf("verify failed: %s", out)
	}
	// The restore Job starts only once the apps are at zero.
	job := &batchv1.Job{}
	waitFor(t, 60*time.Second, "the restore Job", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Namespace: adminNamespace, Name: specs.RestoreJobName(restore)}, job)
		return err == nil, client.IgnoreNotFound(err)
	})
	if d := deploymentOf(t, "undo"); d.Spec.Replicas == nil || *d.Spec.Replicas != 0 {
		t.Errorf("the app's Deployment has %v replicas while the restore runs, want 0", d.Spec.Replicas)
	}
	var pods corev1.PodList
	if err := adminClient.List(ctx, &pods, client.InNamespace("coop-undo"), client.HasLabels{specs.AppLabel}); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Errorf("%d app pods are left while the restore runs", len(pods.Items))
	}
	c := backupsReason(t, "undo", v1alpha1.BackupsScheduledReason)
	if apps := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.AppsReadyCondition); apps == nil || apps.Reason != v1alpha1.AppsRestoringReason {
		t.Errorf("AppsReady = %+v, want reason %s", apps, v1alpha1.AppsRestoringReason)
	}
	spec := job.Spec.Template.Spec
	if *job.Spec.BackoffLimit != 0 || spec.Containers[0].TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError ||
		!*spec.SecurityContext.RunAsNonRoot || *spec.AutomountServiceAccountToken {
		t.Errorf("restore Job: backoffLimit %d, termination message policy %s; want 0, FallbackToLogsOnError, restricted",
			*job.Spec.BackoffLimit, spec.Containers[0].TerminationMessagePolicy)
	}
	if code, out := runHeldJob(t, specs.RestoreJobName(restore)); code != 0 {
		t.Fatalf("restore failed: %s", out)
	}

	done := waitRestorePhase(t, restore, v1alpha1.RestoreSucceeded)
	if done.Status.BackupID != m.ID || done.Status.CompletedAt == nil ||
		done.Status.Source != "s3://inplace-backups/cluster/undo/"+m.ID+"/" ||
		!meta.IsStatusConditionTrue(done.Status.Conditions, v1alpha1.SucceededCondition) {
		t.Errorf("status = %+v, want backup %s restored", done.Status, m.ID)
	}
	if got := rows(t, "undo", "coop_undo", "SELECT name FROM items ORDER BY name"); got != "bread,jam" {
		t.Errorf("items after the restore: %s, want the backup's bread,jam", got)
	}
	if got := rows(t, "undo", appDB, "SELECT body FROM posts"); got != "hello" {
		t.Errorf("the app's posts after the restore: %s, want the backup's hello", got)
	}
	waitReady(t, "undo")
	if d := deploymentOf(t, "undo"); *d.Spec.Replicas != 1 {
		t.Errorf("the app has %d replicas after the restore, want its 1 back", *d.Spec.Replicas)
	}
	waitFor(t, 30*time.Second, "the restore's password Secret to go", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Namespace: adminNamespace, Name: specs.RestoreName(restore)}, &corev1.Secret{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})

	// A newer backup, damaged in the store: the newest is the one taken.
	time.Sleep(time.Second) // backup ids are seconds
	sql(t, "undo", "coop_undo", "INSERT INTO items VALUES ('butter')")
	damaged := backUp(t, store, coop)
	corrupt(t, s3, store, damaged)
	sql(t, "undo", "coop_undo", "INSERT INTO items VALUES ('live')")
	generation := deploymentOf(t, "undo").Generation

	bad := newRestore("undo", "damaged", v1alpha1.RestoreSpec{})
	create(t, bad)
	if code, _ := runHeldJob(t, specs.VerifyJobName(bad)); code == 0 {
		t.Fatal("verify passed a damaged backup")
	}
	failed := waitRestorePhase(t, bad, v1alpha1.RestoreFailed)
	if !strings.Contains(failed.Status.Message, "backup "+damaged.ID+" is corrupt or incomplete") || failed.Status.BackupID != damaged.ID {
		t.Errorf("message %q, want the runner's own: backup %s is corrupt or incomplete", failed.Status.Message, damaged.ID)
	}
	if c := meta.FindStatusCondition(failed.Status.Conditions, v1alpha1.SucceededCondition); c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.VerifyFailedReason {
		t.Errorf("Succeeded = %+v, want False, %s", c, v1alpha1.VerifyFailedReason)
	}
	if err := adminClient.Get(ctx, client.ObjectKey{Namespace: adminNamespace, Name: specs.RestoreJobName(bad)}, &batchv1.Job{}); !apierrors.IsNotFound(err) {
		t.Errorf("a restore Job of the damaged backup exists (%v)", err)
	}
	if d := deploymentOf(t, "undo"); d.Generation != generation || *d.Spec.Replicas != 1 {
		t.Errorf("the app was scaled (generation %d, was %d; replicas %d) for a backup that failed its check", d.Generation, generation, *d.Spec.Replicas)
	}
	if got := rows(t, "undo", "coop_undo", "SELECT name FROM items ORDER BY name"); got != "bread,butter,jam,live" {
		t.Errorf("items after the refused restore: %s, want the live rows kept", got)
	}

	// A final Restore is never run again; its spec cannot change.
	failed.Spec.BackupID = m.ID
	if err := adminClient.Update(ctx, failed); err == nil || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("changing a Restore's spec: %v, want refused as immutable", err)
	}
	// Deleting the Restores takes their Jobs with them.
	for _, r := range []*v1alpha1.Restore{restore, bad} {
		if err := adminClient.Delete(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "the Restores and their Jobs to go", func(ctx context.Context) (bool, error) {
		jobs := &batchv1.JobList{}
		if err := adminClient.List(ctx, jobs, client.InNamespace(adminNamespace),
			client.HasLabels{v1alpha1.RestoreLabel}, client.MatchingLabels{v1alpha1.CooperativeLabel: "undo"}); err != nil {
			return false, err
		}
		left := 0
		for _, j := range jobs.Items {
			if j.DeletionTimestamp.IsZero() {
				left++
			}
		}
		err := adminClient.Get(ctx, client.ObjectKeyFromObject(bad), &v1alpha1.Restore{})
		return left == 0 && apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

// corrupt flips a byte of the backup's first database object in the store.
func corrupt(t *testing.T, s3 *testenv.S3, store backup.Store, m *backup.Manifest) {
	t.Helper()
	ctx := context.Background()
	mc, err := s3.Client()
	if err != nil {
		t.Fatal(err)
	}
	key := strings.Join([]string{store.Prefix, m.Coop, m.ID, m.Objects[0].Name}, "/")
	obj, err := mc.GetObject(ctx, store.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if _, err := mc.PutObject(ctx, store.Bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A coop is cloned from another's backup only with the other's consent;
// the clone holds the source's data, and the source is untouched. A backup
// id that does not exist is refused by name.
func TestRestoreIntoACloneNeedsConsent(t *testing.T) {
	_, store := restoreEnv(t, "clone")
	source := restoreCoop(t, "clone", "origin", nil)
	restoreCoop(t, "clone", "copy", nil)
	sourceApp := source.Status.Database.Apps[0].Name
	sql(t, "origin", "coop_origin", "CREATE TABLE items (name text)", "INSERT INTO items VALUES ('seed'), ('soil')")
	sql(t, "origin", sourceApp, "CREATE TABLE posts (body text)", "INSERT INTO posts VALUES ('from origin')")
	m := backUp(t, store, source)
	generation := deploymentOf(t, "origin").Generation

	refused := newRestore("copy", "without-consent", v1alpha1.RestoreSpec{Source: "origin"})
	create(t, refused)
	got := waitRestorePhase(t, refused, v1alpha1.RestoreFailed)
	if !strings.Contains(got.Status.Message, "spec.backup.clonesTo") {
		t.Errorf("message %q, want it to name spec.backup.clonesTo", got.Status.Message)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.SucceededCondition); c == nil || c.Reason != v1alpha1.CloneNotAllowedReason {
		t.Errorf("Succeeded = %+v, want reason %s", c, v1alpha1.CloneNotAllowedReason)
	}

	update(t, "origin", func(c *v1alpha1.Cooperative) { c.Spec.Backup.ClonesTo = []string{"copy"} })
	missing := newRestore("copy", "no-such-backup", v1alpha1.RestoreSpec{Source: "origin", BackupID: "20000101T000000Z"})
	create(t, missing)
	got = waitRestorePhase(t, missing, v1alpha1.RestoreFailed)
	if !strings.Contains(got.Status.Message, "20000101T000000Z") || !strings.Contains(got.Status.Message, "spec.backupID") {
		t.Errorf("message %q, want it to name spec.backupID 20000101T000000Z", got.Status.Message)
	}

	clone := newRestore("copy", "from-origin", v1alpha1.RestoreSpec{Source: "origin", BackupID: m.ID})
	create(t, clone)
	if code, out := runHeldJob(t, specs.VerifyJobName(clone)); code != 0 {
		t.Fatalf("verify failed: %s", out)
	}
	if code, out := runHeldJob(t, specs.RestoreJobName(clone)); code != 0 {
		t.Fatalf("restore failed: %s", out)
	}
	done := waitRestorePhase(t, clone, v1alpha1.RestoreSucceeded)
	if done.Status.BackupID != m.ID || done.Status.Source != "s3://clone-backups/cluster/origin/"+m.ID+"/" {
		t.Errorf("status = %+v", done.Status)
	}
	copyDB := waitReady(t, "copy").Status.Database
	if got := rows(t, "copy", copyDB.Name, "SELECT name FROM items ORDER BY name"); got != "seed,soil" {
		t.Errorf("the clone's items: %q, want the source's seed,soil", got)
	}
	if got := rows(t, "copy", copyDB.Apps[0].Name, "SELECT body FROM posts"); got != "from origin" {
		t.Errorf("the clone's app posts: %q, want the source's", got)
	}
	// The source is untouched, and its apps never stopped.
	if got := rows(t, "origin", "coop_origin", "SELECT name FROM items ORDER BY name"); got != "seed,soil" {
		t.Errorf("the source's items: %q", got)
	}
	if d := deploymentOf(t, "origin"); d.Generation != generation {
		t.Errorf("the source's app was changed (generation %d, was %d) by a clone of it", d.Generation, generation)
	}
}

func TestDatabaseMapSendsEachDatabaseToTheSameApp(t *testing.T) {
	source := &v1alpha1.Cooperative{ObjectMeta: metav1.ObjectMeta{Name: "millers"}}
	source.Status.Database = &v1alpha1.DatabaseStatus{Name: "coop_millers", Apps: []v1alpha1.AppDatabaseStatus{
		{App: "shop", Name: "coop_millers_shop"}, {App: "wiki-2", Name: "coop_millers_wiki_2"}}}
	target := &v1alpha1.Cooperative{ObjectMeta: metav1.ObjectMeta{Name: "bakers"}}
	target.Status.Database = &v1alpha1.DatabaseStatus{Name: "coop_bakers", Apps: []v1alpha1.AppDatabaseStatus{
		{App: "shop", Name: "coop_bakers_shop"}, {App: "wiki-2", Name: "coop_bakers_wiki_2"}}}
	manifest := func(dbs ...string) *backup.Manifest {
		m := &backup.Manifest{FormatVersion: 2, ID: "20261130T180000Z"}
		for _, db := range dbs {
			m.Objects = append(m.Objects, backup.Object{Kind: backup.KindDatabase, Database: db})
		}
		return m
	}

	got, err := databaseMap(manifest("coop_millers", "coop_millers_shop", "coop_millers_wiki_2"), source, target)
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"coop_millers", "coop_bakers"}, {"coop_millers_shop", "coop_bakers_shop"}, {"coop_millers_wiki_2", "coop_bakers_wiki_2"}}
	if !slices.Equal(got, want) {
		t.Errorf("map = %v, want %v", got, want)
	}

	target.Status.Database.Apps = target.Status.Database.Apps[:1]
	_, err = databaseMap(manifest("coop_millers", "coop_millers_wiki_2"), source, target)
	var problem *restoreProblem
	if !errors.As(err, &problem) || problem.wait || problem.reason != v1alpha1.AppNotRunReason || !strings.Contains(problem.message, "app wiki-2") {
		t.Errorf("a backup database of an app the target lacks: %v, want it refused naming app wiki-2", err)
	}
}

func TestRunnerErrorIsTheLastLine(t *testing.T) {
	for in, want := range map[string]string{
		"backup 20261130T180000Z is corrupt or incomplete: databases/x.dump.zst: sha256 mismatch": "backup 20261130T180000Z is corrupt or incomplete: databases/x.dump.zst: sha256 mismatch",
		"Restoring...\ncooperator: restore of backup 1 failed, nothing was changed: boom\n":       "restore of backup 1 failed, nothing was changed: boom",
	} {
		if got := runnerError(in); got != want {
			t.Errorf("runnerError(%q) = %q, want %q", in, got, want)
		}
	}
}

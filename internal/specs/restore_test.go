package specs

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

func testRestore(namespace, name string) *v1alpha1.Restore {
	return &v1alpha1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
}

func TestRestoreNamesFitAJobName(t *testing.T) {
	long := testRestore("coop-"+strings.Repeat("a", 58), strings.Repeat("r", 63))
	other := testRestore("coop-"+strings.Repeat("a", 58), strings.Repeat("r", 62)+"s")
	for _, r := range []*v1alpha1.Restore{long, other} {
		for _, n := range []string{VerifyJobName(r), RestoreJobName(r)} {
			if len(n) > 63 {
				t.Errorf("Job name %q has %d characters; at most 63 fit", n, len(n))
			}
		}
	}
	if RestoreName(long) == RestoreName(other) {
		t.Errorf("two Restores share the name %q", RestoreName(long))
	}
	if n := RestoreName(testRestore("coop-bakers", "undo")); n != "restore-bakers-undo" {
		t.Errorf("name = %q", n)
	}
}

func TestRestoreJobsRunOnceRestrictedWithKeysOutOfArgs(t *testing.T) {
	restore := testRestore("coop-bakers", "undo")
	target := RestoreTarget{Source: "millers", ID: "20261130T180000Z",
		Store: v1alpha1.BackupStoreSpec{Endpoint: "s3.example", Bucket: "backups", Prefix: "c1"}, StoreSecret: "s3-keys",
		Host: "pg.example", Port: 5432, User: "coop_bakers", SSLMode: "require",
		Rename: [][2]string{{"coop_millers", "coop_bakers"}, {"coop_millers_shop", "coop_bakers_shop"}}}
	opts := Options{OperatorNamespace: "cooperator-system", RunnerImage: "cooperator:1"}

	verify := VerifyJob(restore, testCoop(), target, opts)
	args := verify.Spec.Template.Spec.Containers[0].Args
	if !slices.Equal(args[:3], []string{"verify", "--coop=millers", "--id=20261130T180000Z"}) || slices.ContainsFunc(args, func(a string) bool {
		return strings.HasPrefix(a, "--db-")
	}) {
		t.Errorf("verify args %v: want the source's backup, and no database", args)
	}
	for _, e := range verify.Spec.Template.Spec.Containers[0].Env {
		if *e.Name == "PGPASSWORD" {
			t.Error("the verify Job is given the database password; it needs none")
		}
	}

	job := RestoreJob(restore, testCoop(), target, opts)
	if *job.Namespace != "cooperator-system" || *job.Spec.BackoffLimit != 0 || job.Labels[v1alpha1.RestoreLabel] != "undo" ||
		job.Labels[v1alpha1.CooperativeLabel] != "bakers" || len(job.OwnerReferences) != 0 {
		t.Errorf("Job %s/%s: backoffLimit %d, labels %v, owners %v", *job.Namespace, *job.Name, *job.Spec.BackoffLimit, job.Labels, job.OwnerReferences)
	}
	pod := job.Spec.Template.Spec
	c := pod.Containers[0]
	for _, want := range []string{"restore", "--coop=millers", "--id=20261130T180000Z", "--db-user=coop_bakers",
		"--db-map=coop_millers=coop_bakers", "--db-map=coop_millers_shop=coop_bakers_shop", "--s3-bucket=backups"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	for _, a := range c.Args {
		if strings.Contains(strings.ToLower(a), "password") || strings.Contains(strings.ToLower(a), "secret") {
			t.Errorf("argument %q: secrets go in the environment, from Secrets, never in arguments", a)
		}
	}
	refs := map[string]string{}
	for _, e := range c.Env {
		refs[*e.Name] = *e.ValueFrom.SecretKeyRef.Name
	}
	if refs["PGPASSWORD"] != "restore-bakers-undo" || refs["AWS_ACCESS_KEY_ID"] != "s3-keys" {
		t.Errorf("env from Secrets %v", refs)
	}
	if *c.TerminationMessagePolicy != "FallbackToLogsOnError" || *pod.RestartPolicy != "Never" ||
		!*pod.SecurityContext.RunAsNonRoot || *c.SecurityContext.AllowPrivilegeEscalation || *pod.AutomountServiceAccountToken {
		t.Error("the restore pod is not restricted, keeps no termination message, or holds a service account token")
	}
	secret := RestorePasswordSecret(restore, testCoop(), "cooperator-system", "pw", "", "")
	if *secret.Name != "restore-bakers-undo" || string(secret.Data["password"]) != "pw" || secret.Labels[v1alpha1.RestoreLabel] != "undo" {
		t.Errorf("Secret %s: labels %v", *secret.Name, secret.Labels)
	}
	if _, ok := secret.Data[VolumeTokenKey]; ok {
		t.Errorf("a restore of databases only holds a volume token")
	}

	// With volumes to bring back, the runner serves them behind the
	// Restore's Service, to the coop's receivers only.
	target.RemoteVolumes = []string{"docs-data"}
	job = RestoreJob(restore, testCoop(), target, opts)
	labels := job.Spec.Template.Labels
	if labels[BackupRunnerLabel] != "bakers" || labels[RunnerLabel] != "restore" ||
		!slices.Contains(job.Spec.Template.Spec.Containers[0].Args, "--remote-volume=docs-data") {
		t.Errorf("restore Job with volumes: labels %v, args %v", labels, job.Spec.Template.Spec.Containers[0].Args)
	}
	svc := RestoreRunnerService(restore, testCoop(), opts)
	if svc.Spec.Selector[RunnerLabel] != "restore" || svc.Spec.Selector[v1alpha1.RestoreLabel] != "undo" {
		t.Errorf("restore Service selects %v", svc.Spec.Selector)
	}
	if BackupRunnerService(testCoop(), opts).Spec.Selector[RunnerLabel] != "backup" {
		t.Errorf("the backup Service would select a restore's runner too")
	}
}

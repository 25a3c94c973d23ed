package specs

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

func TestDrillNameFitsACronJobNameApartFromTheBackup(t *testing.T) {
	long := &v1alpha1.Cooperative{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("a", 58)}}
	if n := DrillName(long); len(n) > 52 || n == BackupName(long) {
		t.Errorf("drill CronJob %q: want at most 52 characters, apart from the backup's %q", n, BackupName(long))
	}
	if n := DrillName(testCoop()); n != "drill-bakers" {
		t.Errorf("name = %q", n)
	}
}

func TestDrillCronJobRestoresIntoTheScratchDatabaseAsTheCoop(t *testing.T) {
	target := BackupTarget{Host: "pg.example", Port: 5432, User: "coop_bakers", SSLMode: "require",
		Databases: []string{"coop_bakers", "coop_bakers_shop"},
		Store:     v1alpha1.BackupStoreSpec{Endpoint: "s3.example", Bucket: "backups", Prefix: "c1"}, StoreSecret: "s3-keys",
		Schedule: "0 2 * * *"}
	coop := testCoop()
	cj := DrillCronJob(coop, target, "coop_bakers__drill", "0 5 * * 0", Options{OperatorNamespace: "cooperator-system", RunnerImage: "cooperator:1"})
	if *cj.Name != "drill-bakers" || *cj.Namespace != "cooperator-system" || *cj.Spec.ConcurrencyPolicy != "Forbid" {
		t.Errorf("CronJob %s/%s, concurrency %s", *cj.Namespace, *cj.Name, *cj.Spec.ConcurrencyPolicy)
	}
	if got, want := *cj.Spec.Schedule, BackupSchedule(coop, "0 5 * * 0"); got != want || *cj.Spec.TimeZone != "Etc/UTC" {
		t.Errorf("schedule %q in %s, want %q in UTC: spread over the hour as backups are", got, *cj.Spec.TimeZone, want)
	}
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	c := pod.Containers[0]
	if c.Args[0] != "verify" {
		t.Errorf("command %v, want verify", c.Args)
	}
	for _, want := range []string{"--coop=bakers", "--scratch-db=coop_bakers__drill", "--db-user=coop_bakers", "--db-host=pg.example", "--s3-bucket=backups", "--s3-prefix=c1"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--db-name") || strings.HasPrefix(a, "--keep-") {
			t.Errorf("argument %q: a drill neither names databases nor prunes", a)
		}
	}
	refs := map[string]string{}
	for _, e := range c.Env {
		refs[*e.Name] = *e.ValueFrom.SecretKeyRef.Name
	}
	if refs["PGPASSWORD"] != "backup-bakers" || refs["AWS_ACCESS_KEY_ID"] != "s3-keys" || refs["AWS_SECRET_ACCESS_KEY"] != "s3-keys" {
		t.Errorf("env from Secrets %v", refs)
	}
	if !*pod.SecurityContext.RunAsNonRoot || *c.SecurityContext.AllowPrivilegeEscalation || *pod.AutomountServiceAccountToken ||
		!*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("the drill pod is not restricted, or holds a service account token")
	}
	if *cj.Spec.JobTemplate.Spec.BackoffLimit != 0 {
		t.Errorf("backoffLimit %d: a failed drill is told, not retried at once", *cj.Spec.JobTemplate.Spec.BackoffLimit)
	}
}

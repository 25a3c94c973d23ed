package specs

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

func TestBackupScheduleSpreadsCoopsOverTheHour(t *testing.T) {
	minutes := map[string]bool{}
	for i := range 200 {
		coop := &v1alpha1.Cooperative{ObjectMeta: metav1.ObjectMeta{Name: "coop-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26))}}
		got := BackupSchedule(coop, "0 3 * * *")
		if again := BackupSchedule(coop, "0 3 * * *"); again != got {
			t.Fatalf("%s: %q then %q; the schedule must not change from pass to pass", coop.Name, got, again)
		}
		fields := strings.Fields(got)
		if len(fields) != 5 || fields[1] != "3" {
			t.Fatalf("%q: want the plan's hour kept", got)
		}
		minutes[fields[0]] = true
	}
	if len(minutes) < 40 {
		t.Errorf("200 coops start in %d distinct minutes of the hour; want them spread", len(minutes))
	}
	coop := testCoop()
	for _, kept := range []string{"*/15 * * * *", "@daily", "0 3 * *"} {
		if got := BackupSchedule(coop, kept); got != kept {
			t.Errorf("%q became %q; only a plain minute is spread", kept, got)
		}
	}
}

func TestBackupNameFitsACronJobName(t *testing.T) {
	long := &v1alpha1.Cooperative{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("a", 58)}}
	other := &v1alpha1.Cooperative{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("a", 57) + "b"}}
	if n := BackupName(long); len(n) > 52 || n == BackupName(other) {
		t.Errorf("names %q and %q: want at most 52 characters, and apart", n, BackupName(other))
	}
	if n := BackupName(testCoop()); n != "backup-bakers" {
		t.Errorf("name = %q", n)
	}
}

func TestBackupCronJobKeepsKeysOutOfArgsAndRunsRestricted(t *testing.T) {
	target := BackupTarget{Host: "pg.example", Port: 5432, User: "coop_bakers", SSLMode: "require",
		Databases: []string{"coop_bakers", "coop_bakers_shop"},
		Store:     v1alpha1.BackupStoreSpec{Endpoint: "s3.example", Bucket: "backups", Prefix: "c1"}, StoreSecret: "s3-keys",
		Schedule: "0 2 * * *", Retention: v1alpha1.BackupRetention{Daily: 7, Weekly: 4, Monthly: 6}}
	cj := BackupCronJob(testCoop(), target, Options{OperatorNamespace: "cooperator-system", RunnerImage: "cooperator:1"})
	if *cj.Namespace != "cooperator-system" || *cj.Spec.ConcurrencyPolicy != "Forbid" {
		t.Errorf("namespace %s, concurrency %s", *cj.Namespace, *cj.Spec.ConcurrencyPolicy)
	}
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	c := pod.Containers[0]
	for _, want := range []string{"backup", "--coop=bakers", "--db-name=coop_bakers", "--db-name=coop_bakers_shop", "--s3-bucket=backups", "--keep-daily=7"} {
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
	if refs["PGPASSWORD"] != "backup-bakers" || refs["AWS_ACCESS_KEY_ID"] != "s3-keys" || refs["AWS_SECRET_ACCESS_KEY"] != "s3-keys" {
		t.Errorf("env from Secrets %v", refs)
	}
	if !*pod.SecurityContext.RunAsNonRoot || *c.SecurityContext.AllowPrivilegeEscalation || *pod.AutomountServiceAccountToken {
		t.Error("the backup pod is not restricted, or holds a service account token")
	}
}

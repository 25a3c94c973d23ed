package controllers

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/specs"
)

// mountedKey writes one key of a Secret in the operator's namespace to a
// file, as the kubelet mounts it, and points the flag at it.
func mountedKey(t *testing.T, secret, key, flag string) func([]string) []string {
	t.Helper()
	s := &corev1.Secret{}
	mustGet(t, adminNamespace, secret, s)
	path := filepath.Join(t.TempDir(), key)
	if err := os.WriteFile(path, s.Data[key], 0o400); err != nil {
		t.Fatal(err)
	}
	return func(args []string) []string { return replaceArg(args, flag, path) }
}

// A coop that names its age recipients gets backups only its own key
// opens; a Restore brings one back with that key, and without it is
// refused naming the field.
func TestEncryptedBackupsOpenOnlyWithTheCoopsKey(t *testing.T) {
	_, store := restoreEnv(t, "sealed")
	identity, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	coop := newCoop("sealed-coop", "sealed-plan")
	coop.Spec.Backup.RecipientsSecret = specs.BackupRecipientsSecretName
	create(t, coop)
	c := backupsReason(t, "sealed-coop", v1alpha1.RecipientsInvalidReason)
	if cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.BackupsReadyCondition); !strings.Contains(cond.Message, "spec.backup.recipientsSecret: Secret backup-recipients does not exist") {
		t.Errorf("BackupsReady message %q, want the missing Secret named", cond.Message)
	}
	// The coop's admins write their public key.
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "coop-sealed-coop", Name: specs.BackupRecipientsSecretName},
		StringData: map[string]string{specs.RecipientsKey: "# our key\n" + identity.Recipient().String() + "\n"}})
	backupsReason(t, "sealed-coop", v1alpha1.BackupsScheduledReason)
	coop = waitReady(t, "sealed-coop")
	sql(t, "sealed-coop", "coop_sealed_coop", "CREATE TABLE members (name text)", "INSERT INTO members VALUES ('ada'), ('bo')")

	cronJob := &batchv1.CronJob{}
	mustGet(t, adminNamespace, specs.BackupName(coop), cronJob)
	pod := cronJob.Spec.JobTemplate.Spec.Template.Spec
	if !strings.Contains(strings.Join(pod.Containers[0].Args, " "), "--recipients-file=/keys/recipients") ||
		pod.Volumes[0].Secret == nil || pod.Volumes[0].Secret.SecretName != specs.BackupName(coop) {
		t.Errorf("backup pod: args %v, volumes %+v", pod.Containers[0].Args, pod.Volumes)
	}
	if code, out, _ := runContainerWith(t, pod, mountedKey(t, specs.BackupName(coop), specs.RecipientsKey, "recipients-file")); code != 0 {
		t.Fatalf("the scheduled backup failed: %s", out)
	}
	m := latestBackup(t, store, "sealed-coop")
	if !m.Encrypted {
		t.Fatal("the scheduled backup is not encrypted")
	}
	sql(t, "sealed-coop", "coop_sealed_coop", "DELETE FROM members")

	// Without the key, the Restore stops before anything runs.
	keyless := newRestore("sealed-coop", "keyless", v1alpha1.RestoreSpec{})
	create(t, keyless)
	failed := waitRestorePhase(t, keyless, v1alpha1.RestoreFailed)
	if !strings.Contains(failed.Status.Message, "spec.identitySecret: backup "+m.ID+" of sealed-coop is encrypted") {
		t.Errorf("message %q, want spec.identitySecret named", failed.Status.Message)
	}

	// With it, the backup comes back.
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "coop-sealed-coop", Name: "our-key"},
		StringData: map[string]string{specs.IdentityKey: identity.String() + "\n"}})
	restore := newRestore("sealed-coop", "with-key", v1alpha1.RestoreSpec{IdentitySecret: "our-key"})
	create(t, restore)
	if code, out := runHeldJob(t, specs.VerifyJobName(restore)); code != 0 {
		t.Fatalf("verify failed: %s", out)
	}
	job := &batchv1.Job{}
	waitFor(t, 60*time.Second, "the restore Job", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Namespace: adminNamespace, Name: specs.RestoreJobName(restore)}, job)
		return err == nil, client.IgnoreNotFound(err)
	})
	if code, out := runHeldJobWith(t, specs.RestoreJobName(restore), mountedKey(t, specs.RestoreName(restore), specs.IdentityKey, "identity-file")); code != 0 {
		t.Fatalf("restore failed: %s", out)
	}
	waitRestorePhase(t, restore, v1alpha1.RestoreSucceeded)
	if got := rows(t, "sealed-coop", "coop_sealed_coop", "SELECT name FROM members ORDER BY name"); got != "ada,bo" {
		t.Errorf("members after the restore: %s, want ada,bo", got)
	}
}

package controllers

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/specs"
)

// readFiles is every regular file under dir, by path, with its content.
func readFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A Restore brings back an app's volume with its databases: a receiver in
// the coop's namespace, with the claim mounted, fetches the archive from
// the runner, and swaps it in once the databases are restored.
func TestRestoreBringsBackTheAppsVolumes(t *testing.T) {
	_, store := restoreEnv(t, "files")
	create(t, volumeBlueprint(t, "files-volume"))
	coop := restoreCoop(t, "files", "keeps-files", func(c *v1alpha1.Cooperative) {
		c.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "docs", Blueprint: "files-volume", Version: "1.0"}}
	})
	sql(t, "keeps-files", "coop_keeps_files", "CREATE TABLE minutes (body text)", "INSERT INTO minutes VALUES ('assembly')")

	// The volume, as the app wrote it; backed up from here with the
	// scheduled command, the claim given as a local directory.
	live := t.TempDir()
	if err := os.WriteFile(filepath.Join(live, "minutes.txt"), []byte("general assembly"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := readFiles(t, live)
	cronJob := &batchv1.CronJob{}
	mustGet(t, adminNamespace, specs.BackupName(coop), cronJob)
	if code, out, _ := runContainerWith(t, cronJob.Spec.JobTemplate.Spec.Template.Spec, func(args []string) []string {
		args = slices.DeleteFunc(args, func(a string) bool {
			return strings.HasPrefix(a, "--listen=") || strings.HasPrefix(a, "--remote-volume=")
		})
		return append(args, "--volume=docs-data="+live)
	}); code != 0 {
		t.Fatalf("the backup failed: %s", out)
	}
	m := latestBackup(t, store, "keeps-files")
	if _, ok := m.VolumeObject("docs-data"); !ok {
		t.Fatalf("backup %s holds no volume docs-data", m.ID)
	}

	// A mistake, then the Restore.
	sql(t, "keeps-files", "coop_keeps_files", "DELETE FROM minutes")
	if err := os.WriteFile(filepath.Join(live, "minutes.txt"), []byte("overwritten"), 0o644); err != nil {
		t.Fatal(err)
	}
	restore := newRestore("keeps-files", "files-back", v1alpha1.RestoreSpec{})
	create(t, restore)
	if code, out := runHeldJob(t, specs.VerifyJobName(restore)); code != 0 {
		t.Fatalf("verify failed: %s", out)
	}
	receiver := &batchv1.Job{}
	waitFor(t, 60*time.Second, "the volume receiver", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-keeps-files", Name: specs.VolumeReceiverName(restore, "docs")}, receiver)
		return err == nil, client.IgnoreNotFound(err)
	})
	pod := receiver.Spec.Template.Spec
	if v := pod.Volumes[0].PersistentVolumeClaim; v == nil || v.ClaimName != "docs-data" || v.ReadOnly {
		t.Errorf("receiver volumes %+v, want the claim docs-data, writable", pod.Volumes)
	}
	if *pod.SecurityContext.RunAsUser != 1000 {
		t.Errorf("receiver runs as %d, want the app's user 1000", *pod.SecurityContext.RunAsUser)
	}
	mustGet(t, adminNamespace, specs.RestoreName(restore), &corev1.Service{})

	// The runner and the receiver, on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	type ended struct {
		err error
		out []byte
	}
	received := make(chan ended, 1)
	args := replaceArg(replaceArg(pod.Containers[0].Args, "from", "http://"+addr), "volume", "docs-data="+live)
	cmd := exec.Command(operatorBinary(t), args...)
	cmd.Env = envOf(t, "coop-keeps-files", pod.Containers[0])
	go func() {
		out, err := cmd.CombinedOutput()
		received <- ended{err, out}
	}()
	if code, out := runHeldJobWith(t, specs.RestoreJobName(restore), func(args []string) []string {
		return replaceArg(args, "listen", addr)
	}); code != 0 {
		t.Fatalf("restore failed: %s", out)
	}
	if r := <-received; r.err != nil {
		t.Fatalf("the receiver failed: %v: %s", r.err, r.out)
	}

	done := waitRestorePhase(t, restore, v1alpha1.RestoreSucceeded)
	if done.Status.BackupID != m.ID {
		t.Errorf("restored backup %s, want %s", done.Status.BackupID, m.ID)
	}
	if got := readFiles(t, live); len(got) != len(want) || got["minutes.txt"] != want["minutes.txt"] {
		t.Errorf("files after the restore: %v, want %v", got, want)
	}
	if got := rows(t, "keeps-files", "coop_keeps_files", "SELECT body FROM minutes"); got != "assembly" {
		t.Errorf("minutes after the restore: %s, want assembly", got)
	}
}

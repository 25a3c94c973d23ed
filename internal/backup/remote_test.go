package backup_test

import (
	"archive/tar"
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// startCommand starts a cooperator command in the background; wait
// returns its stdout, stderr and error.
func startCommand(t *testing.T, env []string, args ...string) (wait func() (string, string, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := exec.CommandContext(ctx, runner, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	return func() (string, string, error) {
		defer cancel()
		err := cmd.Wait()
		return stdout.String(), stderr.String(), err
	}
}

// startRunner starts `cooperator backup`.
func startRunner(t *testing.T, env []string, args ...string) func() (string, string, error) {
	t.Helper()
	return startCommand(t, env, append([]string{"backup"}, args...)...)
}

// Volumes mounted where the runner is not are streamed to it by a sender,
// stored like local ones, and restored equal.
func TestRemoteVolumesAreBackedUpAndRestoredEqual(t *testing.T) {
	db := newCoopDB(t, "remote")
	db.fill(t, 1000)
	uploads, config := t.TempDir(), t.TempDir()
	makeFiles(t, uploads, 7)
	makeFiles(t, config, 8)
	wantUploads, wantConfig := treeHashes(t, uploads), treeHashes(t, config)
	env := append(storeEnv(s3, db), "VOLUME_TOKEN=s3cret-token")
	addr := freeAddr(t)

	wait := startRunner(t, env, "--coop", "remote", "--listen", addr,
		"--remote-volume", "uploads", "--remote-volume", "config")
	// Two senders, as for two apps; the second volume may come first.
	for _, v := range []string{"config=" + config, "uploads=" + uploads} {
		if _, stderr, err := runRunner(t, env, "send-volumes", "--to", "http://"+addr, "--volume", v); err != nil {
			t.Fatalf("send-volumes %s: %v\n%s", v, err, stderr)
		}
	}
	stdout, stderr, err := wait()
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, `"volume": "uploads"`) || !strings.Contains(stdout, `"volume": "config"`) {
		t.Errorf("the manifest does not list both volumes:\n%s", stdout)
	}

	// Change everything, then restore: the volumes are fetched by a
	// receiver where they are mounted, the database by the runner.
	wantRows := db.rowHashes(t)
	db.exec(t, "DELETE FROM public.items WHERE id % 2 = 0")
	if err := os.WriteFile(filepath.Join(uploads, "new.bin"), []byte("written after the backup"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(config, "stray.txt"), []byte("written after the backup"), 0o644); err != nil {
		t.Fatal(err)
	}
	changedUploads := treeHashes(t, uploads)

	// A damaged volume is refused before anything changes, on both sides.
	m := client(t, s3)
	latest, err := m.Latest(context.Background(), "remote")
	if err != nil {
		t.Fatal(err)
	}
	putBack := corrupt(t, "cooperator/remote/"+latest.ID+"/volumes/uploads.tar.zst", func(b []byte) []byte { b[len(b)/2] ^= 1; return b })
	addr = freeAddr(t)
	wait = startRestore(t, env, "--coop", "remote", "--listen", addr, "--remote-volume", "uploads", "--remote-volume", "config")
	_, recvErr, err := runRunner(t, env, "receive-volumes", "--from", "http://"+addr, "--wait", "10s",
		"--volume", "uploads="+uploads, "--volume", "config="+config)
	if err == nil {
		t.Errorf("the receiver succeeded on a damaged backup:\n%s", recvErr)
	}
	_, stderr, err = wait()
	wantErrorContaining(t, err, stderr, "corrupt or incomplete", "volumes/uploads.tar.zst")
	equalMaps(t, "uploads after a refused restore", treeHashes(t, uploads), changedUploads)
	putBack()

	addr = freeAddr(t)
	wait = startRestore(t, env, "--coop", "remote", "--listen", addr, "--remote-volume", "uploads", "--remote-volume", "config")
	if _, stderr, err := runRunner(t, env, "receive-volumes", "--from", "http://"+addr,
		"--volume", "uploads="+uploads, "--volume", "config="+config); err != nil {
		t.Errorf("receive-volumes: %v\n%s", err, stderr)
	}
	if _, stderr, err := wait(); err != nil {
		t.Fatalf("restore: %v\n%s", err, stderr)
	}
	equalMaps(t, "rows", db.rowHashes(t), wantRows)
	equalMaps(t, "uploads", treeHashes(t, uploads), wantUploads)
	equalMaps(t, "config", treeHashes(t, config), wantConfig)
}

// startRestore starts `cooperator restore`.
func startRestore(t *testing.T, env []string, args ...string) func() (string, string, error) {
	t.Helper()
	return startCommand(t, env, append([]string{"restore"}, args...)...)
}

// A sender cut off halfway, or one that never comes, fails the backup,
// which leaves no manifest.
func TestIncompleteRemoteVolumeFailsTheBackup(t *testing.T) {
	db := newCoopDB(t, "cutoff")
	env := append(storeEnv(s3, db), "VOLUME_TOKEN=s3cret-token")

	// Half an archive: its first entry, without the end-of-archive blocks.
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	body := bytes.Repeat([]byte("payload "), 4096)
	if err := tw.WriteHeader(&tar.Header{Name: "file", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(body); err != nil {
		t.Fatal(err)
	}
	half := archive.Bytes()[:archive.Len()/2]

	addr := freeAddr(t)
	wait := startRunner(t, env, "--coop", "cutoff", "--listen", addr, "--remote-volume", "uploads")
	var status int
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		req, err := http.NewRequest(http.MethodPut, "http://"+addr+"/volumes/uploads", bytes.NewReader(half))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer s3cret-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue // not listening yet
		}
		status = resp.StatusCode
		_ = resp.Body.Close()
		break
	}
	if status != http.StatusInternalServerError {
		t.Errorf("the runner answered a cut-off archive with %d, want 500", status)
	}
	_, stderr, err := wait()
	wantErrorContaining(t, err, stderr, "failed and was not recorded", "volume uploads", "incomplete")
	for _, k := range objectKeys(t, s3, "cutoff") {
		t.Errorf("object %s left in the store by a failed backup", k)
	}

	// A sender with the wrong token is refused, and the runner gives up.
	addr = freeAddr(t)
	wait = startRunner(t, env, "--coop", "cutoff", "--listen", addr, "--remote-volume", "uploads", "--remote-wait", "5s")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, sendErr, err := runRunner(t, append(env, "VOLUME_TOKEN=wrong"), "send-volumes", "--to", "http://"+addr, "--volume", "uploads="+dir)
	wantErrorContaining(t, err, sendErr, "refused the token")
	_, stderr, err = wait()
	wantErrorContaining(t, err, stderr, "did not arrive within 5s")
	if keys := objectKeys(t, s3, "cutoff"); len(keys) != 0 {
		t.Errorf("a backup that got no volume left %v", keys)
	}
}

package backup_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"

	"cooperator.dev/cooperator/internal/backup"
	"cooperator.dev/cooperator/internal/testenv"
)

func TestBackupDropRestoreIsEqual(t *testing.T) {
	db := newCoopDB(t, "roundtrip")
	db.fill(t, 100_000)
	files := t.TempDir()
	makeFiles(t, files, 1)
	wantRows, wantFiles := db.rowHashes(t), treeHashes(t, files)
	env := storeEnv(s3, db)

	m := mustBackUp(t, env, "--coop", "roundtrip", "--volume", "uploads="+files, "--app", "nextcloud=29.0.1")
	dump, _ := m.DatabaseObject("roundtrip")
	if got := dump.Tables["public.items"]; got != 100_000 {
		t.Errorf("manifest counts %d rows in public.items, want 100000", got)
	}
	if got := dump.Tables["billing.invoices"]; got != 10_000 {
		t.Errorf("manifest counts %d rows in billing.invoices, want 10000", got)
	}
	if m.Apps["nextcloud"] != "29.0.1" || m.Encrypted || strings.Join(m.Databases(), " ") != "roundtrip" {
		t.Errorf("manifest: apps %v, encrypted %v, databases %q", m.Apps, m.Encrypted, m.Databases())
	}
	wantKeys := []string{
		"cooperator/roundtrip/" + m.ID + "/databases/roundtrip.dump.zst",
		"cooperator/roundtrip/" + m.ID + "/manifest.json",
		"cooperator/roundtrip/" + m.ID + "/volumes/uploads.tar.zst",
	}
	if got := objectKeys(t, s3, "roundtrip"); strings.Join(got, " ") != strings.Join(wantKeys, " ") {
		t.Errorf("stored objects are %v, want %v", got, wantKeys)
	}

	// A drill into a scratch database finds the recorded row counts.
	superExec(t, "CREATE DATABASE roundtrip_scratch OWNER roundtrip_owner")
	if _, stderr, err := runRunner(t, env, "verify", "--coop", "roundtrip", "--scratch-db", "roundtrip_scratch"); err != nil {
		t.Fatalf("drill: %v\n%s", err, stderr)
	}

	// Lose everything, then restore the latest backup.
	db.recreate(t)
	if err := os.Remove(filepath.Join(files, "docs/report.pdf")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, "db.sqlite"), []byte("overwritten"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, "stray.txt"), []byte("written after the backup"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runRunner(t, env, "restore", "--coop", "roundtrip", "--volume", "uploads="+files); err != nil {
		t.Fatalf("restore: %v\n%s", err, stderr)
	}
	equalMaps(t, "rows", db.rowHashes(t), wantRows)
	equalMaps(t, "files", treeHashes(t, files), wantFiles)
}

// corrupt replaces an object with what change makes of its bytes, and
// returns a function that puts the original back.
func corrupt(t *testing.T, key string, change func([]byte) []byte) (restore func()) {
	t.Helper()
	ctx := context.Background()
	c := rawClient(t, s3)
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	orig, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	put := func(data []byte) {
		if _, err := c.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if changed := change(bytes.Clone(orig)); changed == nil {
		if err := c.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	} else {
		put(changed)
	}
	return func() { put(orig) }
}

func TestDamagedBackupIsRefusedAndLiveDataUntouched(t *testing.T) {
	db := newCoopDB(t, "damaged")
	db.fill(t, 2_000)
	files := t.TempDir()
	makeFiles(t, files, 2)
	env := storeEnv(s3, db)
	m := mustBackUp(t, env, "--coop", "damaged", "--volume", "uploads="+files)

	// Live data moves on after the backup: a restore would change it.
	db.exec(t, "INSERT INTO items (id, name) VALUES (1000001, 'after the backup'); DELETE FROM billing.invoices WHERE id < 50")
	if err := os.WriteFile(filepath.Join(files, "docs/new.txt"), []byte("after the backup"), 0o644); err != nil {
		t.Fatal(err)
	}
	liveRows, liveFiles := db.rowHashes(t), treeHashes(t, files)

	prefix := "cooperator/damaged/" + m.ID + "/"
	for _, tc := range []struct {
		name, object, says string
		change             func([]byte) []byte
	}{
		{"truncated dump", "databases/damaged.dump.zst", "bytes stored, the manifest says", func(b []byte) []byte { return b[:len(b)/2] }},
		{"bit-flipped dump", "databases/damaged.dump.zst", "sha256 mismatch", func(b []byte) []byte { b[len(b)/3] ^= 0x10; return b }},
		{"truncated volume", "volumes/uploads.tar.zst", "bytes stored, the manifest says", func(b []byte) []byte { return b[:len(b)-1] }},
		{"bit-flipped volume", "volumes/uploads.tar.zst", "sha256 mismatch", func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b }},
		{"missing volume", "volumes/uploads.tar.zst", "missing", func([]byte) []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer corrupt(t, prefix+tc.object, tc.change)()
			_, stderr, err := runRunner(t, env, "restore", "--coop", "damaged", "--id", m.ID, "--volume", "uploads="+files)
			wantErrorContaining(t, err, stderr, fmt.Sprintf("backup %s is corrupt or incomplete: %s: ", m.ID, tc.object), tc.says)
			_, stderr, err = runRunner(t, env, "verify", "--coop", "damaged", "--id", m.ID)
			wantErrorContaining(t, err, stderr, "is corrupt or incomplete: "+tc.object)
			equalMaps(t, "rows", db.rowHashes(t), liveRows)
			equalMaps(t, "files", treeHashes(t, files), liveFiles)
		})
	}

	// Whole again, the same backup restores.
	if _, stderr, err := runRunner(t, env, "restore", "--coop", "damaged", "--id", m.ID, "--volume", "uploads="+files); err != nil {
		t.Fatalf("restore of the whole backup: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(files, "docs/new.txt")); !os.IsNotExist(err) {
		t.Errorf("a file written after the backup survived its restore: %v", err)
	}
}

func TestUnreachableStoreFailsLoudlyWithoutManifest(t *testing.T) {
	ctx := context.Background()
	store, err := testenv.StartS3(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Remove()
	if err := store.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	db := newCoopDB(t, "outage")
	db.fill(t, 1_000)
	env := storeEnv(store, db)

	t.Run("down from the start", func(t *testing.T) {
		store.Stop()
		_, stderr, err := runRunner(t, env, "backup", "--coop", "outage")
		if err := store.Start(ctx); err != nil {
			t.Fatal(err)
		}
		wantErrorContaining(t, err, stderr, "failed and was not recorded")
		if keys := objectKeys(t, store, "outage"); len(keys) != 0 {
			t.Errorf("objects were stored: %v", keys)
		}
	})

	t.Run("down mid-upload", func(t *testing.T) {
		cmd, stderr := startBigBackup(t, store, env, "outage")
		store.Stop()
		err := cmd.Wait()
		if serr := store.Start(ctx); serr != nil {
			t.Fatal(serr)
		}
		wantErrorContaining(t, err, stderr.String(), "failed and was not recorded", "volume big")
		for _, k := range objectKeys(t, store, "outage") {
			if strings.HasSuffix(k, "/manifest.json") {
				t.Errorf("a manifest exists: %s", k)
			}
		}
		if ids, err := client(t, store).List(ctx, "outage"); err != nil || len(ids) != 0 {
			t.Errorf("backups listed: %v, %v", ids, err)
		}
	})
}

func TestInterruptedBackupRemovesWhatItUploaded(t *testing.T) {
	db := newCoopDB(t, "interrupted")
	db.fill(t, 1_000)
	cmd, stderr := startBigBackup(t, s3, storeEnv(s3, db), "interrupted")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	wantErrorContaining(t, err, stderr.String(), "failed and was not recorded")
	// The database's object was whole when the signal came: it is gone too.
	if keys := objectKeys(t, s3, "interrupted"); len(keys) != 0 {
		t.Errorf("objects remain: %v", keys)
	}
	for up := range rawClient(t, s3).ListIncompleteUploads(context.Background(), bucket, "cooperator/interrupted/", true) {
		t.Errorf("an upload remains open: %s %v", up.Key, up.Err)
	}
}

// startBigBackup starts a backup of the database and a volume of
// incompressible data, many parts long, and returns once the volume's
// upload has begun.
func startBigBackup(t *testing.T, store *testenv.S3, env []string, coop string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	files := t.TempDir()
	data := make([]byte, 160<<20)
	for i := 0; i < len(data); i += 8 {
		v := uint64(i)*0x9E3779B97F4A7C15 ^ uint64(i>>7)*0xBF58476D1CE4E5B9
		for j := 0; j < 8; j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	if err := os.WriteFile(filepath.Join(files, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(runner, "backup", "--coop", coop, "--volume", "big="+files, "--part-size-mib", "5", "--upload-threads", "1")
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	raw := rawClient(t, store)
	deadline := time.Now().Add(30 * time.Second)
	for {
		for up := range raw.ListIncompleteUploads(context.Background(), bucket, "cooperator/"+coop+"/", true) {
			if up.Err == nil && strings.HasSuffix(up.Key, "big.tar.zst") {
				return cmd, &stderr
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("the volume's upload never started:\n%s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEncryptedBackupNeedsItsIdentity(t *testing.T) {
	db := newCoopDB(t, "sealed")
	db.fill(t, 1_000)
	files := t.TempDir()
	makeFiles(t, files, 3)
	wantRows, wantFiles := db.rowHashes(t), treeHashes(t, files)
	env := storeEnv(s3, db)

	keys := t.TempDir()
	identity, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	writeFile := func(name, text string) string {
		p := filepath.Join(keys, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	recipients := writeFile("recipients.txt", "# the coop's key\n"+identity.Recipient().String()+"\n")
	identityFile := writeFile("identity.txt", identity.String()+"\n")
	otherFile := writeFile("other.txt", other.String()+"\n")

	m := mustBackUp(t, env, "--coop", "sealed", "--volume", "uploads="+files, "--recipients-file", recipients)
	if !m.Encrypted {
		t.Error("the manifest does not say encrypted")
	}
	for _, o := range m.Objects {
		if !strings.HasSuffix(o.Name, ".age") {
			t.Errorf("object %s is not named .age", o.Name)
		}
		obj, err := rawClient(t, s3).GetObject(context.Background(), bucket, "cooperator/sealed/"+m.ID+"/"+o.Name, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 21)
		if _, err := io.ReadFull(obj, head); err != nil || string(head) != "age-encryption.org/v1" {
			t.Errorf("object %s does not start as an age file: %q, %v", o.Name, head, err)
		}
		_ = obj.Close()
	}

	db.exec(t, "DELETE FROM billing.invoices")
	if err := os.Remove(filepath.Join(files, "db.sqlite")); err != nil {
		t.Fatal(err)
	}
	liveRows, liveFiles := db.rowHashes(t), treeHashes(t, files)

	_, stderr, err := runRunner(t, env, "restore", "--coop", "sealed", "--volume", "uploads="+files)
	wantErrorContaining(t, err, stderr, "is encrypted: an age identity is needed")
	_, stderr, err = runRunner(t, env, "restore", "--coop", "sealed", "--volume", "uploads="+files, "--identity-file", otherFile)
	wantErrorContaining(t, err, stderr, "cannot be decrypted", "none of the given identities")
	equalMaps(t, "rows", db.rowHashes(t), liveRows)
	equalMaps(t, "files", treeHashes(t, files), liveFiles)

	// Without an identity the checksums can still be checked.
	if _, stderr, err := runRunner(t, env, "verify", "--coop", "sealed"); err != nil {
		t.Errorf("verify without an identity: %v\n%s", err, stderr)
	}
	if _, stderr, err := runRunner(t, env, "restore", "--coop", "sealed", "--volume", "uploads="+files, "--identity-file", identityFile); err != nil {
		t.Fatalf("restore with the identity: %v\n%s", err, stderr)
	}
	equalMaps(t, "rows", db.rowHashes(t), wantRows)
	equalMaps(t, "files", treeHashes(t, files), wantFiles)
}

func TestPruneKeepsWhatThePolicySays(t *testing.T) {
	ctx := context.Background()
	db := newCoopDB(t, "pruned")
	db.exec(t, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
	c := client(t, s3)
	day := func(d, h int) time.Time { return time.Date(2026, 11, d, h, 0, 0, 0, time.UTC) }
	// One a day from the 20th to the 30th of November 2026, two on the
	// last three days.
	var all []string
	for d := 20; d <= 30; d++ {
		hours := []int{18}
		if d >= 28 {
			hours = []int{6, 18}
		}
		for _, h := range hours {
			m, err := c.Backup(ctx, backup.Options{Coop: "pruned", Databases: []backup.Database{db.database()}, Time: day(d, h)})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, m.ID)
		}
	}
	// A failed backup's leftovers, older than a day, with no manifest.
	raw := rawClient(t, s3)
	orphan := "cooperator/pruned/20261101T000000Z/databases/pruned.dump.zst"
	if _, err := raw.PutObject(ctx, bucket, orphan, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	removed, err := c.Prune(ctx, "pruned", backup.Policy{KeepDaily: 3, KeepWeekly: 3}, day(30, 20))
	if err != nil {
		t.Fatal(err)
	}
	// Daily: the 30th, 29th and 28th at 18:00. Weekly: the ISO weeks of
	// the 30th and of the 23rd to the 29th, both kept already, and of the
	// 16th to the 22nd: the 22nd at 18:00.
	want := []string{"20261122T180000Z", "20261128T180000Z", "20261129T180000Z", "20261130T180000Z"}
	ids, err := c.List(ctx, "pruned")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Errorf("kept %v, want %v", ids, want)
	}
	if len(removed) != len(all)-len(want) {
		t.Errorf("removed %d backups, want %d", len(removed), len(all)-len(want))
	}
	for _, k := range objectKeys(t, s3, "pruned") {
		id := strings.Split(strings.TrimPrefix(k, "cooperator/pruned/"), "/")[0]
		if !strings.Contains(strings.Join(want, " "), id) {
			t.Errorf("object %s of a pruned backup remains", k)
		}
	}
	latest, err := c.Latest(ctx, "pruned")
	if err != nil || latest.ID != "20261130T180000Z" {
		t.Errorf("latest is %v, %v", latest, err)
	}
	if _, err := c.Prune(ctx, "pruned", backup.Policy{}, day(30, 20)); err == nil {
		t.Error("an empty policy was accepted")
	}
}

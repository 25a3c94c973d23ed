package backup_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"cooperator.dev/cooperator/internal/backup"
)

// A drill records what it found in the store, passed or failed, where
// the operator reads it; the record is no backup, and pruning leaves it.
func TestDrillIsRecordedInTheStore(t *testing.T) {
	ctx := context.Background()
	c := client(t, s3)
	db := newCoopDB(t, "drilled")
	db.fill(t, 1000)
	db.sibling(t, "drilled_scratch")
	env := storeEnv(s3, db)

	// No backup yet: the drill fails, and says so in its record.
	_, stderr, err := runRunner(t, env, "verify", "--coop", "drilled", "--scratch-db", "drilled_scratch")
	wantErrorContaining(t, err, stderr, "coop drilled has no backups")
	r, err := c.LatestDrill(ctx, "drilled")
	if err != nil || r == nil {
		t.Fatalf("no drill record after a drill without a backup: %v", err)
	}
	if r.OK || r.BackupID != "" || !strings.Contains(r.Message, "has no backups") {
		t.Errorf("record of a drill without a backup: %+v", r)
	}

	m := mustBackUp(t, env, "--coop", "drilled", "--keep-daily", "1")
	if _, stderr, err := runRunner(t, env, "verify", "--coop", "drilled", "--scratch-db", "drilled_scratch"); err != nil {
		t.Fatalf("drill of a good backup: %v\n%s", err, stderr)
	}
	r, err = c.LatestDrill(ctx, "drilled")
	if err != nil || r == nil {
		t.Fatalf("no drill record: %v", err)
	}
	if !r.OK || r.BackupID != m.ID || r.Databases != 1 || r.Tables != 2 || time.Since(r.Time) > time.Minute {
		t.Errorf("record of a good drill: %+v, want backup %s passed with 1 database and 2 tables, just now", r, m.ID)
	}

	// The records do not count as backups, and a backup's pruning leaves
	// them: one backup kept, and every drill record still there.
	time.Sleep(1100 * time.Millisecond) // backup ids have seconds
	m2 := mustBackUp(t, env, "--coop", "drilled", "--keep-daily", "1")
	ids, err := c.List(ctx, "drilled")
	if err != nil || strings.Join(ids, " ") != m2.ID {
		t.Errorf("backups listed: %v (%v), want only %s", ids, err, m2.ID)
	}
	drills := 0
	for _, k := range objectKeys(t, s3, "drilled") {
		if strings.HasPrefix(k, "cooperator/drilled/drills/") {
			drills++
		}
	}
	if drills != 2 {
		t.Errorf("%d drill records after pruning, want 2", drills)
	}

	// A flipped byte in a stored object: the drill fails, and its record says why.
	dump, _ := m2.DatabaseObject("drilled")
	defer corrupt(t, "cooperator/drilled/"+m2.ID+"/"+dump.Name, func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b })()
	_, stderr, err = runRunner(t, env, "verify", "--coop", "drilled", "--scratch-db", "drilled_scratch")
	wantErrorContaining(t, err, stderr, "backup "+m2.ID+" is corrupt or incomplete")
	r, err = c.LatestDrill(ctx, "drilled")
	if err != nil || r == nil {
		t.Fatalf("no drill record after a failed drill: %v", err)
	}
	if r.OK || r.BackupID != m2.ID || !strings.Contains(r.Message, "sha256 mismatch") {
		t.Errorf("record of a drill of a damaged backup: %+v", r)
	}
}

// Only the newest drill records are kept.
func TestOldDrillRecordsAreRemoved(t *testing.T) {
	ctx := context.Background()
	c := client(t, s3)
	start := time.Date(2026, 1, 4, 5, 0, 0, 0, time.UTC)
	for i := range backup.KeepDrills + 2 {
		at := start.Add(time.Duration(i) * 7 * 24 * time.Hour)
		if err := c.WriteDrill(ctx, "weekly", backup.DrillRecord{BackupID: backup.NewID(at.Add(-2 * time.Hour)), Time: at, OK: true,
			Message: fmt.Sprintf("drill %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	keys := objectKeys(t, s3, "weekly")
	if len(keys) != backup.KeepDrills {
		t.Fatalf("%d drill records kept, want %d", len(keys), backup.KeepDrills)
	}
	if oldest := "cooperator/weekly/drills/" + start.Add(2*7*24*time.Hour).Format("20060102T150405.000000000Z") + ".json"; keys[0] != oldest {
		t.Errorf("oldest record kept is %s, want %s: the two oldest go", keys[0], oldest)
	}
	r, err := c.LatestDrill(ctx, "weekly")
	if err != nil || r == nil || r.Message != fmt.Sprintf("drill %d", backup.KeepDrills+1) {
		t.Errorf("latest drill record: %+v (%v), want the last written", r, err)
	}
	if r, err := c.LatestDrill(ctx, "never-drilled"); err != nil || r != nil {
		t.Errorf("a coop never drilled: record %+v, error %v; want none", r, err)
	}
}

// A backup encrypted to the coop's keys cannot be restored by a drill
// without them: the drill checks every object's checksum, and says so.
func TestDrillOfAnEncryptedBackupChecksItsChecksums(t *testing.T) {
	ctx := context.Background()
	c := client(t, s3)
	db := newCoopDB(t, "sealeddrill")
	db.fill(t, 100)
	db.sibling(t, "sealed_drill_scratch")
	env := storeEnv(s3, db)
	identity, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	recipients := filepath.Join(t.TempDir(), "recipients.txt")
	if err := os.WriteFile(recipients, []byte(identity.Recipient().String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := mustBackUp(t, env, "--coop", "sealeddrill", "--recipients-file", recipients)

	if _, stderr, err := runRunner(t, env, "verify", "--coop", "sealeddrill", "--scratch-db", "sealed_drill_scratch"); err != nil {
		t.Fatalf("drill of an encrypted backup: %v\n%s", err, stderr)
	}
	r, err := c.LatestDrill(ctx, "sealeddrill")
	if err != nil || r == nil {
		t.Fatalf("no drill record: %v", err)
	}
	if !r.OK || !r.ChecksumsOnly || r.BackupID != m.ID || r.Tables != 0 || !strings.Contains(r.Message, "encrypted to the coop's keys") {
		t.Errorf("record of the drill of an encrypted backup: %+v", r)
	}

	// A damaged object still fails it.
	obj, _ := m.DatabaseObject("sealeddrill")
	putBack := corrupt(t, "cooperator/sealeddrill/"+m.ID+"/"+obj.Name, func(b []byte) []byte { b[len(b)/2] ^= 1; return b })
	defer putBack()
	time.Sleep(time.Second) // drill records are named by the second
	_, stderr, err := runRunner(t, env, "verify", "--coop", "sealeddrill", "--scratch-db", "sealed_drill_scratch")
	wantErrorContaining(t, err, stderr, "sha256 mismatch")
	if r, err := c.LatestDrill(ctx, "sealeddrill"); err != nil || r == nil || r.OK {
		t.Errorf("record of the drill of a damaged encrypted backup: %+v, %v", r, err)
	}
}

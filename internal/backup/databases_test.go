package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"cooperator.dev/cooperator/internal/backup"
)

// fillForum makes tables unlike fill's, as an app's database has.
func (db coopDB) fillForum(t testing.TB, posts int) {
	t.Helper()
	db.exec(t, fmt.Sprintf(`
CREATE SCHEMA forum;
CREATE TABLE forum.posts (id int PRIMARY KEY, title text, body text);
INSERT INTO forum.posts SELECT g, 'post ' || g, repeat(md5(g::text), 3) FROM generate_series(1, %d) g;
CREATE TABLE votes (id serial PRIMARY KEY, post int REFERENCES forum.posts, up boolean);
INSERT INTO votes (post, up) SELECT 1 + g %% %d, g %% 3 = 0 FROM generate_series(1, %d) g;`, posts, posts, posts*3))
}

func (db coopDB) forumHashes(t testing.TB) map[string]string {
	t.Helper()
	return db.tableHashes(t, "forum.posts", "votes")
}

func differ(t testing.TB, what string, a, b map[string]string) {
	t.Helper()
	if fmt.Sprint(a) == fmt.Sprint(b) {
		t.Fatalf("%s did not change: the test would prove nothing", what)
	}
}

func TestCoopBackupHoldsEveryDatabase(t *testing.T) {
	coop := newCoopDB(t, "coop_multi")
	app := coop.sibling(t, "coop_multi_forum")
	coop.fill(t, 2_000)
	app.fillForum(t, 300)
	wantCoop, wantApp := coop.rowHashes(t), app.forumHashes(t)
	env := storeEnv(s3, coop)

	m := mustBackUp(t, env, "--coop", "multi", "--db-name", "coop_multi", "--db-name", "coop_multi_forum")
	if m.FormatVersion != backup.FormatVersion || strings.Join(m.Databases(), " ") != "coop_multi coop_multi_forum" {
		t.Fatalf("manifest format %d holds databases %v", m.FormatVersion, m.Databases())
	}
	for name, want := range map[string]map[string]int64{
		"coop_multi":       {"public.items": 2_000, "billing.invoices": 200},
		"coop_multi_forum": {"forum.posts": 300, "public.votes": 900},
	} {
		o, _ := m.DatabaseObject(name)
		if o.Name != "databases/"+name+".dump.zst" || o.Size == 0 || len(o.SHA256) != 64 || fmt.Sprint(o.Tables) != fmt.Sprint(want) {
			t.Errorf("database %s: object %s, %d bytes, sha256 %q, tables %v; want tables %v", name, o.Name, o.Size, o.SHA256, o.Tables, want)
		}
	}
	prefix := "cooperator/multi/" + m.ID + "/"
	wantKeys := prefix + "databases/coop_multi.dump.zst " + prefix + "databases/coop_multi_forum.dump.zst " + prefix + "manifest.json"
	if got := strings.Join(objectKeys(t, s3, "multi"), " "); got != wantKeys {
		t.Errorf("stored objects are %s, want %s", got, wantKeys)
	}

	t.Run("both dropped, both restored", func(t *testing.T) {
		coop.recreate(t)
		app.recreate(t)
		if _, stderr, err := runRunner(t, env, "restore", "--coop", "multi"); err != nil {
			t.Fatalf("restore: %v\n%s", err, stderr)
		}
		equalMaps(t, "coop rows", coop.rowHashes(t), wantCoop)
		equalMaps(t, "app rows", app.forumHashes(t), wantApp)
	})

	t.Run("one named database restored, the other untouched", func(t *testing.T) {
		coop.exec(t, "DELETE FROM billing.invoices WHERE id < 20")
		app.exec(t, "DELETE FROM votes WHERE up")
		liveCoop := coop.rowHashes(t)
		differ(t, "the coop's database", liveCoop, wantCoop)
		differ(t, "the app's database", app.forumHashes(t), wantApp)
		if _, stderr, err := runRunner(t, env, "restore", "--coop", "multi", "--db-name", "coop_multi_forum"); err != nil {
			t.Fatalf("restore: %v\n%s", err, stderr)
		}
		equalMaps(t, "app rows", app.forumHashes(t), wantApp)
		equalMaps(t, "coop rows", coop.rowHashes(t), liveCoop)
	})

	t.Run("a damaged second dump refuses the whole restore", func(t *testing.T) {
		app.exec(t, "UPDATE forum.posts SET title = 'edited' WHERE id < 10")
		liveCoop, liveApp := coop.rowHashes(t), app.forumHashes(t)
		differ(t, "the coop's database", liveCoop, wantCoop)
		differ(t, "the app's database", liveApp, wantApp)
		object := "databases/coop_multi_forum.dump.zst"
		defer corrupt(t, prefix+object, func(b []byte) []byte { b[len(b)/2] ^= 0x04; return b })()
		_, stderr, err := runRunner(t, env, "restore", "--coop", "multi")
		wantErrorContaining(t, err, stderr, fmt.Sprintf("backup %s is corrupt or incomplete: %s: sha256 mismatch", m.ID, object))
		equalMaps(t, "coop rows", coop.rowHashes(t), liveCoop)
		equalMaps(t, "app rows", app.forumHashes(t), liveApp)
	})

	t.Run("restored into a clone coop's databases", func(t *testing.T) {
		liveCoop, liveApp := coop.rowHashes(t), app.forumHashes(t)
		cloneCoop, cloneApp := coop.sibling(t, "coop_clone"), coop.sibling(t, "coop_clone_forum")
		if _, stderr, err := runRunner(t, env, "restore", "--coop", "multi",
			"--db-map", "coop_multi=coop_clone", "--db-map", "coop_multi_forum=coop_clone_forum"); err != nil {
			t.Fatalf("restore: %v\n%s", err, stderr)
		}
		equalMaps(t, "clone coop rows", cloneCoop.rowHashes(t), wantCoop)
		equalMaps(t, "clone app rows", cloneApp.forumHashes(t), wantApp)
		equalMaps(t, "coop rows", coop.rowHashes(t), liveCoop)
		equalMaps(t, "app rows", app.forumHashes(t), liveApp)
	})

	t.Run("a selection that does not fit the backup is refused naming its flag", func(t *testing.T) {
		liveCoop, liveApp := coop.rowHashes(t), app.forumHashes(t)
		for _, tc := range []struct {
			args []string
			says []string
		}{
			{[]string{"restore", "--db-name", "coop_other"}, []string{`--db-name: database to restore "coop_other" is not in backup`, "holds coop_multi, coop_multi_forum"}},
			{[]string{"restore", "--db-map", "coop_multi=coop_multi_forum"}, []string{"--db-map: ", "coop_multi and coop_multi_forum would both be restored into coop_multi_forum"}},
			{[]string{"restore", "--db-name", "coop_multi", "--db-map", "coop_multi_forum=x"}, []string{"--db-map: ", "it is not among the databases restored, coop_multi"}},
			{[]string{"restore", "--db-map", "coop_other=x"}, []string{"--db-map: ", "backup " + m.ID + " holds no such database"}},
			{[]string{"restore", "--db-map", "coop_multi"}, []string{`--db-map "coop_multi" must be name-in-backup=target`}},
			{[]string{"verify", "--scratch-db", "coop_multi"}, []string{`--scratch-db: scratch database "coop_multi" is a database of backup`}},
		} {
			_, stderr, err := runRunner(t, env, append(tc.args, "--coop", "multi")...)
			wantErrorContaining(t, err, stderr, tc.says...)
		}
		equalMaps(t, "coop rows", coop.rowHashes(t), liveCoop)
		equalMaps(t, "app rows", app.forumHashes(t), liveApp)
	})

	t.Run("drill", func(t *testing.T) {
		coop.sibling(t, "coop_multi_scratch")
		stdout, stderr, err := runRunner(t, env, "verify", "--coop", "multi", "--scratch-db", "coop_multi_scratch")
		if err != nil {
			t.Fatalf("drill of a good backup: %v\n%s", err, stderr)
		}
		if !strings.Contains(stderr, "2 databases, 4 tables have the recorded row counts") || !strings.Contains(stdout, m.ID) {
			t.Errorf("the drill says:\n%s", stderr)
		}

		// The manifest's checksum is not checked: change a count in place.
		defer corrupt(t, prefix+backup.ManifestName, func(data []byte) []byte {
			var tampered backup.Manifest
			if err := json.Unmarshal(data, &tampered); err != nil {
				t.Fatal(err)
			}
			for _, o := range tampered.Objects {
				if o.Database == "coop_multi_forum" {
					o.Tables["forum.posts"]++
				}
			}
			out, err := json.Marshal(&tampered)
			if err != nil {
				t.Fatal(err)
			}
			return out
		})()
		_, stderr, err = runRunner(t, env, "verify", "--coop", "multi", "--scratch-db", "coop_multi_scratch")
		wantErrorContaining(t, err, stderr, fmt.Sprintf("drill of backup %s failed: database coop_multi_forum: table forum.posts has 300 rows, the manifest says 301", m.ID))
		if strings.Contains(stderr, "database coop_multi:") {
			t.Errorf("the coop's database, whose counts are right, is reported:\n%s", stderr)
		}
	})
}

func TestFormatOneBackupStillRestores(t *testing.T) {
	ctx := context.Background()
	db := newCoopDB(t, "legacy")
	db.fill(t, 500)
	want := db.rowHashes(t)
	c := client(t, s3)
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	m, err := c.Backup(ctx, backup.Options{Coop: "legacy", Databases: []backup.Database{db.database()}, Time: at})
	if err != nil {
		t.Fatal(err)
	}
	dump, _ := m.DatabaseObject("legacy")

	// What a format 1 runner stored: database.dump.zst, and the database's
	// name and row counts at the top of the manifest.
	raw := rawClient(t, s3)
	put := func(id, name string, data []byte) {
		t.Helper()
		if _, err := raw.PutObject(ctx, bucket, "cooperator/legacy/"+id+"/"+name, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	v1 := backup.NewID(at.Add(time.Hour))
	if _, err := raw.CopyObject(ctx,
		minio.CopyDestOptions{Bucket: bucket, Object: "cooperator/legacy/" + v1 + "/database.dump.zst"},
		minio.CopySrcOptions{Bucket: bucket, Object: "cooperator/legacy/" + m.ID + "/" + dump.Name}); err != nil {
		t.Fatal(err)
	}
	manifest, _ := json.Marshal(map[string]any{
		"formatVersion": 1, "coop": "legacy", "id": v1, "time": at.Add(time.Hour), "database": "legacy",
		"objects": []map[string]any{{"name": "database.dump.zst", "kind": "database", "size": dump.Size, "sha256": dump.SHA256, "rawSize": dump.RawSize}},
		"tables":  dump.Tables, "encrypted": false, "compression": "zstd",
	})
	put(v1, backup.ManifestName, manifest)

	db.exec(t, "DELETE FROM billing.invoices; DELETE FROM items WHERE id > 100")
	differ(t, "the database", db.rowHashes(t), want)
	if _, stderr, err := runRunner(t, storeEnv(s3, db), "restore", "--coop", "legacy", "--id", v1); err != nil {
		t.Fatalf("restore of a format 1 backup: %v\n%s", err, stderr)
	}
	equalMaps(t, "rows", db.rowHashes(t), want)

	// A format this runner does not know is refused, naming it.
	v3 := backup.NewID(at.Add(2 * time.Hour))
	v3manifest := bytes.Replace(manifest, []byte(`"formatVersion":1`), []byte(`"formatVersion":3`), 1)
	put(v3, backup.ManifestName, bytes.ReplaceAll(v3manifest, []byte(v1), []byte(v3)))
	_, stderr, err := runRunner(t, storeEnv(s3, db), "restore", "--coop", "legacy", "--id", v3)
	wantErrorContaining(t, err, stderr, "backup "+v3+" cannot be read: its manifest has format version 3", "a newer runner wrote it")
}

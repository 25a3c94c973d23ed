package backup_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"

	"cooperator.dev/cooperator/internal/backup"
	"cooperator.dev/cooperator/internal/testenv"
)

// The real services every test uses, started once.
var (
	pg     *testenv.Postgres
	s3     *testenv.S3
	runner string // the cooperator binary
)

const bucket = "backups"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	binDir, err := os.MkdirTemp("", "cooperator-backup-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(binDir) }()
	runner = filepath.Join(binDir, "cooperator")
	if err := testenv.BuildOperator(ctx, runner); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if pg, err = testenv.StartPostgres(ctx, ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer pg.Remove()
	if s3, err = testenv.StartS3(ctx, ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s3.Remove()
	if err := s3.CreateBucket(ctx, bucket); err != nil {
		fmt.Fprintln(os.Stderr, "creating the bucket:", err)
		return 1
	}
	return m.Run()
}

// coopDB is a coop's database: a role that owns it, as on a shared server.
type coopDB struct {
	name, user, password string
}

func newCoopDB(t testing.TB, name string) coopDB {
	t.Helper()
	db := coopDB{name: name, user: name + "_owner", password: "pw-" + name}
	superExec(t, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", db.user, db.password))
	superExec(t, fmt.Sprintf("CREATE DATABASE %s OWNER %s", db.name, db.user))
	return db
}

// sibling is another database of the same role, as a coop's app gets.
func (db coopDB) sibling(t testing.TB, name string) coopDB {
	t.Helper()
	superExec(t, fmt.Sprintf("CREATE DATABASE %s OWNER %s", name, db.user))
	return coopDB{name: name, user: db.user, password: db.password}
}

// recreate drops the database and makes it again, empty.
func (db coopDB) recreate(t testing.TB) {
	t.Helper()
	superExec(t, "DROP DATABASE "+db.name+" WITH (FORCE)")
	superExec(t, fmt.Sprintf("CREATE DATABASE %s OWNER %s", db.name, db.user))
}

func superExec(t testing.TB, sql string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pg.Superuser(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (db coopDB) conn(t testing.TB) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), pg.URL(db.user, db.password, db.name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func (db coopDB) exec(t testing.TB, sql string) {
	t.Helper()
	if _, err := db.conn(t).Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (db coopDB) database() backup.Database {
	return backup.Database{Host: pg.Host, Port: pg.Port, Name: db.name, User: db.user, Password: db.password, SSLMode: "disable"}
}

// fill makes tables of every common kind of column, rows rows in the
// largest, and one in a second schema.
func (db coopDB) fill(t testing.TB, rows int) {
	t.Helper()
	db.exec(t, fmt.Sprintf(`
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), payload bytea, tags text[], doc jsonb, created timestamptz);
INSERT INTO items SELECT g, 'item ' || md5(g::text), g * 1.25, decode(md5(g::text) || md5((g*7)::text), 'hex'),
  ARRAY['a' || g %% 7, 'b'], jsonb_build_object('n', g, 'even', g %% 2 = 0), '2026-01-01'::timestamptz + g * interval '1 minute'
FROM generate_series(1, %d) g;
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (id bigserial PRIMARY KEY, item int REFERENCES items, total numeric);
INSERT INTO billing.invoices (item, total) SELECT g, g * 2 FROM generate_series(1, %d, 10) g;
CREATE VIEW cheap AS SELECT id FROM items WHERE price < 100;`, rows, rows))
}

// rowHashes is a hash of every row of every table fill makes, by table.
func (db coopDB) rowHashes(t testing.TB) map[string]string {
	t.Helper()
	return db.tableHashes(t, "items", "billing.invoices")
}

// tableHashes is a hash of every row of each table, by table; each must
// have an id column.
func (db coopDB) tableHashes(t testing.TB, tables ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	c := db.conn(t)
	out := map[string]string{}
	for _, table := range tables {
		var h *string
		if err := c.QueryRow(ctx, fmt.Sprintf("SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM %s t", table)).Scan(&h); err != nil {
			t.Fatalf("hashing %s: %v", table, err)
		}
		if h == nil {
			out[table] = "empty"
		} else {
			out[table] = *h
		}
	}
	return out
}

// makeFiles writes binary files, an empty one, nested directories and a
// symbolic link into dir.
func makeFiles(t testing.TB, dir string, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed+1))
	for _, d := range []string{"photos/2026", "docs", "empty-dir"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"photos/2026/a.jpg", "photos/2026/b.jpg", "docs/report.pdf", "db.sqlite"} {
		data := make([]byte, 200_000+i*333_333)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "docs/empty.txt"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("photos/2026/a.jpg", filepath.Join(dir, "latest.jpg")); err != nil {
		t.Fatal(err)
	}
}

// treeHashes describes every entry of a directory: content hashes of
// files, targets of links, modes.
func treeHashes(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case rel == ".":
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link " + target
		case info.IsDir():
			out[rel] = fmt.Sprintf("dir %v", info.Mode().Perm())
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			out[rel] = fmt.Sprintf("file %v %s %s", info.Mode().Perm(), hex.EncodeToString(sum[:]), info.ModTime().UTC().Format(time.RFC3339))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalMaps(t testing.TB, what string, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s is %q, want %q", what, k, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %s (%q) should not be there", what, k, g)
		}
	}
}

// storeEnv is the runner's environment for a store and a database.
func storeEnv(s *testenv.S3, db coopDB) []string {
	return []string{
		"S3_ENDPOINT=" + s.Endpoint, "S3_REGION=" + s.Region, "S3_BUCKET=" + bucket, "S3_PREFIX=cooperator",
		"S3_INSECURE=true", "S3_PATH_STYLE=true",
		"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"PGHOST=" + pg.Host, fmt.Sprintf("PGPORT=%d", pg.Port), "PGDATABASE=" + db.name, "PGUSER=" + db.user,
		"PGPASSWORD=" + db.password, "PGSSLMODE=disable",
	}
}

// runRunner runs the cooperator binary. It returns stdout, stderr and
// whether it succeeded.
func runRunner(t testing.TB, env []string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, runner, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// mustBackUp runs `cooperator backup` and returns its manifest.
func mustBackUp(t testing.TB, env []string, args ...string) *backup.Manifest {
	t.Helper()
	stdout, stderr, err := runRunner(t, env, append([]string{"backup"}, args...)...)
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, stderr)
	}
	var m backup.Manifest
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatalf("backup printed no manifest: %v\n%s", err, stdout)
	}
	return &m
}

func client(t testing.TB, s *testenv.S3) *backup.Client {
	t.Helper()
	c, err := backup.Open(backup.Store{
		Endpoint: s.Endpoint, Region: s.Region, Bucket: bucket, Prefix: "cooperator",
		AccessKey: s.AccessKey, SecretKey: s.SecretKey, PathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func rawClient(t testing.TB, s *testenv.S3) *minio.Client {
	t.Helper()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// objectKeys lists every key under a coop's prefix.
func objectKeys(t testing.TB, s *testenv.S3, coop string) []string {
	t.Helper()
	var keys []string
	for o := range rawClient(t, s).ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: "cooperator/" + coop + "/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

func wantErrorContaining(t testing.TB, err error, stderr string, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("the runner succeeded; want a failure saying %q", parts)
	}
	t.Logf("the runner failed as it should: %s", strings.TrimSpace(stderr))
	for _, p := range parts {
		if !strings.Contains(stderr, p) {
			t.Errorf("the error does not say %q:\n%s", p, stderr)
		}
	}
}

package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Database is a PostgreSQL connection.
type Database struct {
	Host     string
	Port     int
	Name     string
	User     string
	Password string
	// SSLMode is libpq's sslmode; empty means "prefer".
	SSLMode string
}

// Validate refuses a connection that cannot work, naming the field.
func (d Database) Validate(what string) error {
	if d.Name == "" {
		return fmt.Errorf("%s name is required", what)
	}
	return d.ValidateServer(what)
}

// ValidateServer is Validate without the database's name: for a server
// that several databases are restored into.
func (d Database) ValidateServer(what string) error {
	switch {
	case d.Host == "":
		return fmt.Errorf("%s host is required", what)
	case d.Port <= 0 || d.Port > 65535:
		return fmt.Errorf("%s port %d is not a TCP port", what, d.Port)
	case d.User == "":
		return fmt.Errorf("%s user is required", what)
	}
	switch d.SSLMode {
	case "", "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		return fmt.Errorf("%s sslmode %q is not one of libpq's", what, d.SSLMode)
	}
	return nil
}

// dumpName is what a dumped database's name may be: it names its object,
// and so a file of whoever downloads the backup.
var dumpName = regexp.MustCompile(`^[A-Za-z0-9_][-A-Za-z0-9_.$]{0,62}$`)

// withName is the same connection to another database on the server.
func (d Database) withName(name string) Database {
	d.Name = name
	return d
}

func (d Database) sslMode() string {
	if d.SSLMode == "" {
		return "prefer"
	}
	return d.SSLMode
}

// connString is a libpq keyword/value string without the password, which
// goes through PGPASSWORD so that it never shows in a process list or a log.
func (d Database) connString() string {
	q := func(v string) string {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	return fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=%s application_name=cooperator-backup",
		q(d.Host), d.Port, q(d.Name), q(d.User), d.sslMode())
}

func (d Database) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(d.connString())
	if err != nil {
		return nil, err
	}
	cfg.Password = d.Password
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("while connecting to database %s on %s:%d as %s: %w", d.Name, d.Host, d.Port, d.User, err)
	}
	return conn, nil
}

// env is the environment of pg_dump and pg_restore for this connection.
func (d Database) env() []string {
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		// Only this connection's settings apply.
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "PGPASSWORD="+d.Password)
}

// Tools are the PostgreSQL client programs.
type Tools struct {
	// PgDump and PgRestore are paths; empty means found in PATH.
	PgDump    string
	PgRestore string
}

func (t Tools) pgDump() string    { return orDefault(t.PgDump, "pg_dump") }
func (t Tools) pgRestore() string { return orDefault(t.PgRestore, "pg_restore") }

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// userTables lists every user table, not those of extensions, which
// pg_dump leaves to CREATE EXTENSION.
const userTables = `
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2`

// countRows counts every user table's rows in the transaction tx is in.
func countRows(ctx context.Context, tx pgx.Tx) (map[string]int64, error) {
	rows, err := tx.Query(ctx, userTables)
	if err != nil {
		return nil, fmt.Errorf("while listing tables: %w", err)
	}
	type table struct{ schema, name string }
	var tables []table
	for rows.Next() {
		var t table
		if err := rows.Scan(&t.schema, &t.name); err != nil {
			return nil, err
		}
		tables = append(tables, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("while listing tables: %w", err)
	}
	counts := make(map[string]int64, len(tables))
	for _, t := range tables {
		var n int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{t.schema, t.name}.Sanitize()).Scan(&n); err != nil {
			return nil, fmt.Errorf("while counting the rows of %s.%s: %w", t.schema, t.name, err)
		}
		counts[t.schema+"."+t.name] = n
	}
	return counts, nil
}

// stderrTail keeps the end of a program's error output for its error
// message, in bounded memory.
type stderrTail struct{ buf []byte }

func (s *stderrTail) Write(p []byte) (int, error) {
	const max = 4096
	s.buf = append(s.buf, p...)
	if len(s.buf) > max {
		s.buf = s.buf[len(s.buf)-max:]
	}
	return len(p), nil
}

func (s *stderrTail) String() string { return strings.TrimSpace(string(s.buf)) }

func commandError(name string, err error, stderr *stderrTail) error {
	var exit *exec.ExitError
	if errors.As(err, &exit) && stderr.String() != "" {
		return fmt.Errorf("%s failed (%s): %s", name, exit.ProcessState, stderr)
	}
	return fmt.Errorf("%s failed: %w", name, err)
}

// dump runs pg_dump on the snapshot into w. The archive is not compressed
// by pg_dump: zstd does that, faster.
func (t Tools) dump(ctx context.Context, db Database, snapshot string, w io.Writer) error {
	cmd := exec.CommandContext(ctx, t.pgDump(), "--format=custom", "--compress=0", "--no-password",
		"--snapshot="+snapshot, "--dbname="+db.connString())
	cmd.Env = db.env()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr stderrTail
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pg_dump: %w", err)
	}
	buf := make([]byte, 1<<20)
	_, copyErr := io.CopyBuffer(writerOnly{w}, stdout, buf)
	if copyErr != nil {
		// Stop pg_dump; its own error would only say the pipe broke.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return copyErr
	}
	if err := cmd.Wait(); err != nil {
		return commandError("pg_dump", err, &stderr)
	}
	return nil
}

// writerOnly hides a writer's ReadFrom, so that io.CopyBuffer uses the
// large buffer given to it.
type writerOnly struct{ io.Writer }

// restore runs pg_restore into db from r, in one transaction, so that a
// failure leaves the database as it was.
func (t Tools) restore(ctx context.Context, db Database, r io.Reader) error {
	cmd := exec.CommandContext(ctx, t.pgRestore(), "--single-transaction", "--clean", "--if-exists", "--no-owner",
		"--no-password", "--exit-on-error", "--dbname="+db.connString())
	cmd.Env = db.env()
	cmd.Stdin = r
	var stderr stderrTail
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return commandError("pg_restore", err, &stderr)
	}
	return nil
}

func (t Tools) version() string {
	out, err := exec.Command(t.pgDump(), "--version").Output()
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(out))
}

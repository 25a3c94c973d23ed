package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"

	"cooperator.dev/cooperator/internal/backup"
)

// listFlag is a flag given any number of times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func envBool(name string) bool {
	v, _ := strconv.ParseBool(os.Getenv(name))
	return v
}

// storeFlags are the flags of the backup store. The keys come only from
// the environment: flags show in process lists.
type storeFlags struct {
	endpoint, region, bucket, prefix *string
	insecure, pathStyle              *bool
}

func addStoreFlags(fs *flag.FlagSet) storeFlags {
	return storeFlags{
		endpoint:  fs.String("s3-endpoint", envOr("S3_ENDPOINT", ""), "S3 server host:port ($S3_ENDPOINT). Keys: $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY."),
		region:    fs.String("s3-region", envOr("S3_REGION", ""), "S3 region ($S3_REGION)."),
		bucket:    fs.String("s3-bucket", envOr("S3_BUCKET", ""), "S3 bucket ($S3_BUCKET)."),
		prefix:    fs.String("s3-prefix", envOr("S3_PREFIX", ""), "Key prefix: <prefix>/<coop>/<backup-id>/ ($S3_PREFIX)."),
		insecure:  fs.Bool("s3-insecure", envBool("S3_INSECURE"), "Plain HTTP instead of HTTPS ($S3_INSECURE)."),
		pathStyle: fs.Bool("s3-path-style", envBool("S3_PATH_STYLE"), "Bucket in the path, not the host name ($S3_PATH_STYLE)."),
	}
}

func (f storeFlags) open() (*backup.Client, error) {
	c, err := backup.Open(backup.Store{
		Endpoint:  *f.endpoint,
		Region:    *f.region,
		Bucket:    *f.bucket,
		Prefix:    *f.prefix,
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
		UseTLS:    !*f.insecure,
		PathStyle: *f.pathStyle,
	})
	if err != nil {
		return nil, flagHint(err)
	}
	return c, nil
}

// flagHint names the flag or variable behind a field in an error.
func flagHint(err error) error {
	msg := err.Error()
	for field, hint := range map[string]string{
		"store endpoint":   "--s3-endpoint",
		"store bucket":     "--s3-bucket",
		"store access key": "$AWS_ACCESS_KEY_ID",
		"store secret key": "$AWS_SECRET_ACCESS_KEY",
		"store prefix":     "--s3-prefix",
		"database host":    "--db-host",
		"database port":    "--db-port",
		"database name":    "--db-name",
		"database user":    "--db-user",
		"database sslmode": "--db-sslmode",
	} {
		if strings.HasPrefix(msg, field) {
			return fmt.Errorf("%s: %w", hint, err)
		}
	}
	return err
}

// dbFlags are the flags of a database connection; the password comes
// from $PGPASSWORD or a file.
type dbFlags struct {
	host, name, user, sslmode, passwordFile *string
	port                                    *int
}

func addDBFlags(fs *flag.FlagSet) dbFlags {
	port, _ := strconv.Atoi(envOr("PGPORT", "5432"))
	return dbFlags{
		host:         fs.String("db-host", envOr("PGHOST", ""), "PostgreSQL host ($PGHOST)."),
		port:         fs.Int("db-port", port, "PostgreSQL port ($PGPORT)."),
		name:         fs.String("db-name", envOr("PGDATABASE", ""), "Database name ($PGDATABASE)."),
		user:         fs.String("db-user", envOr("PGUSER", ""), "Database user ($PGUSER)."),
		sslmode:      fs.String("db-sslmode", envOr("PGSSLMODE", "prefer"), "libpq sslmode ($PGSSLMODE)."),
		passwordFile: fs.String("db-password-file", "", "File holding the database password; default: $PGPASSWORD."),
	}
}

func (f dbFlags) database() (backup.Database, error) {
	password := os.Getenv("PGPASSWORD")
	if *f.passwordFile != "" {
		data, err := os.ReadFile(*f.passwordFile)
		if err != nil {
			return backup.Database{}, fmt.Errorf("--db-password-file: %w", err)
		}
		password = strings.TrimRight(string(data), "\r\n")
	}
	db := backup.Database{Host: *f.host, Port: *f.port, Name: *f.name, User: *f.user, Password: password, SSLMode: *f.sslmode}
	if err := db.Validate("database"); err != nil {
		return db, flagHint(err)
	}
	return db, nil
}

// parseVolumes reads name=path, or a bare path named after its last
// element.
func parseVolumes(values []string) []backup.Volume {
	var out []backup.Volume
	for _, v := range values {
		name, path, ok := strings.Cut(v, "=")
		if !ok {
			name, path = filepath.Base(filepath.Clean(v)), v
		}
		out = append(out, backup.Volume{Name: name, Path: path})
	}
	return out
}

func parseApps(values []string) (map[string]string, error) {
	if len(values) == 0 {
		return nil, nil
	}
	apps := map[string]string{}
	for _, v := range values {
		name, version, ok := strings.Cut(v, "=")
		if !ok || name == "" || version == "" {
			return nil, fmt.Errorf("--app %q must be name=version", v)
		}
		apps[name] = version
	}
	return apps, nil
}

func readRecipients(path string) ([]age.Recipient, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--recipients-file: %w", err)
	}
	r, err := backup.ParseRecipients(string(data))
	if err != nil {
		return nil, fmt.Errorf("--recipients-file %s: %w", path, err)
	}
	if len(r) == 0 {
		return nil, fmt.Errorf("--recipients-file %s holds no recipient", path)
	}
	return r, nil
}

func readIdentities(path string) ([]age.Identity, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--identity-file: %w", err)
	}
	ids, err := backup.ParseIdentities(string(data))
	if err != nil {
		return nil, fmt.Errorf("--identity-file %s: %w", path, err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("--identity-file %s holds no identity", path)
	}
	return ids, nil
}

// limitMemory has the garbage collector keep the heap near what the
// upload buffers need, so that memory stays flat however large the
// backup; $GOMEMLIMIT overrides it.
func limitMemory(c *backup.Client) {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(int64(c.PartSize)*int64(c.Threads) + 16<<20)
	}
}

// signalContext ends on SIGINT or SIGTERM, so that an interrupted backup
// still removes what it uploaded.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func printManifest(w io.Writer, m *backup.Manifest) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(m)
}

func runBackup(args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	store := addStoreFlags(fs)
	dbf := addDBFlags(fs)
	var volumes, apps listFlag
	coop := fs.String("coop", envOr("COOP", ""), "The cooperative's name ($COOP).")
	fs.Var(&volumes, "volume", "A data directory to back up, name=path or path; repeatable.")
	fs.Var(&apps, "app", "An app version for the manifest, name=version; repeatable.")
	recipients := fs.String("recipients-file", envOr("AGE_RECIPIENTS_FILE", ""), "File of age recipients (age1...), one a line; encrypts the backup ($AGE_RECIPIENTS_FILE).")
	keepDaily := fs.Int("keep-daily", 0, "After the backup, keep the newest backup of each of this many days...")
	keepWeekly := fs.Int("keep-weekly", 0, "...of this many ISO weeks...")
	keepMonthly := fs.Int("keep-monthly", 0, "...and of this many months, and remove the others. All zero: remove nothing.")
	partMiB := fs.Int("part-size-mib", backup.DefaultPartSize>>20, "Upload part size in MiB (at least 5); memory grows with it.")
	threads := fs.Int("upload-threads", backup.DefaultThreads, "Parts uploaded at once; memory grows with it.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *partMiB < 5 {
		return fmt.Errorf("--part-size-mib %d is under S3's minimum of 5", *partMiB)
	}
	if *threads < 1 {
		return fmt.Errorf("--upload-threads %d must be at least 1", *threads)
	}
	policy := backup.Policy{KeepDaily: *keepDaily, KeepWeekly: *keepWeekly, KeepMonthly: *keepMonthly}
	if err := policy.Validate(); err != nil {
		return fmt.Errorf("--%w", err)
	}
	c, err := store.open()
	if err != nil {
		return err
	}
	c.PartSize, c.Threads = uint64(*partMiB)<<20, uint(*threads)
	limitMemory(c)
	db, err := dbf.database()
	if err != nil {
		return err
	}
	appVersions, err := parseApps(apps)
	if err != nil {
		return err
	}
	r, err := readRecipients(*recipients)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	start := time.Now()
	m, err := c.Backup(ctx, backup.Options{
		Coop: *coop, Database: db, Volumes: parseVolumes(volumes), Apps: appVersions, Recipients: r,
	})
	if err != nil {
		return err
	}
	var stored int64
	for _, o := range m.Objects {
		stored += o.Size
	}
	fmt.Fprintf(os.Stderr, "Backup %s of %s recorded: %d objects, %d bytes stored, in %s\n",
		m.ID, m.Coop, len(m.Objects)+1, stored, time.Since(start).Round(time.Millisecond))
	if !policy.IsZero() {
		removed, err := c.Prune(ctx, *coop, policy, time.Now())
		if err != nil {
			return fmt.Errorf("backup %s is recorded, but pruning failed: %w", m.ID, err)
		}
		if len(removed) > 0 {
			fmt.Fprintf(os.Stderr, "Pruned %d backups: %s\n", len(removed), strings.Join(removed, " "))
		}
	}
	return printManifest(os.Stdout, m)
}

func runRestore(args []string) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	store := addStoreFlags(fs)
	dbf := addDBFlags(fs)
	var volumes listFlag
	coop := fs.String("coop", envOr("COOP", ""), "The cooperative's name ($COOP).")
	id := fs.String("id", "", "The backup to restore; default: the latest.")
	withDB := fs.Bool("database", true, "Restore the database into --db-name; false leaves the database alone.")
	fs.Var(&volumes, "volume", "A live data directory to restore, name=path or path; repeatable.")
	identities := fs.String("identity-file", envOr("AGE_IDENTITY_FILE", ""), "File of age identities (AGE-SECRET-KEY-1...) for an encrypted backup ($AGE_IDENTITY_FILE).")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*withDB && len(volumes) == 0 {
		return errors.New("nothing to restore: --database=false and no --volume")
	}
	c, err := store.open()
	if err != nil {
		return err
	}
	opts := backup.RestoreOptions{Coop: *coop, ID: *id, Volumes: parseVolumes(volumes)}
	if *withDB {
		db, err := dbf.database()
		if err != nil {
			return err
		}
		opts.Database = &db
	}
	if opts.Identities, err = readIdentities(*identities); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	m, err := c.Restore(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "Backup %s of %s restored\n", m.ID, m.Coop)
	return printManifest(os.Stdout, m)
}

func runVerify(args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	store := addStoreFlags(fs)
	dbf := addDBFlags(fs)
	coop := fs.String("coop", envOr("COOP", ""), "The cooperative's name ($COOP).")
	id := fs.String("id", "", "The backup to verify; default: the latest.")
	scratch := fs.String("scratch-db", "", "A scratch database on the --db-* server: restore the backup into it and compare row counts with the manifest (a drill). Its contents are replaced.")
	identities := fs.String("identity-file", envOr("AGE_IDENTITY_FILE", ""), "File of age identities (AGE-SECRET-KEY-1...) for an encrypted backup ($AGE_IDENTITY_FILE); without, only checksums are checked.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := store.open()
	if err != nil {
		return err
	}
	ids, err := readIdentities(*identities)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	backupID := *id
	if backupID == "" {
		m, err := c.Latest(ctx, *coop)
		if err != nil {
			return err
		}
		backupID = m.ID
	}
	var m *backup.Manifest
	if *scratch != "" {
		*dbf.name = *scratch
		db, err := dbf.database()
		if err != nil {
			return err
		}
		if m, err = c.Drill(ctx, *coop, backupID, db, ids); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "Backup %s of %s is whole and restores: %d tables have the recorded row counts\n", m.ID, m.Coop, len(m.Tables))
	} else {
		if m, err = c.Verify(ctx, *coop, backupID, ids); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "Backup %s of %s is whole: %d objects match their checksums\n", m.ID, m.Coop, len(m.Objects))
	}
	return printManifest(os.Stdout, m)
}

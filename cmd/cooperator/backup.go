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
		"store endpoint":      "--s3-endpoint",
		"store bucket":        "--s3-bucket",
		"store access key":    "$AWS_ACCESS_KEY_ID",
		"store secret key":    "$AWS_SECRET_ACCESS_KEY",
		"store prefix":        "--s3-prefix",
		"database host":       "--db-host",
		"database port":       "--db-port",
		"database name":       "--db-name",
		"database user":       "--db-user",
		"database sslmode":    "--db-sslmode",
		"database to restore": "--db-name",
		"database rename":     "--db-map",
		"scratch database":    "--scratch-db",
	} {
		if strings.HasPrefix(msg, field) {
			return fmt.Errorf("%s: %w", hint, err)
		}
	}
	return err
}

// serverFlags are the flags of a PostgreSQL server and its user; every
// database of a coop is on one server, with one role. The password comes
// from $PGPASSWORD or a file.
type serverFlags struct {
	host, user, sslmode, passwordFile *string
	port                              *int
}

func addServerFlags(fs *flag.FlagSet) serverFlags {
	port, _ := strconv.Atoi(envOr("PGPORT", "5432"))
	return serverFlags{
		host:         fs.String("db-host", envOr("PGHOST", ""), "PostgreSQL host ($PGHOST)."),
		port:         fs.Int("db-port", port, "PostgreSQL port ($PGPORT)."),
		user:         fs.String("db-user", envOr("PGUSER", ""), "Database user ($PGUSER)."),
		sslmode:      fs.String("db-sslmode", envOr("PGSSLMODE", "prefer"), "libpq sslmode ($PGSSLMODE)."),
		passwordFile: fs.String("db-password-file", "", "File holding the database password; default: $PGPASSWORD."),
	}
}

// server is the connection without a database name.
func (f serverFlags) server() (backup.Database, error) {
	password := os.Getenv("PGPASSWORD")
	if *f.passwordFile != "" {
		data, err := os.ReadFile(*f.passwordFile)
		if err != nil {
			return backup.Database{}, fmt.Errorf("--db-password-file: %w", err)
		}
		password = strings.TrimRight(string(data), "\r\n")
	}
	db := backup.Database{Host: *f.host, Port: *f.port, User: *f.user, Password: password, SSLMode: *f.sslmode}
	if err := db.ValidateServer("database"); err != nil {
		return db, flagHint(err)
	}
	return db, nil
}

// parseDBMap reads --db-map old=new values.
func parseDBMap(values []string) (map[string]string, error) {
	if len(values) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, v := range values {
		from, to, ok := strings.Cut(v, "=")
		if !ok || from == "" || to == "" {
			return nil, fmt.Errorf("--db-map %q must be name-in-backup=target", v)
		}
		if _, dup := out[from]; dup {
			return nil, fmt.Errorf("--db-map maps %s twice", from)
		}
		out[from] = to
	}
	return out, nil
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

// setUsage heads a command's flags with what it does.
func setUsage(fs *flag.FlagSet, text string) {
	fs.Usage = func() {
		_, _ = fmt.Fprint(fs.Output(), text+"\nFlags:\n")
		fs.PrintDefaults()
	}
}

func runBackup(args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	setUsage(fs, `Usage: cooperator backup --coop NAME [--db-name DB]... [--volume NAME=PATH]... [flags]

Backs up every --db-name, each from a snapshot of its own, and every
--volume into one backup: databases/<db>.dump.zst, volumes/<name>.tar.zst,
then manifest.json. A coop's complete backup names its own database and
each of its apps' (coop_<name>, coop_<name>_<app>), all on one server and
reached as one user.
`)
	store := addStoreFlags(fs)
	srv := addServerFlags(fs)
	var dbNames, volumes, apps listFlag
	coop := fs.String("coop", envOr("COOP", ""), "The cooperative's name ($COOP).")
	fs.Var(&dbNames, "db-name", "A database to back up, each from its own snapshot; repeatable, all on the one --db-host, as --db-user ($PGDATABASE when not given).")
	fs.Var(&volumes, "volume", "A data directory to back up, name=path or path; repeatable.")
	fs.Var(&apps, "app", "An app version for the manifest, name=version; repeatable.")
	recipients := fs.String("recipients-file", envOr("AGE_RECIPIENTS_FILE", ""), "File of age recipients (age1...), one a line; encrypts the backup ($AGE_RECIPIENTS_FILE).")
	keepDaily := fs.Int("keep-daily", 0, "After the backup, keep the newest backup of each of this many days...")
	keepWeekly := fs.Int("keep-weekly", 0, "...of this many ISO weeks...")
	keepMonthly := fs.Int("keep-monthly", 0, "...and of this many months, and remove the others. All zero: remove nothing.")
	partMiB := fs.Int("part-size-mib", backup.DefaultPartSize>>20, "Upload part size in MiB (at least 5); memory grows with it.")
	threads := fs.Int("upload-threads", backup.DefaultThreads, "Parts uploaded at once; memory grows with it.")
	var remote listFlag
	fs.Var(&remote, "remote-volume", "A volume that a `cooperator send-volumes` streams to --listen, by name; repeatable. Senders present $VOLUME_TOKEN.")
	listen := fs.String("listen", ":8080", "Address that receives the --remote-volume streams.")
	remoteWait := fs.Duration("remote-wait", 30*time.Minute, "How long to wait for each --remote-volume.")
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
	server, err := srv.server()
	if err != nil {
		return err
	}
	if len(dbNames) == 0 && os.Getenv("PGDATABASE") != "" {
		dbNames = listFlag{os.Getenv("PGDATABASE")}
	}
	var dbs []backup.Database
	for _, name := range dbNames {
		d := server
		d.Name = name
		dbs = append(dbs, d)
	}
	appVersions, err := parseApps(apps)
	if err != nil {
		return err
	}
	r, err := readRecipients(*recipients)
	if err != nil {
		return err
	}
	var receiver *backup.Receiver
	if len(remote) > 0 {
		if receiver, err = backup.Listen(*listen, os.Getenv("VOLUME_TOKEN"), remote); err != nil {
			return fmt.Errorf("--remote-volume: %w", err)
		}
		defer func() { _ = receiver.Close() }()
		receiver.Wait = *remoteWait
	}
	ctx, stop := signalContext()
	defer stop()
	start := time.Now()
	m, err := c.Backup(ctx, backup.Options{
		Coop: *coop, Databases: dbs, Volumes: parseVolumes(volumes), Remote: receiver, Apps: appVersions, Recipients: r,
	})
	if err != nil {
		return flagHint(err)
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
	setUsage(fs, `Usage: cooperator restore --coop NAME [--id ID] [--db-name DB]... [--db-map OLD=NEW]... [--volume NAME=PATH]... [flags]

Checks every object of the backup against its sha256 first, and refuses
a damaged backup before anything is changed. Then restores each database
(every one of the backup, or each --db-name) in one transaction of its
own, into the database of its name or the one --db-map gives, and swaps
in each --volume.
`)
	store := addStoreFlags(fs)
	srv := addServerFlags(fs)
	var dbNames, dbMap, volumes listFlag
	coop := fs.String("coop", envOr("COOP", ""), "The cooperative's name ($COOP).")
	id := fs.String("id", "", "The backup to restore; default: the latest.")
	withDB := fs.Bool("database", true, "Restore databases; false leaves every database alone.")
	fs.Var(&dbNames, "db-name", "A database of the backup to restore; repeatable; default: every one ($PGDATABASE is not read).")
	fs.Var(&dbMap, "db-map", "Restore a database into another one on the server, name-in-backup=target, as for a clone coop; repeatable. The others go into the database of their own name.")
	fs.Var(&volumes, "volume", "A live data directory to restore, name=path or path; repeatable.")
	identities := fs.String("identity-file", envOr("AGE_IDENTITY_FILE", ""), "File of age identities (AGE-SECRET-KEY-1...) for an encrypted backup ($AGE_IDENTITY_FILE).")
	var remote listFlag
	fs.Var(&remote, "remote-volume", "A volume that a `cooperator receive-volumes` where it is mounted fetches from --listen, by name; repeatable. Receivers present $VOLUME_TOKEN.")
	listen := fs.String("listen", ":8080", "Address that serves the --remote-volume archives.")
	remoteWait := fs.Duration("remote-wait", 30*time.Minute, "How long to wait for each step of the volume receiver.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*withDB && len(volumes) == 0 && len(remote) == 0 {
		return errors.New("nothing to restore: --database=false and no --volume")
	}
	if !*withDB && (len(dbNames) > 0 || len(dbMap) > 0) {
		return errors.New("--database=false restores no database: --db-name and --db-map do not go with it")
	}
	rename, err := parseDBMap(dbMap)
	if err != nil {
		return err
	}
	c, err := store.open()
	if err != nil {
		return err
	}
	opts := backup.RestoreOptions{Coop: *coop, ID: *id, Databases: dbNames, Rename: rename, Volumes: parseVolumes(volumes)}
	if *withDB {
		server, err := srv.server()
		if err != nil {
			return err
		}
		opts.Server = &server
	}
	if opts.Identities, err = readIdentities(*identities); err != nil {
		return err
	}
	if len(remote) > 0 {
		if opts.Remote, err = backup.Serve(*listen, os.Getenv("VOLUME_TOKEN"), remote); err != nil {
			return fmt.Errorf("--remote-volume: %w", err)
		}
		defer func() { _ = opts.Remote.Close() }()
		opts.Remote.Wait = *remoteWait
	}
	ctx, stop := signalContext()
	defer stop()
	m, err := c.Restore(ctx, opts)
	if err != nil {
		return flagHint(err)
	}
	fmt.Fprintf(os.Stderr, "Backup %s of %s restored\n", m.ID, m.Coop)
	return printManifest(os.Stdout, m)
}

func runVerify(args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	setUsage(fs, `Usage: cooperator verify --coop NAME [--id ID] [--scratch-db DB] [flags]

Checks every object of the backup against its sha256 and, with an
identity or when it is not encrypted, reads each through. With
--scratch-db, a drill: restores each database of the backup in turn into
the scratch database and compares every table's row count with the
manifest, and records the drill, passed or failed, in the store:
<prefix>/<coop>/drills/<time>.json.
`)
	store := addStoreFlags(fs)
	srv := addServerFlags(fs)
	coop := fs.String("coop", envOr("COOP", ""), "The cooperative's name ($COOP).")
	id := fs.String("id", "", "The backup to verify; default: the latest.")
	scratch := fs.String("scratch-db", "", "A scratch database on the --db-* server, owned by --db-user: restore each database of the backup into it in turn and compare row counts with the manifest (a drill). Its contents are dropped.")
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
	var m *backup.Manifest
	if *scratch != "" {
		db, err := srv.server()
		if err != nil {
			return err
		}
		db.Name = *scratch
		// Passed or failed, the drill is recorded in the store.
		if m, err = c.RecordedDrill(ctx, *coop, *id, db, ids, time.Now()); err != nil {
			return flagHint(err)
		}
		tables := 0
		for _, o := range m.DatabaseObjects() {
			tables += len(o.Tables)
		}
		fmt.Fprintf(os.Stderr, "Backup %s of %s is whole and restores: %d databases, %d tables have the recorded row counts\n", m.ID, m.Coop, len(m.DatabaseObjects()), tables)
	} else {
		backupID := *id
		if backupID == "" {
			latest, err := c.Latest(ctx, *coop)
			if err != nil {
				return err
			}
			backupID = latest.ID
		}
		if m, err = c.Verify(ctx, *coop, backupID, ids); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "Backup %s of %s is whole: %d objects match their checksums\n", m.ID, m.Coop, len(m.Objects))
	}
	return printManifest(os.Stdout, m)
}

// terminationLog is where Kubernetes reads a container's termination
// message; $TERMINATION_MESSAGE_PATH names another file.
const terminationLog = "/dev/termination-log"

// writeTerminationMessage leaves the runner's error where the operator
// reads it from the pod's status. The default file is written only when the
// kubelet made it: outside a container, /dev is not the runner's to write.
func writeTerminationMessage(err error) {
	path, flags := terminationLog, os.O_WRONLY|os.O_TRUNC
	if p := os.Getenv("TERMINATION_MESSAGE_PATH"); p != "" {
		path, flags = p, flags|os.O_CREATE
	}
	f, ferr := os.OpenFile(path, flags, 0o644)
	if ferr != nil {
		return
	}
	// Kubernetes keeps at most 4096 bytes of it.
	msg := err.Error()
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	_, _ = f.WriteString(msg)
	_ = f.Close()
}

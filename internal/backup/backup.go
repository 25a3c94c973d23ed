package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
)

// Options say what Backup backs up.
type Options struct {
	Coop string
	// Databases are dumped each from its own snapshot into its own
	// object, named after it; at least one.
	Databases []Database
	Volumes   []Volume
	// Remote receives the volumes a sender streams from where they are
	// mounted; nil means none.
	Remote *Receiver
	// Apps are the app versions that wrote the data, for the manifest.
	Apps map[string]string
	// Recipients encrypt every object; none means not encrypted.
	Recipients []age.Recipient
	// Time names the backup; zero means now.
	Time time.Time
}

// Validate refuses options that cannot work, naming the field.
func (o Options) Validate() error {
	if err := validateCoop(o.Coop); err != nil {
		return err
	}
	if len(o.Databases) == 0 {
		return errors.New("database name is required")
	}
	dbs := map[string]bool{}
	for _, d := range o.Databases {
		if err := d.Validate("database"); err != nil {
			return err
		}
		if !dumpName.MatchString(d.Name) {
			return fmt.Errorf("database name %q must be at most 63 letters, digits and _-.$, not starting with - . or $, to name its object", d.Name)
		}
		if dbs[d.Name] {
			return fmt.Errorf("database name %q is given twice", d.Name)
		}
		dbs[d.Name] = true
	}
	seen := map[string]bool{}
	for _, v := range o.Volumes {
		if err := v.Validate(); err != nil {
			return err
		}
		if seen[v.Name] {
			return fmt.Errorf("volume name %q is given twice", v.Name)
		}
		seen[v.Name] = true
	}
	if o.Remote != nil {
		for name := range o.Remote.expected {
			if seen[name] {
				return fmt.Errorf("volume name %q is given both as a local and as a remote volume", name)
			}
		}
	}
	return nil
}

// Backup takes a backup: each database from a snapshot of its own, then
// each volume, then the manifest. On any failure what was uploaded is
// removed, and the error says the backup was not recorded.
func (c *Client) Backup(ctx context.Context, opts Options) (*Manifest, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	at := opts.Time
	if at.IsZero() {
		at = time.Now()
	}
	id := NewID(at)
	m, err := c.backup(ctx, id, at, opts)
	if err != nil {
		// The caller's context may be what failed: clean up on a fresh one.
		cleanCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if cerr := c.removeBackup(cleanCtx, opts.Coop, id); cerr != nil {
			err = fmt.Errorf("%w; and its partial objects were not all removed, a later prune removes them: %w", err, cerr)
		}
		return nil, fmt.Errorf("backup %s of %s failed and was not recorded: %w", id, opts.Coop, err)
	}
	return m, nil
}

func (c *Client) backup(ctx context.Context, id string, at time.Time, opts Options) (*Manifest, error) {
	// One id, one backup: never overwrite one, even a failed one.
	existing, err := c.listAll(ctx, opts.Coop)
	if err != nil {
		return nil, err
	}
	if _, ok := existing[id]; ok {
		return nil, fmt.Errorf("backup %s already exists; backups of one coop must be at least a second apart", id)
	}
	encrypted := len(opts.Recipients) > 0
	m := &Manifest{
		FormatVersion: FormatVersion,
		Coop:          opts.Coop,
		ID:            id,
		Time:          at.UTC().Truncate(time.Second),
		Apps:          opts.Apps,
		Encrypted:     encrypted,
		Compression:   "zstd",
		PgDump:        c.Tools.version(),
	}

	for _, d := range opts.Databases {
		obj, err := c.backupDatabase(ctx, id, opts, d, encrypted)
		if err != nil {
			return nil, err
		}
		m.Objects = append(m.Objects, obj)
	}

	for _, v := range opts.Volumes {
		name := volumeObject(v.Name, encrypted)
		obj, err := c.upload(ctx, c.key(opts.Coop, id, name), opts.Recipients, func(w io.Writer) error {
			return writeTar(v.Path, w)
		})
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		obj.Name, obj.Kind, obj.Volume = name, KindVolume, v.Name
		m.Objects = append(m.Objects, obj)
	}

	// Remote volumes in the order they arrive: a sender sends its volumes
	// one after another, and several senders may be waiting.
	if opts.Remote != nil {
		for left := len(opts.Remote.expected); left > 0; left-- {
			in, err := opts.Remote.next(ctx, left)
			if err != nil {
				return nil, err
			}
			name := volumeObject(in.name, encrypted)
			obj, err := c.upload(ctx, c.key(opts.Coop, id, name), opts.Recipients, func(w io.Writer) error {
				return copyTar(w, in.body)
			})
			in.done <- err
			if err != nil {
				return nil, fmt.Errorf("volume %s: %w", in.name, err)
			}
			obj.Name, obj.Kind, obj.Volume = name, KindVolume, in.name
			m.Objects = append(m.Objects, obj)
		}
	}

	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if _, err := c.s3.PutObject(ctx, c.store.Bucket, c.key(opts.Coop, id, ManifestName), bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/json"}); err != nil {
		return nil, fmt.Errorf("while writing the manifest: %w", err)
	}
	return m, nil
}

// backupDatabase dumps the database from a snapshot exported by a
// REPEATABLE READ transaction, in which the rows are counted too, so the
// manifest's counts are those of the dump.
func (c *Client) backupDatabase(ctx context.Context, id string, opts Options, db Database, encrypted bool) (Object, error) {
	conn, err := db.connect(ctx)
	if err != nil {
		return Object{}, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Object{}, fmt.Errorf("while starting the snapshot transaction: %w", err)
	}
	// Read only: nothing to undo, and the snapshot must stay open until
	// pg_dump has taken it.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var snapshot string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snapshot); err != nil {
		return Object{}, fmt.Errorf("while exporting a snapshot: %w", err)
	}

	// Count while pg_dump runs: both read the same snapshot.
	type counted struct {
		tables map[string]int64
		err    error
	}
	counts := make(chan counted, 1)
	countCtx, stopCounting := context.WithCancel(ctx)
	defer stopCounting()
	go func() {
		t, err := countRows(countCtx, tx)
		counts <- counted{t, err}
	}()

	name := databaseObject(db.Name, encrypted)
	obj, err := c.upload(ctx, c.key(opts.Coop, id, name), opts.Recipients, func(w io.Writer) error {
		return c.Tools.dump(ctx, db, snapshot, w)
	})
	if err != nil {
		stopCounting()
	}
	cnt := <-counts
	if err != nil {
		return Object{}, fmt.Errorf("database %s: %w", db.Name, err)
	}
	if cnt.err != nil {
		return Object{}, fmt.Errorf("database %s: %w", db.Name, cnt.err)
	}
	obj.Name, obj.Kind, obj.Database, obj.Tables = name, KindDatabase, db.Name, cnt.tables
	return obj, nil
}

package backup

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
)

// decryptError is of an object that is whole but that the given
// identities cannot open.
type decryptError struct{ err error }

func (e decryptError) Error() string { return e.err.Error() }
func (e decryptError) Unwrap() error { return e.err }

// Verify reads every object of a backup to its end and checks its size
// and sha256 against the manifest. With identities, or when the backup is
// not encrypted, it also decrypts and decompresses every object, and reads
// each volume's archive through. It changes nothing.
func (c *Client) Verify(ctx context.Context, coop, id string, identities []age.Identity) (*Manifest, error) {
	m, err := c.Manifest(ctx, coop, id)
	if err != nil {
		return nil, err
	}
	decode := !m.Encrypted || len(identities) > 0
	for _, o := range m.Objects {
		if err := c.verifyObject(ctx, m, o, identities, decode); err != nil {
			if errors.As(err, new(decryptError)) {
				return nil, fmt.Errorf("backup %s cannot be decrypted: %w", id, err)
			}
			return nil, fmt.Errorf("backup %s is corrupt or incomplete: %w", id, err)
		}
	}
	return m, nil
}

func (c *Client) verifyObject(ctx context.Context, m *Manifest, o Object, identities []age.Identity, decode bool) error {
	key := c.key(m.Coop, m.ID, o.Name)
	if _, err := c.s3.StatObject(ctx, c.store.Bucket, key, minio.StatObjectOptions{}); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("%s: missing", o.Name)
		}
		return fmt.Errorf("%s: %w", o.Name, err)
	}
	if !decode {
		obj, err := c.s3.GetObject(ctx, c.store.Bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return fmt.Errorf("%s: %w", o.Name, err)
		}
		defer func() { _ = obj.Close() }()
		hr := newHashReader(obj)
		if _, err := io.Copy(io.Discard, hr); err != nil {
			return fmt.Errorf("%s: %w", o.Name, err)
		}
		return hr.check(o)
	}
	content, done, closeFn, err := c.open(ctx, m.Coop, m.ID, o, identities)
	if err != nil {
		// A damaged header looks like a wrong key: the checksum tells.
		if herr := c.verifyObject(ctx, m, o, nil, false); herr != nil {
			return herr
		}
		return decryptError{err}
	}
	defer closeFn()
	readErr := readThrough(o, content)
	// A damaged object is reported as such, whatever broke first.
	if err := done(); err != nil {
		return err
	}
	if readErr != nil {
		return fmt.Errorf("%s: %w", o.Name, readErr)
	}
	return nil
}

// readThrough reads an object's content to its end, and checks that it
// is what it should be: a pg_dump custom archive, or a tar archive.
func readThrough(o Object, content io.Reader) error {
	switch o.Kind {
	case KindDatabase:
		br := bufio.NewReaderSize(content, 64<<10)
		magic, err := br.Peek(5)
		if err != nil {
			return err
		}
		if string(magic) != "PGDMP" {
			return errors.New("not a pg_dump custom archive")
		}
		_, err = io.Copy(io.Discard, br)
		return err
	case KindVolume:
		tr := tar.NewReader(content)
		for {
			_, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if _, err := io.Copy(io.Discard, tr); err != nil {
				return err
			}
		}
	default:
		_, err := io.Copy(io.Discard, content)
		return err
	}
}

// RestoreOptions say what to restore, and where.
type RestoreOptions struct {
	Coop string
	// ID is the backup's; empty means the latest.
	ID string
	// Server is the PostgreSQL server the databases are restored into;
	// its Name is not used. Nil leaves every database alone.
	Server *Database
	// Databases are the names, in the backup, of the databases to
	// restore; none means every one.
	Databases []string
	// Rename maps a database's name in the backup to the database it is
	// restored into, as for a clone coop; the others are restored into
	// the database of their own name.
	Rename map[string]string
	// Volumes are the live directories to restore, by volume name.
	Volumes []Volume
	// Remote hands volumes to a receiver where they are mounted; nil
	// means none.
	Remote *VolumeServer
	// Identities decrypt an encrypted backup.
	Identities []age.Identity
}

// restoreTarget is a database of a backup and the database it goes into.
type restoreTarget struct {
	object Object
	into   Database
}

func (t restoreTarget) String() string {
	if t.object.Database == t.into.Name {
		return t.object.Database
	}
	return t.object.Database + " into " + t.into.Name
}

// targets are the databases of the backup to restore, and where. Errors
// name the option they come from.
func (opts RestoreOptions) targets(m *Manifest) ([]restoreTarget, error) {
	if opts.Server == nil {
		return nil, nil
	}
	names := opts.Databases
	if len(names) == 0 {
		names = m.Databases()
	}
	var out []restoreTarget
	selected := map[string]bool{}
	from := map[string]string{} // by target
	for _, name := range names {
		o, ok := m.DatabaseObject(name)
		if !ok {
			return nil, fmt.Errorf("database to restore %q is not in backup %s, which holds %s", name, m.ID, strings.Join(m.Databases(), ", "))
		}
		if selected[name] {
			return nil, fmt.Errorf("database to restore %q is given twice", name)
		}
		selected[name] = true
		into := name
		if to, ok := opts.Rename[name]; ok {
			into = to
		}
		if other, ok := from[into]; ok {
			return nil, fmt.Errorf("database rename: %s and %s would both be restored into %s", other, name, into)
		}
		from[into] = name
		db := opts.Server.withName(into)
		if err := db.Validate("database rename of " + name + ":"); err != nil {
			return nil, err
		}
		out = append(out, restoreTarget{object: o, into: db})
	}
	renamed := make([]string, 0, len(opts.Rename))
	for name := range opts.Rename {
		renamed = append(renamed, name)
	}
	sort.Strings(renamed)
	for _, name := range renamed {
		if _, ok := m.DatabaseObject(name); !ok {
			return nil, fmt.Errorf("database rename of %s: backup %s holds no such database; it holds %s", name, m.ID, strings.Join(m.Databases(), ", "))
		}
		if !selected[name] {
			return nil, fmt.Errorf("database rename of %s: it is not among the databases restored, %s", name, strings.Join(names, ", "))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("backup %s holds no database", m.ID)
	}
	return out, nil
}

// Restore verifies a whole backup first, then restores each database in
// one transaction of its own and each volume by unpacking it next to the
// live files and swapping it in. A backup that fails verification is
// refused before anything is touched.
func (c *Client) Restore(ctx context.Context, opts RestoreOptions) (_ *Manifest, err error) {
	if opts.Remote != nil {
		// Unless told to swap them in, the receiver leaves every volume.
		defer func() {
			if err != nil {
				opts.Remote.decide(err)
			}
		}()
	}
	if err := validateCoop(opts.Coop); err != nil {
		return nil, err
	}
	if opts.Server != nil {
		if err := opts.Server.ValidateServer("target database"); err != nil {
			return nil, err
		}
	} else if len(opts.Databases) > 0 || len(opts.Rename) > 0 {
		return nil, errors.New("databases to restore are named, but no server to restore them into")
	}
	for _, v := range opts.Volumes {
		if err := v.Validate(); err != nil {
			return nil, err
		}
	}
	id := opts.ID
	if id == "" {
		m, err := c.Latest(ctx, opts.Coop)
		if err != nil {
			return nil, err
		}
		id = m.ID
	}
	m, err := c.Manifest(ctx, opts.Coop, id)
	if err != nil {
		return nil, err
	}
	targets, err := opts.targets(m)
	if err != nil {
		return nil, err
	}
	if m.Encrypted && len(opts.Identities) == 0 {
		return nil, fmt.Errorf("backup %s is encrypted: an age identity is needed to restore it", id)
	}
	for _, v := range opts.Volumes {
		if _, ok := m.VolumeObject(v.Name); !ok {
			return nil, fmt.Errorf("backup %s has no volume %q", id, v.Name)
		}
	}
	if opts.Remote != nil {
		for name := range opts.Remote.expected {
			if _, ok := m.VolumeObject(name); !ok {
				return nil, fmt.Errorf("backup %s has no volume %q", id, name)
			}
		}
	}
	if _, err := c.Verify(ctx, opts.Coop, id, opts.Identities); err != nil {
		return nil, err
	}
	// A database that cannot be reached fails the restore before any
	// other is changed.
	for _, t := range targets {
		if err := ping(ctx, t.into); err != nil {
			return nil, fmt.Errorf("restore of backup %s failed, nothing was changed: %w", id, err)
		}
	}

	// Unpack every volume beside its live files first, so that nothing
	// live changes until all of the backup has been read back.
	staged := make([]string, len(opts.Volumes))
	defer func() {
		for _, s := range staged {
			if s != "" {
				_ = os.RemoveAll(s)
			}
		}
	}()
	for i, v := range opts.Volumes {
		o, _ := m.VolumeObject(v.Name)
		staging := filepath.Join(v.Path, stagingPrefix+id)
		_ = os.RemoveAll(staging)
		if err := os.Mkdir(staging, 0o700); err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		staged[i] = staging
		if err := c.readObject(ctx, m, o, opts.Identities, func(r io.Reader) error { return extractTar(r, staging) }); err != nil {
			return nil, fmt.Errorf("restore of backup %s failed, nothing was changed: volume %s: %w", id, v.Name, err)
		}
	}
	if opts.Remote != nil {
		if err := opts.Remote.stage(ctx, id, func(name string, w io.Writer) error {
			o, _ := m.VolumeObject(name)
			return c.readObject(ctx, m, o, opts.Identities, func(r io.Reader) error {
				_, err := io.Copy(w, r)
				return err
			})
		}); err != nil {
			return nil, fmt.Errorf("restore of backup %s failed, nothing was changed: %w", id, err)
		}
	}
	var restored []string
	for _, t := range targets {
		if err := c.readObject(ctx, m, t.object, opts.Identities, func(r io.Reader) error {
			return c.Tools.restore(ctx, t.into, r)
		}); err != nil {
			if len(restored) == 0 {
				return nil, fmt.Errorf("restore of backup %s failed, nothing was changed: database %s: %w", id, t, err)
			}
			// Each database is its own transaction: those before are done.
			return nil, fmt.Errorf("restore of backup %s failed: database %s: %w; it was left as it was, as were the volumes and the databases after it, but these were restored already: %s",
				id, t, err, strings.Join(restored, ", "))
		}
		restored = append(restored, t.String())
	}
	if opts.Remote != nil {
		opts.Remote.decide(nil)
	}
	for i, v := range opts.Volumes {
		previous := filepath.Join(v.Path, previousPrefix+id)
		_ = os.RemoveAll(previous)
		if err := swapIn(v.Path, staged[i], previous); err != nil {
			return nil, fmt.Errorf("restore of backup %s: volume %s was left as it was: %w", id, v.Name, err)
		}
		if err := os.RemoveAll(previous); err != nil {
			return nil, fmt.Errorf("restore of backup %s: volume %s is restored, but its previous files remain in %s: %w", id, v.Name, previous, err)
		}
	}
	if opts.Remote != nil {
		if err := opts.Remote.swapped(ctx); err != nil {
			return nil, fmt.Errorf("restore of backup %s: the databases are restored, but %w", id, err)
		}
	}
	return m, nil
}

// readObject hands an object's content to use, then checks that the
// stored bytes were whole.
func (c *Client) readObject(ctx context.Context, m *Manifest, o Object, identities []age.Identity, use func(io.Reader) error) error {
	content, done, closeFn, err := c.open(ctx, m.Coop, m.ID, o, identities)
	if err != nil {
		return err
	}
	defer closeFn()
	useErr := use(content)
	if useErr == nil {
		// Anything after the end of the content must still be hashed.
		_, useErr = io.Copy(io.Discard, content)
	}
	if err := done(); err != nil {
		return err
	}
	return useErr
}

// Drill restores each database of a backup in turn into one scratch
// database, emptied first, and checks that every table has the row count
// the manifest recorded.
func (c *Client) Drill(ctx context.Context, coop, id string, scratch Database, identities []age.Identity) (*Manifest, error) {
	if err := scratch.Validate("scratch database"); err != nil {
		return nil, err
	}
	m, err := c.Manifest(ctx, coop, id)
	if err != nil {
		return nil, err
	}
	if _, ok := m.DatabaseObject(scratch.Name); ok {
		return nil, fmt.Errorf("scratch database %q is a database of backup %s: a drill would replace it", scratch.Name, id)
	}
	if m.Encrypted && len(identities) == 0 {
		return nil, fmt.Errorf("backup %s is encrypted: an age identity is needed to restore it", id)
	}
	if _, err := c.Verify(ctx, coop, id, identities); err != nil {
		return nil, err
	}
	var diff []string
	for _, o := range m.DatabaseObjects() {
		if err := emptyDatabase(ctx, scratch); err != nil {
			return nil, fmt.Errorf("drill of backup %s failed: %w", id, err)
		}
		if err := c.readObject(ctx, m, o, identities, func(r io.Reader) error {
			return c.Tools.restore(ctx, scratch, r)
		}); err != nil {
			return nil, fmt.Errorf("drill of backup %s failed: database %s does not restore: %w", id, o.Database, err)
		}
		got, err := countIn(ctx, scratch)
		if err != nil {
			return nil, fmt.Errorf("drill of backup %s failed: database %s: %w", id, o.Database, err)
		}
		for _, d := range compareCounts(o.Tables, got) {
			diff = append(diff, "database "+o.Database+": "+d)
		}
	}
	if len(diff) > 0 {
		return nil, fmt.Errorf("drill of backup %s failed: %s", m.ID, strings.Join(diff, "; "))
	}
	return m, nil
}

// ping connects to a database and leaves.
func ping(ctx context.Context, db Database) error {
	conn, err := db.connect(ctx)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// countIn counts every user table's rows of a database, at one instant.
func countIn(ctx context.Context, db Database) (map[string]int64, error) {
	conn, err := db.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	return countRows(ctx, tx)
}

// emptyDatabase drops every schema of a scratch database, and what is in
// them, and makes an empty public schema: what one database of a backup
// left must not meet the next.
func emptyDatabase(ctx context.Context, db Database) error {
	conn, err := db.connect(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT nspname FROM pg_namespace
WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_toast%' AND nspname NOT LIKE 'pg\_temp%'`)
		if err != nil {
			return err
		}
		schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, s := range schemas {
			if _, err := tx.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, "CREATE SCHEMA public")
		return err
	})
	if err != nil {
		return fmt.Errorf("while emptying scratch database %s (its owner must run the drill): %w", db.Name, err)
	}
	return nil
}

// compareCounts lists the tables whose restored row counts differ from
// the manifest's.
func compareCounts(want, got map[string]int64) []string {
	var diff []string
	for t, n := range want {
		g, ok := got[t]
		switch {
		case !ok:
			diff = append(diff, fmt.Sprintf("table %s is missing", t))
		case g != n:
			diff = append(diff, fmt.Sprintf("table %s has %d rows, the manifest says %d", t, g, n))
		}
	}
	for t := range got {
		if _, ok := want[t]; !ok {
			diff = append(diff, fmt.Sprintf("table %s is not in the manifest", t))
		}
	}
	sort.Strings(diff)
	return diff
}

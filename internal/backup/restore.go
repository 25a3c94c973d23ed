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
	// Database is the target; nil leaves databases alone.
	Database *Database
	// Volumes are the live directories to restore, by volume name.
	Volumes []Volume
	// Identities decrypt an encrypted backup.
	Identities []age.Identity
}

// Restore verifies a whole backup first, then restores the database in
// one transaction and each volume by unpacking it next to the live files
// and swapping it in. A backup that fails verification is refused before
// anything is touched.
func (c *Client) Restore(ctx context.Context, opts RestoreOptions) (*Manifest, error) {
	if err := validateCoop(opts.Coop); err != nil {
		return nil, err
	}
	if opts.Database != nil {
		if err := opts.Database.Validate("target database"); err != nil {
			return nil, err
		}
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
	if m.Encrypted && len(opts.Identities) == 0 {
		return nil, fmt.Errorf("backup %s is encrypted: an age identity is needed to restore it", id)
	}
	for _, v := range opts.Volumes {
		if _, ok := m.VolumeObject(v.Name); !ok {
			return nil, fmt.Errorf("backup %s has no volume %q", id, v.Name)
		}
	}
	if opts.Database != nil {
		if _, ok := m.DatabaseObject(); !ok {
			return nil, fmt.Errorf("backup %s has no database", id)
		}
	}
	if _, err := c.Verify(ctx, opts.Coop, id, opts.Identities); err != nil {
		return nil, err
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
	if opts.Database != nil {
		o, _ := m.DatabaseObject()
		if err := c.readObject(ctx, m, o, opts.Identities, func(r io.Reader) error {
			return c.Tools.restore(ctx, *opts.Database, r)
		}); err != nil {
			return nil, fmt.Errorf("restore of backup %s failed, nothing was changed: database %s: %w", id, opts.Database.Name, err)
		}
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

// Drill restores a backup's database into a scratch database and checks
// that every table has the row count the manifest recorded.
func (c *Client) Drill(ctx context.Context, coop, id string, scratch Database, identities []age.Identity) (*Manifest, error) {
	if err := scratch.Validate("scratch database"); err != nil {
		return nil, err
	}
	m, err := c.Restore(ctx, RestoreOptions{Coop: coop, ID: id, Database: &scratch, Identities: identities})
	if err != nil {
		return nil, err
	}
	conn, err := scratch.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	got, err := countRows(ctx, tx)
	if err != nil {
		return nil, err
	}
	if diff := compareCounts(m.Tables, got); len(diff) > 0 {
		return nil, fmt.Errorf("drill of backup %s failed: %s", m.ID, strings.Join(diff, "; "))
	}
	return m, nil
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

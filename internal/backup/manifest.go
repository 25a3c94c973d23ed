package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/minio/minio-go/v7"
)

// FormatVersion is the manifest format this runner writes. It reads
// format 1 too: one database, with its name and row counts at the top.
const FormatVersion = 2

// Manifest describes one backup. It is written last: a backup without one
// does not exist.
type Manifest struct {
	FormatVersion int       `json:"formatVersion"`
	Coop          string    `json:"coop"`
	ID            string    `json:"id"`
	Time          time.Time `json:"time"`
	// Objects are every stored object but the manifest: one per database,
	// then one per volume.
	Objects []Object `json:"objects"`
	// Apps are the app versions that wrote the data.
	Apps map[string]string `json:"apps,omitempty"`
	// Encrypted objects are age files inside: they need an identity.
	Encrypted bool `json:"encrypted"`
	// Compression of every object, inside the encryption.
	Compression string `json:"compression"`
	// PgDump is pg_dump's --version.
	PgDump string `json:"pgDump,omitempty"`
}

// Object kinds.
const (
	KindDatabase = "database"
	KindVolume   = "volume"
)

// Object is one stored object of a backup.
type Object struct {
	// Name is the key below the backup's prefix, e.g. volumes/uploads.tar.zst.
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Database is the dumped database's name, for database objects.
	Database string `json:"database,omitempty"`
	// Volume is the volume's name, for volume objects.
	Volume string `json:"volume,omitempty"`
	// Size and SHA256 are of the stored bytes.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// RawSize is the size before compression and encryption.
	RawSize int64 `json:"rawSize"`
	// Tables are, for database objects, the row counts of every user
	// table, "schema.table", as of the snapshot the dump was taken from;
	// absent when the database has none.
	Tables map[string]int64 `json:"tables,omitempty"`
}

// Object names.
const (
	databasesDir = "databases/"
	volumesDir   = "volumes/"
)

func objectName(base string, encrypted bool) string {
	if encrypted {
		return base + ".age"
	}
	return base
}

func databaseObject(name string, encrypted bool) string {
	return objectName(databasesDir+name+".dump.zst", encrypted)
}

func volumeObject(name string, encrypted bool) string {
	return objectName(volumesDir+name+".tar.zst", encrypted)
}

// DatabaseObjects are the manifest's database objects, in backup order.
func (m *Manifest) DatabaseObjects() []Object {
	var out []Object
	for _, o := range m.Objects {
		if o.Kind == KindDatabase {
			out = append(out, o)
		}
	}
	return out
}

// DatabaseObject is the object of the database of that name, if any.
func (m *Manifest) DatabaseObject(name string) (Object, bool) {
	for _, o := range m.Objects {
		if o.Kind == KindDatabase && o.Database == name {
			return o, true
		}
	}
	return Object{}, false
}

// Databases are the names of the backup's databases, in backup order.
func (m *Manifest) Databases() []string {
	var out []string
	for _, o := range m.DatabaseObjects() {
		out = append(out, o.Database)
	}
	return out
}

// VolumeObject is the manifest's object of a volume, if any.
func (m *Manifest) VolumeObject(name string) (Object, bool) {
	for _, o := range m.Objects {
		if o.Kind == KindVolume && o.Volume == name {
			return o, true
		}
	}
	return Object{}, false
}

// manifestV1 holds what format 1 kept at the top: its one database.
type manifestV1 struct {
	Database string           `json:"database"`
	Tables   map[string]int64 `json:"tables"`
}

// versionError is of a manifest in a format this runner does not read.
type versionError struct{ error }

func (e versionError) Unwrap() error { return e.error }

// parseManifest reads a manifest of either format into this runner's.
func parseManifest(data []byte, coop, id string) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	switch m.FormatVersion {
	case FormatVersion:
	case 1:
		var v1 manifestV1
		if err := json.Unmarshal(data, &v1); err != nil {
			return nil, err
		}
		if v1.Database == "" {
			return nil, errors.New("format 1 manifest names no database")
		}
		for i, o := range m.Objects {
			if o.Kind == KindDatabase {
				m.Objects[i].Database, m.Objects[i].Tables = v1.Database, v1.Tables
			}
		}
	default:
		err := fmt.Errorf("its manifest has format version %d, and this runner reads 1 and %d", m.FormatVersion, FormatVersion)
		if m.FormatVersion > FormatVersion {
			err = fmt.Errorf("%w: a newer runner wrote it; use that one", err)
		}
		return nil, versionError{err}
	}
	if err := m.check(coop, id); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Manifest) check(coop, id string) error {
	if m.Coop != coop || m.ID != id {
		return fmt.Errorf("manifest is of backup %s/%s, not %s/%s", m.Coop, m.ID, coop, id)
	}
	databases, volumes := map[string]bool{}, map[string]bool{}
	for _, o := range m.Objects {
		// Names come from the store; never let one climb out of its backup.
		if o.Name == "" || path.Clean(o.Name) != o.Name || path.IsAbs(o.Name) || o.Name[0] == '.' {
			return fmt.Errorf("manifest names an invalid object %q", o.Name)
		}
		switch o.Kind {
		case KindDatabase:
			if o.Database == "" || databases[o.Database] {
				return fmt.Errorf("manifest object %s names no database, or one named twice", o.Name)
			}
			databases[o.Database] = true
		case KindVolume:
			if o.Volume == "" || volumes[o.Volume] {
				return fmt.Errorf("manifest object %s names no volume, or one named twice", o.Name)
			}
			volumes[o.Volume] = true
		}
	}
	return nil
}

// Manifest reads a backup's manifest.
func (c *Client) Manifest(ctx context.Context, coop, id string) (*Manifest, error) {
	if err := validateCoop(coop); err != nil {
		return nil, err
	}
	if _, err := ParseID(id); err != nil {
		return nil, err
	}
	obj, err := c.s3.GetObject(ctx, c.store.Bucket, c.key(coop, id, ManifestName), minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("while reading the manifest of backup %s: %w", id, err)
	}
	defer func() { _ = obj.Close() }()
	data, err := io.ReadAll(io.LimitReader(obj, 16<<20))
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("backup %s of %s does not exist (no %s)", id, coop, ManifestName)
		}
		return nil, fmt.Errorf("while reading the manifest of backup %s: %w", id, err)
	}
	m, err := parseManifest(data, coop, id)
	if errors.As(err, new(versionError)) {
		return nil, fmt.Errorf("backup %s cannot be read: %w", id, err)
	}
	if err != nil {
		return nil, fmt.Errorf("backup %s is corrupt or incomplete: %s: %w", id, ManifestName, err)
	}
	return m, nil
}

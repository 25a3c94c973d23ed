package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/minio/minio-go/v7"
)

// FormatVersion is the manifest format this runner writes and reads.
const FormatVersion = 1

// Manifest describes one backup. It is written last: a backup without one
// does not exist.
type Manifest struct {
	FormatVersion int       `json:"formatVersion"`
	Coop          string    `json:"coop"`
	ID            string    `json:"id"`
	Time          time.Time `json:"time"`
	// Database is the name of the database that was dumped.
	Database string `json:"database"`
	// Objects are every stored object but the manifest.
	Objects []Object `json:"objects"`
	// Tables are the row counts of every user table, "schema.table", as
	// of the snapshot the dump was taken from.
	Tables map[string]int64 `json:"tables"`
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
	// Volume is the volume's name, for volume objects.
	Volume string `json:"volume,omitempty"`
	// Size and SHA256 are of the stored bytes.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// RawSize is the size before compression and encryption.
	RawSize int64 `json:"rawSize"`
}

// Object names.
const (
	databaseObject = "database.dump.zst"
	volumesDir     = "volumes/"
)

func objectName(base string, encrypted bool) string {
	if encrypted {
		return base + ".age"
	}
	return base
}

func volumeObject(name string, encrypted bool) string {
	return objectName(volumesDir+name+".tar.zst", encrypted)
}

// DatabaseObject is the manifest's database object, if any.
func (m *Manifest) DatabaseObject() (Object, bool) {
	for _, o := range m.Objects {
		if o.Kind == KindDatabase {
			return o, true
		}
	}
	return Object{}, false
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

func (m *Manifest) check(coop, id string) error {
	if m.FormatVersion != FormatVersion {
		return fmt.Errorf("manifest format version %d is not %d: a different runner version wrote it", m.FormatVersion, FormatVersion)
	}
	if m.Coop != coop || m.ID != id {
		return fmt.Errorf("manifest is of backup %s/%s, not %s/%s", m.Coop, m.ID, coop, id)
	}
	for _, o := range m.Objects {
		// Names come from the store; never let one climb out of its backup.
		if o.Name == "" || path.Clean(o.Name) != o.Name || path.IsAbs(o.Name) || o.Name[0] == '.' {
			return fmt.Errorf("manifest names an invalid object %q", o.Name)
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
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("backup %s is corrupt or incomplete: %s: %w", id, ManifestName, err)
	}
	if err := m.check(coop, id); err != nil {
		return nil, fmt.Errorf("backup %s is corrupt or incomplete: %s: %w", id, ManifestName, err)
	}
	return &m, nil
}

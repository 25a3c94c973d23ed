package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"
)

// DrillsDir holds a coop's drill records, beside its backups:
// <prefix>/<coop>/drills/<time>.json. It is no backup id, so listing and
// pruning backups pass it by.
const DrillsDir = "drills"

// KeepDrills is how many drill records of a coop are kept: a year of
// weekly drills. Older ones are removed when a drill is recorded.
const KeepDrills = 52

// drillKeyFormat names a drill record by the time it started, to the
// nanosecond: two drills in one second keep two records, and the names
// sort by time.
const drillKeyFormat = "20060102T150405.000000000Z"

// DrillRecord is what one drill found: which backup it restored and
// whether every table had the row count its manifest recorded.
type DrillRecord struct {
	// BackupID is the backup drilled; empty when the coop had none.
	BackupID string `json:"backupID,omitempty"`
	// Time the drill started.
	Time time.Time `json:"time"`
	OK   bool      `json:"ok"`
	// Message says what the drill found, or why it failed.
	Message string `json:"message"`
	// Databases and Tables are how many were restored and had their row
	// counts checked.
	Databases int `json:"databases"`
	Tables    int `json:"tables"`
	// ChecksumsOnly: the backup is encrypted to the coop's keys, which the
	// drill does not have, so it checked only that every object is whole.
	ChecksumsOnly bool `json:"checksumsOnly,omitempty"`
}

func (c *Client) drillPrefix(coop string) string {
	return c.coopPrefix(coop) + DrillsDir + "/"
}

// RecordedDrill runs a drill of a coop's backup id (the latest when id is
// empty) into scratch, as Drill does, then records what it found, passed
// or failed, in the store for the operator to read. It returns the
// drill's own error, or the recording's when the drill passed.
func (c *Client) RecordedDrill(ctx context.Context, coop, id string, scratch Database, identities []age.Identity, now time.Time) (*Manifest, error) {
	if err := validateCoop(coop); err != nil {
		return nil, err
	}
	record := DrillRecord{BackupID: id, Time: now.UTC()}
	m, err := c.drillLatest(ctx, coop, &record, scratch, identities)
	switch {
	case err != nil:
		record.Message = err.Error()
	case record.ChecksumsOnly:
		record.OK = true
		record.Message = fmt.Sprintf("backup %s is encrypted to the coop's keys: its %d objects match their checksums; only the coop's identity can restore it", m.ID, len(m.Objects))
	default:
		record.OK = true
		record.Databases = len(m.DatabaseObjects())
		for _, o := range m.DatabaseObjects() {
			record.Tables += len(o.Tables)
		}
		record.Message = fmt.Sprintf("backup %s restored: %d databases, %d tables have the recorded row counts", m.ID, record.Databases, record.Tables)
	}
	// A cancelled drill is still recorded.
	if werr := c.WriteDrill(context.WithoutCancel(ctx), coop, record); werr != nil {
		if err != nil {
			return nil, fmt.Errorf("%w (and the drill could not be recorded: %w)", err, werr)
		}
		return nil, fmt.Errorf("drill of backup %s passed, but could not be recorded: %w", m.ID, werr)
	}
	return m, err
}

func (c *Client) drillLatest(ctx context.Context, coop string, record *DrillRecord, scratch Database, identities []age.Identity) (*Manifest, error) {
	if record.BackupID == "" {
		m, err := c.Latest(ctx, coop)
		if err != nil {
			return nil, err
		}
		record.BackupID = m.ID
	}
	m, err := c.Manifest(ctx, coop, record.BackupID)
	if err != nil {
		return nil, err
	}
	if m.Encrypted && len(identities) == 0 {
		record.ChecksumsOnly = true
		return c.Verify(ctx, coop, record.BackupID, nil)
	}
	return c.Drill(ctx, coop, record.BackupID, scratch, identities)
}

// WriteDrill stores a drill record, then removes all but the newest
// KeepDrills records of the coop.
func (c *Client) WriteDrill(ctx context.Context, coop string, r DrillRecord) error {
	if err := validateCoop(coop); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	key := c.drillPrefix(coop) + r.Time.UTC().Format(drillKeyFormat) + ".json"
	if _, err := c.s3.PutObject(ctx, c.store.Bucket, key, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("while writing drill record %s: %w", key, err)
	}
	keys, err := c.drillKeys(ctx, coop)
	if err != nil {
		return err
	}
	for len(keys) > KeepDrills {
		if err := c.s3.RemoveObject(ctx, c.store.Bucket, keys[0], minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
			return fmt.Errorf("while removing old drill record %s: %w", keys[0], err)
		}
		keys = keys[1:]
	}
	return nil
}

// drillKeys are the keys of a coop's drill records, oldest first.
func (c *Client) drillKeys(ctx context.Context, coop string) ([]string, error) {
	prefix := c.drillPrefix(coop)
	var keys []string
	for obj := range c.s3.ListObjects(ctx, c.store.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("while listing drill records of %s in bucket %s: %w", coop, c.store.Bucket, obj.Err)
		}
		name, ok := strings.CutSuffix(strings.TrimPrefix(obj.Key, prefix), ".json")
		if !ok {
			continue
		}
		if _, err := time.Parse(drillKeyFormat, name); err != nil {
			continue
		}
		keys = append(keys, obj.Key)
	}
	sort.Strings(keys)
	return keys, nil
}

// LatestDrill is the coop's newest drill record, or nil when it has none.
func (c *Client) LatestDrill(ctx context.Context, coop string) (*DrillRecord, error) {
	if err := validateCoop(coop); err != nil {
		return nil, err
	}
	keys, err := c.drillKeys(ctx, coop)
	if err != nil || len(keys) == 0 {
		return nil, err
	}
	key := keys[len(keys)-1]
	obj, err := c.s3.GetObject(ctx, c.store.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("while reading drill record %s: %w", key, err)
	}
	defer func() { _ = obj.Close() }()
	data, err := io.ReadAll(io.LimitReader(obj, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("while reading drill record %s: %w", key, err)
	}
	var r DrillRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("drill record %s is not a drill record: %w", key, err)
	}
	return &r, nil
}

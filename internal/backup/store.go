// Package backup is the backup runner: it streams a coop's databases
// (pg_dump, each from its own snapshot) and volumes (tar) through zstd and
// optional age encryption into S3 multipart uploads, in constant memory and
// without temporary files, and writes a manifest last. It verifies backups
// by their checksums before it restores anything, restores in place, into
// other databases, or into a scratch database for a drill, and prunes old
// backups by a keep-daily/weekly/monthly policy.
package backup

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Store says where backups are kept: an S3 bucket.
type Store struct {
	// Endpoint is the S3 server's host:port, without a scheme.
	Endpoint string
	// Region of the bucket; empty lets the client ask the server.
	Region string
	Bucket string
	// Prefix is prepended to every key: <prefix>/<coop>/<backup-id>/...
	Prefix    string
	AccessKey string
	SecretKey string
	// UseTLS talks HTTPS to the endpoint.
	UseTLS bool
	// PathStyle addresses the bucket in the path instead of the host name,
	// as most self-hosted S3 servers need.
	PathStyle bool
}

// Validate refuses a Store that cannot work, naming the field.
func (s Store) Validate() error {
	switch {
	case s.Endpoint == "":
		return errors.New("store endpoint is required")
	case strings.Contains(s.Endpoint, "://"):
		return fmt.Errorf("store endpoint %q must be host:port without a scheme (use UseTLS for https)", s.Endpoint)
	case s.Bucket == "":
		return errors.New("store bucket is required")
	case s.AccessKey == "":
		return errors.New("store access key is required")
	case s.SecretKey == "":
		return errors.New("store secret key is required")
	case strings.Contains(s.Prefix, ".."):
		return fmt.Errorf("store prefix %q must not contain \"..\"", s.Prefix)
	}
	if _, err := url.Parse("http://" + s.Endpoint); err != nil {
		return fmt.Errorf("store endpoint %q: %w", s.Endpoint, err)
	}
	if err := s3utils.CheckValidBucketNameStrict(s.Bucket); err != nil {
		return fmt.Errorf("store bucket %q: %w", s.Bucket, err)
	}
	return nil
}

// Client reads and writes backups in one Store.
type Client struct {
	store Store
	s3    *minio.Client

	// PartSize is the size of each multipart upload part, and of each
	// buffer that holds one; memory is about PartSize*(Threads+1).
	PartSize uint64
	// Threads is how many parts are uploaded at once.
	Threads uint
	// Tools run pg_dump and pg_restore.
	Tools Tools
}

// Defaults chosen with the benchmark in docs/performance.md: S3 servers
// refuse parts under 5 MiB, and two parts in flight keep the network busy
// while the next part is compressed.
const (
	DefaultPartSize = 8 << 20
	DefaultThreads  = 2
)

// Open makes a Client for a Store.
func Open(s Store) (*Client, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	lookup := minio.BucketLookupAuto
	if s.PathStyle {
		lookup = minio.BucketLookupPath
	}
	mc, err := minio.New(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:       s.UseTLS,
		Region:       s.Region,
		BucketLookup: lookup,
		// A few retries ride out a blip; more would leave a dead store
		// unreported for minutes.
		MaxRetries: 5,
	})
	if err != nil {
		return nil, fmt.Errorf("store endpoint %q: %w", s.Endpoint, err)
	}
	s.Prefix = strings.Trim(s.Prefix, "/")
	return &Client{store: s, s3: mc, PartSize: DefaultPartSize, Threads: DefaultThreads}, nil
}

// IDFormat is the layout of backup ids: UTC time, so that ids sort by time.
const IDFormat = "20060102T150405Z"

// NewID is the id of a backup taken at t.
func NewID(t time.Time) string { return t.UTC().Format(IDFormat) }

// ParseID is the time of a backup id.
func ParseID(id string) (time.Time, error) {
	t, err := time.Parse(IDFormat, id)
	if err != nil {
		return time.Time{}, fmt.Errorf("backup id %q is not of the form %s", id, IDFormat)
	}
	return t, nil
}

var coopName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func validateCoop(coop string) error {
	if !coopName.MatchString(coop) {
		return fmt.Errorf("coop %q must be a DNS label: lower-case letters, digits and '-'", coop)
	}
	return nil
}

func (c *Client) coopPrefix(coop string) string {
	if c.store.Prefix == "" {
		return coop + "/"
	}
	return c.store.Prefix + "/" + coop + "/"
}

func (c *Client) key(coop, id, name string) string {
	return c.coopPrefix(coop) + id + "/" + name
}

// ManifestName is the object that makes a backup exist.
const ManifestName = "manifest.json"

// List is the ids of a coop's backups, oldest first. A backup without a
// manifest is not listed: it failed, or is being written or pruned.
func (c *Client) List(ctx context.Context, coop string) ([]string, error) {
	all, err := c.listAll(ctx, coop)
	if err != nil {
		return nil, err
	}
	var ids []string
	for id, hasManifest := range all {
		if hasManifest {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// listAll maps every backup id under a coop's prefix to whether it has a
// manifest.
func (c *Client) listAll(ctx context.Context, coop string) (map[string]bool, error) {
	if err := validateCoop(coop); err != nil {
		return nil, err
	}
	prefix := c.coopPrefix(coop)
	all := map[string]bool{}
	for obj := range c.s3.ListObjects(ctx, c.store.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("while listing backups of %s in bucket %s: %w", coop, c.store.Bucket, obj.Err)
		}
		id, name, ok := strings.Cut(strings.TrimPrefix(obj.Key, prefix), "/")
		if !ok {
			continue
		}
		if _, err := ParseID(id); err != nil {
			continue
		}
		all[id] = all[id] || name == ManifestName
	}
	return all, nil
}

// Latest is the newest backup's manifest, or an error when there is none.
func (c *Client) Latest(ctx context.Context, coop string) (*Manifest, error) {
	ids, err := c.List(ctx, coop)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("coop %s has no backups in bucket %s", coop, c.store.Bucket)
	}
	return c.Manifest(ctx, coop, ids[len(ids)-1])
}

// removeBackup deletes a backup's objects, the manifest first, so that a
// backup half removed no longer counts as one.
func (c *Client) removeBackup(ctx context.Context, coop, id string) error {
	if err := c.s3.RemoveObject(ctx, c.store.Bucket, c.key(coop, id, ManifestName), minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("while removing the manifest of backup %s: %w", id, err)
	}
	prefix := c.key(coop, id, "")
	var errs []error
	for obj := range c.s3.ListObjects(ctx, c.store.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			errs = append(errs, obj.Err)
			break
		}
		if err := c.s3.RemoveObject(ctx, c.store.Bucket, obj.Key, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("%s: %w", obj.Key, err))
		}
	}
	for up := range c.s3.ListIncompleteUploads(ctx, c.store.Bucket, prefix, true) {
		if up.Err != nil {
			break
		}
		_ = c.s3.RemoveIncompleteUpload(ctx, c.store.Bucket, up.Key)
	}
	if len(errs) > 0 {
		return fmt.Errorf("while removing backup %s: %w", id, errors.Join(errs...))
	}
	return nil
}

func isNotFound(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == minio.NoSuchKey || code == "NotFound"
}

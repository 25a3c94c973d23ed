package backup

import (
	"context"
	"errors"
	"fmt"
)

// ErrBucketNotFound says the store answers but has no such bucket.
var ErrBucketNotFound = errors.New("bucket not found")

// Check asks the store whether its bucket exists, with its keys.
func (c *Client) Check(ctx context.Context) error {
	ok, err := c.s3.BucketExists(ctx, c.store.Bucket)
	if err != nil {
		return fmt.Errorf("store %s: %w", c.store.Endpoint, err)
	}
	if !ok {
		return fmt.Errorf("store %s: %w: %s", c.store.Endpoint, ErrBucketNotFound, c.store.Bucket)
	}
	return nil
}

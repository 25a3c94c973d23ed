package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"
)

// ParseRecipients reads age X25519 recipients ("age1..."), one a line;
// blank lines and lines starting with # are skipped.
func ParseRecipients(text string) ([]age.Recipient, error) {
	var out []age.Recipient
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r, err := age.ParseX25519Recipient(line)
		if err != nil {
			return nil, fmt.Errorf("recipient on line %d: %w", i+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// ParseIdentities reads age X25519 identities ("AGE-SECRET-KEY-1..."), one
// a line; blank lines and lines starting with # are skipped.
func ParseIdentities(text string) ([]age.Identity, error) {
	var out []age.Identity
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, err := age.ParseX25519Identity(line)
		if err != nil {
			// The line is a secret: never repeat it.
			return nil, fmt.Errorf("identity on line %d is not an age X25519 identity", i+1)
		}
		out = append(out, id)
	}
	return out, nil
}

// counter counts the bytes written through it.
type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// encoderOptions trade ratio for speed: a backup must not take longer
// than the dump it wraps, and a small window keeps memory flat.
func encoderOptions() []zstd.EOption {
	return []zstd.EOption{
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1 << 20),
		zstd.WithLowerEncoderMem(true),
	}
}

// upload streams what produce writes through zstd and, with recipients,
// age into one object, and returns its size and sha256 as stored.
func (c *Client) upload(ctx context.Context, key string, recipients []age.Recipient, produce func(w io.Writer) error) (stored Object, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	sum := sha256.New()
	var size, raw counter
	out := io.MultiWriter(pw, sum, &size)

	produced := make(chan error, 1)
	go func() {
		err := func() error {
			sink := out
			var enc io.WriteCloser
			if len(recipients) > 0 {
				e, err := age.Encrypt(out, recipients...)
				if err != nil {
					return fmt.Errorf("while starting encryption: %w", err)
				}
				enc, sink = e, e
			}
			zw, err := zstd.NewWriter(sink, encoderOptions()...)
			if err != nil {
				return err
			}
			if err := produce(io.MultiWriter(zw, &raw)); err != nil {
				_ = zw.Close()
				return err
			}
			if err := zw.Close(); err != nil {
				return err
			}
			if enc != nil {
				return enc.Close()
			}
			return nil
		}()
		// A nil error closes the pipe with EOF: the upload completes.
		_ = pw.CloseWithError(err)
		produced <- err
	}()

	_, putErr := c.s3.PutObject(ctx, c.store.Bucket, key, pr, -1, minio.PutObjectOptions{
		ContentType:           "application/octet-stream",
		PartSize:              c.PartSize,
		NumThreads:            c.Threads,
		ConcurrentStreamParts: c.Threads > 1,
	})
	// Unblock the producer if the upload stopped reading.
	_ = pr.CloseWithError(errUploadStopped)
	if putErr != nil {
		cancel()
	}
	prodErr := <-produced
	switch {
	case prodErr != nil && !errors.Is(prodErr, errUploadStopped):
		return Object{}, prodErr
	case putErr != nil:
		return Object{}, fmt.Errorf("while uploading %s: %w", key, putErr)
	case prodErr != nil:
		return Object{}, prodErr
	}
	return Object{Size: size.n, SHA256: hex.EncodeToString(sum.Sum(nil)), RawSize: raw.n}, nil
}

var errUploadStopped = errors.New("the upload stopped")

// hashReader hashes and counts what is read through it.
type hashReader struct {
	r    io.Reader
	sum  hash.Hash
	size int64
}

func newHashReader(r io.Reader) *hashReader { return &hashReader{r: r, sum: sha256.New()} }

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.sum.Write(p[:n])
	h.size += int64(n)
	return n, err
}

func (h *hashReader) check(o Object) error {
	if h.size != o.Size {
		return fmt.Errorf("%s: %d bytes stored, the manifest says %d", o.Name, h.size, o.Size)
	}
	if got := hex.EncodeToString(h.sum.Sum(nil)); got != o.SHA256 {
		return fmt.Errorf("%s: sha256 mismatch", o.Name)
	}
	return nil
}

// open reads one object of a backup as its plain content: the stored bytes
// are hashed on the way, decrypted and decompressed. After the content is
// read to its end, done says whether the stored bytes were what the
// manifest says.
func (c *Client) open(ctx context.Context, coop, id string, o Object, identities []age.Identity) (content io.Reader, done func() error, closeFn func(), err error) {
	obj, err := c.s3.GetObject(ctx, c.store.Bucket, c.key(coop, id, o.Name), minio.GetObjectOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	hr := newHashReader(obj)
	var plain io.Reader = hr
	if strings.HasSuffix(o.Name, ".age") {
		if len(identities) == 0 {
			_ = obj.Close()
			return nil, nil, nil, fmt.Errorf("%s is encrypted: an age identity is needed", o.Name)
		}
		d, err := age.Decrypt(hr, identities...)
		if err != nil {
			_ = obj.Close()
			if isNotFound(err) {
				return nil, nil, nil, fmt.Errorf("%s: missing", o.Name)
			}
			var noMatch *age.NoIdentityMatchError
			if errors.As(err, &noMatch) {
				return nil, nil, nil, fmt.Errorf("%s: none of the given identities can decrypt it", o.Name)
			}
			return nil, nil, nil, fmt.Errorf("%s: %w", o.Name, err)
		}
		plain = d
	}
	zr, err := zstd.NewReader(plain, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		_ = obj.Close()
		return nil, nil, nil, err
	}
	done = func() error {
		// Hash whatever follows the compressed stream too.
		if _, err := io.Copy(io.Discard, hr); err != nil {
			return fmt.Errorf("%s: %w", o.Name, err)
		}
		return hr.check(o)
	}
	closeFn = func() { zr.Close(); _ = obj.Close() }
	return zr, done, closeFn, nil
}

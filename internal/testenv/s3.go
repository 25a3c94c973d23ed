package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 is a real S3 server: versitygw, built into bin/ by `make
// versitygw`, serving a folder of a temp dir through its posix backend
// on a free loopback port.
type S3 struct {
	// Dir holds the served folder and the server's log.
	Dir string
	// Endpoint is host:port, plain HTTP.
	Endpoint  string
	Region    string
	AccessKey string
	SecretKey string

	args []string
	bin  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartS3 starts versitygw. binDir holds it; empty means the repo's bin/.
func StartS3(ctx context.Context, binDir string) (*S3, error) {
	if binDir == "" {
		root, err := RepoRoot()
		if err != nil {
			return nil, err
		}
		binDir = filepath.Join(root, "bin")
	}
	dir, err := os.MkdirTemp("", "cooperator-s3-")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	secret, err := randomToken()
	if err != nil {
		return nil, err
	}
	s := &S3{
		Dir:       dir,
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", port),
		Region:    "us-east-1",
		AccessKey: "cooperator",
		SecretKey: secret,
	}
	s.bin = filepath.Join(binDir, "versitygw")
	if _, err := os.Stat(s.bin); err != nil {
		return nil, fmt.Errorf("versitygw is missing at %s (run make versitygw): %w", s.bin, err)
	}
	s.args = []string{
		"--port", s.Endpoint,
		"--region", s.Region,
		"--health", "/health",
		"--quiet",
		// Metadata in a sidecar folder: the temp dir's filesystem may
		// not support user xattrs, the posix backend's default.
		"posix", "--sidecar", filepath.Join(dir, "meta"), data,
	}
	if err := os.Mkdir(filepath.Join(dir, "meta"), 0o755); err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		s.Remove()
		return nil, err
	}
	return s, nil
}

// Start starts the server (again, after Stop) on the same port and folder.
func (s *S3) Start(ctx context.Context) error {
	logFile, err := os.OpenFile(filepath.Join(s.Dir, "versitygw.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args...)
	// The keys go through the environment, not the command line, where
	// any local user could read them.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("starting versitygw: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://" + s.Endpoint + "/health")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("versitygw exited while starting:\n%s", s.tail())
		case <-ctx.Done():
			s.Stop()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("versitygw did not answer at %s within 30s:\n%s", s.Endpoint, s.tail())
		}
	}
}

// Stop kills the server at once, as a crash or a network outage looks to
// a client in the middle of an upload.
func (s *S3) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Remove stops the server and deletes its files.
func (s *S3) Remove() {
	s.Stop()
	_ = os.RemoveAll(s.Dir)
}

func (s *S3) tail() string {
	data, _ := os.ReadFile(filepath.Join(s.Dir, "versitygw.log"))
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return string(data)
}

// Client is an S3 client with the root keys.
func (s *S3) Client() (*minio.Client, error) {
	return minio.New(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:       s.Region,
		BucketLookup: minio.BucketLookupPath,
	})
}

// CreateBucket makes a bucket.
func (s *S3) CreateBucket(ctx context.Context, name string) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	return c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: s.Region})
}

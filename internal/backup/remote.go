package backup

import (
	"archive/tar"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Remote volumes are data directories the runner cannot mount: a coop's
// volumes live in the coop's namespace, and the store's keys must never go
// there. A sender next to the volumes streams each one as a tar archive to
// the runner over HTTP, and the runner stores it as it stores a local one.
// The token only lets its holder add volumes to the backup running now.

// volumePath is where a sender puts a volume: PUT /volumes/<name>.
const volumePath = "/volumes/"

// incoming is one volume's tar stream, handed from the HTTP handler to the
// backup; done carries the backup's verdict back to the sender.
type incoming struct {
	name string
	body io.Reader
	done chan error
}

// Receiver accepts the remote volumes of one backup.
type Receiver struct {
	token    string
	expected map[string]bool
	// Wait is how long the backup waits for the next volume.
	Wait time.Duration

	ln       net.Listener
	srv      *http.Server
	arrivals chan incoming

	mu       sync.Mutex
	received map[string]bool
}

// Listen starts receiving the named volumes on addr. Senders must present
// token; each volume is accepted once.
func Listen(addr, token string, names []string) (*Receiver, error) {
	if token == "" {
		return nil, errors.New("a token for the volume senders is required")
	}
	if len(names) == 0 {
		return nil, errors.New("no remote volume is named")
	}
	r := &Receiver{token: token, expected: map[string]bool{}, received: map[string]bool{},
		arrivals: make(chan incoming), Wait: 30 * time.Minute}
	for _, n := range names {
		if err := (Volume{Name: n, Path: "-"}).validateName(); err != nil {
			return nil, err
		}
		if r.expected[n] {
			return nil, fmt.Errorf("remote volume %q is given twice", n)
		}
		r.expected[n] = true
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("while listening for volumes on %s: %w", addr, err)
	}
	r.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", r.ready)
	mux.HandleFunc("PUT "+volumePath+"{name}", r.receive)
	// No write timeout: a sender waits while the databases are dumped.
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Addr is the address the receiver listens on.
func (r *Receiver) Addr() string { return r.ln.Addr().String() }

// Names are the volumes the receiver waits for.
func (r *Receiver) Names() []string {
	var names []string
	for n := range r.expected {
		names = append(names, n)
	}
	return names
}

// Close stops receiving.
func (r *Receiver) Close() error { return r.srv.Close() }

func (r *Receiver) authorized(req *http.Request) bool {
	got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	return ok && constantTimeEqual(got, r.token)
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (r *Receiver) ready(w http.ResponseWriter, req *http.Request) {
	if !r.authorized(req) {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *Receiver) receive(w http.ResponseWriter, req *http.Request) {
	if !r.authorized(req) {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	name := req.PathValue("name")
	r.mu.Lock()
	switch {
	case !r.expected[name]:
		r.mu.Unlock()
		http.Error(w, fmt.Sprintf("volume %q is not part of this backup", name), http.StatusNotFound)
		return
	case r.received[name]:
		r.mu.Unlock()
		http.Error(w, fmt.Sprintf("volume %q was already received", name), http.StatusConflict)
		return
	}
	r.received[name] = true
	r.mu.Unlock()
	in := incoming{name: name, body: req.Body, done: make(chan error, 1)}
	select {
	case r.arrivals <- in:
	case <-req.Context().Done():
		return
	}
	if err := <-in.done; err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// next waits for the next volume to arrive.
func (r *Receiver) next(ctx context.Context, left int) (incoming, error) {
	timer := time.NewTimer(r.Wait)
	defer timer.Stop()
	select {
	case in := <-r.arrivals:
		return in, nil
	case <-ctx.Done():
		return incoming{}, ctx.Err()
	case <-timer.C:
		return incoming{}, fmt.Errorf("%d remote volume(s) did not arrive within %s: is the coop's volume sender running?", left, r.Wait)
	}
}

// copyTar copies a tar stream and fails unless it is a whole archive, so a
// sender cut off halfway never yields a backup.
func copyTar(w io.Writer, body io.Reader) error {
	tee := io.TeeReader(body, w)
	tr := tar.NewReader(tee)
	for {
		_, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("the volume's archive is incomplete or damaged: %w", err)
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return fmt.Errorf("the volume's archive is incomplete or damaged: %w", err)
		}
	}
	// The padding after the end-of-archive blocks.
	_, err := io.Copy(io.Discard, tee)
	return err
}

// dialRunner checks the volumes and waits, at most wait, until the runner at
// url answers; it returns the url without a trailing slash and the client.
func dialRunner(ctx context.Context, url, token string, volumes []Volume, wait time.Duration, verb string) (string, *http.Client, error) {
	if len(volumes) == 0 {
		return "", nil, fmt.Errorf("no volume to %s", verb)
	}
	for _, v := range volumes {
		if err := v.Validate(); err != nil {
			return "", nil, err
		}
	}
	url = strings.TrimSuffix(url, "/")
	c := &http.Client{}
	if err := waitReady(ctx, c, url, token, wait); err != nil {
		return "", nil, err
	}
	return url, c, nil
}

// SendVolumes streams each volume as a tar archive to the runner at url
// (http://host:port), once it answers, waiting at most wait for it.
func SendVolumes(ctx context.Context, url, token string, volumes []Volume, wait time.Duration) error {
	url, c, err := dialRunner(ctx, url, token, volumes, wait, "send")
	if err != nil {
		return err
	}
	for _, v := range volumes {
		if err := sendVolume(ctx, c, url, token, v); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
	}
	return nil
}

func waitReady(ctx context.Context, c *http.Client, url, token string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/ready", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusNoContent:
				return nil
			case http.StatusUnauthorized:
				return errors.New("the backup runner refused the token")
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the backup runner at %s did not answer within %s: %w", url, wait, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func sendVolume(ctx context.Context, c *http.Client, url, token string, v Volume) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(v.Path, pw)) }()
	defer func() { _ = pr.Close() }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url+volumePath+v.Name, pr)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("the backup runner answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// A restore brings volumes back to where they are mounted the same way a
// backup takes them: a receiver next to the volumes fetches each archive
// from the runner, unpacks it beside the live files and says so; once the
// databases are restored the runner tells it to swap them in, or to drop
// them, and waits for its word. Nothing live changes before every volume
// is unpacked and every database restored.

// backupIDHeader tells the receiver which backup it unpacks, for the name
// of its staging folder.
const backupIDHeader = "Cooperator-Backup-Id"

// outgoing is one volume asked for by the receiver; the runner writes the
// archive to w and reports on done.
type outgoing struct {
	name string
	w    http.ResponseWriter
	done chan error
}

// VolumeServer hands one restore's volumes to their receiver.
type VolumeServer struct {
	token    string
	expected map[string]bool
	// Wait is how long the restore waits for each step of the receiver.
	Wait time.Duration

	ln       net.Listener
	srv      *http.Server
	requests chan outgoing
	staged   chan volumeReport
	results  chan volumeReport
	decided  chan struct{}
	decision error // nil: swap the volumes in

	mu     sync.Mutex
	handed map[string]bool
	once   sync.Once
}

type volumeReport struct {
	name string
	err  error
}

// Serve starts serving the named volumes on addr to a receiver presenting
// token.
func Serve(addr, token string, names []string) (*VolumeServer, error) {
	if token == "" {
		return nil, errors.New("a token for the volume receivers is required")
	}
	if len(names) == 0 {
		return nil, errors.New("no remote volume is named")
	}
	s := &VolumeServer{token: token, expected: map[string]bool{}, handed: map[string]bool{}, Wait: 30 * time.Minute,
		requests: make(chan outgoing), staged: make(chan volumeReport, len(names)), results: make(chan volumeReport, len(names)),
		decided: make(chan struct{})}
	for _, n := range names {
		if err := (Volume{Name: n}).validateName(); err != nil {
			return nil, err
		}
		if s.expected[n] {
			return nil, fmt.Errorf("remote volume %q is given twice", n)
		}
		s.expected[n] = true
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("while listening for volume receivers on %s: %w", addr, err)
	}
	s.ln = ln
	mux := http.NewServeMux()
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
			if !ok || !constantTimeEqual(got, s.token) {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h(w, req)
		}
	}
	mux.HandleFunc("GET /ready", auth(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	mux.HandleFunc("GET "+volumePath+"{name}", auth(s.hand))
	mux.HandleFunc("POST "+volumePath+"{name}/staged", auth(s.report(s.staged)))
	mux.HandleFunc("POST "+volumePath+"{name}/result", auth(s.report(s.results)))
	mux.HandleFunc("GET /decision", auth(s.tell))
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on.
func (s *VolumeServer) Addr() string { return s.ln.Addr().String() }

// Close stops serving.
func (s *VolumeServer) Close() error { return s.srv.Close() }

func (s *VolumeServer) hand(w http.ResponseWriter, req *http.Request) {
	name := req.PathValue("name")
	s.mu.Lock()
	switch {
	case !s.expected[name]:
		s.mu.Unlock()
		http.Error(w, fmt.Sprintf("volume %q is not part of this restore", name), http.StatusNotFound)
		return
	case s.handed[name]:
		s.mu.Unlock()
		http.Error(w, fmt.Sprintf("volume %q was already handed out", name), http.StatusConflict)
		return
	}
	s.handed[name] = true
	s.mu.Unlock()
	out := outgoing{name: name, w: w, done: make(chan error, 1)}
	select {
	case s.requests <- out:
	case <-req.Context().Done():
		return
	}
	if err := <-out.done; err != nil {
		// Break the stream: the receiver must see an incomplete archive.
		panic(http.ErrAbortHandler)
	}
}

func (s *VolumeServer) report(into chan volumeReport) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		msg, _ := io.ReadAll(io.LimitReader(req.Body, 4096))
		r := volumeReport{name: req.PathValue("name")}
		if len(msg) > 0 {
			r.err = errors.New(string(msg))
		}
		select {
		case into <- r:
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "unexpected report", http.StatusConflict)
		}
	}
}

func (s *VolumeServer) tell(w http.ResponseWriter, req *http.Request) {
	select {
	case <-s.decided:
	case <-req.Context().Done():
		return
	}
	if s.decision != nil {
		http.Error(w, s.decision.Error(), http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decide tells the receiver to swap the volumes in (nil) or to drop them.
func (s *VolumeServer) decide(err error) {
	s.once.Do(func() {
		s.decision = err
		close(s.decided)
	})
}

// stage hands every volume to the receiver, in the order it asks, and
// waits until it has unpacked each.
func (s *VolumeServer) stage(ctx context.Context, id string, send func(name string, w io.Writer) error) error {
	for left := len(s.expected); left > 0; left-- {
		var out outgoing
		select {
		case out = <-s.requests:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.Wait):
			return fmt.Errorf("%d remote volume(s) were not asked for within %s: is the coop's volume receiver running?", left, s.Wait)
		}
		out.w.Header().Set(backupIDHeader, id)
		out.w.Header().Set("Content-Type", "application/x-tar")
		err := send(out.name, out.w)
		out.done <- err
		if err != nil {
			return fmt.Errorf("volume %s: %w", out.name, err)
		}
		select {
		case r := <-s.staged:
			if r.err != nil {
				return fmt.Errorf("volume %s could not be unpacked where it is mounted: %w", r.name, r.err)
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.Wait):
			return fmt.Errorf("volume %s: the receiver did not say it was unpacked within %s", out.name, s.Wait)
		}
	}
	return nil
}

// results waits for the receiver's word on each volume it swapped in.
func (s *VolumeServer) swapped(ctx context.Context) error {
	var failed []string
	for left := len(s.expected); left > 0; left-- {
		select {
		case r := <-s.results:
			if r.err != nil {
				failed = append(failed, fmt.Sprintf("volume %s was left as it was: %v", r.name, r.err))
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.Wait):
			return fmt.Errorf("the receiver did not say within %s whether %d volume(s) were swapped in", s.Wait, left)
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// ReceiveVolumes fetches each volume of a restore from the runner at url,
// unpacks it beside the live files, and swaps them in when the runner says
// the databases are restored; otherwise it leaves every volume as it was.
func ReceiveVolumes(ctx context.Context, url, token string, volumes []Volume, wait time.Duration) error {
	url, c, err := dialRunner(ctx, url, token, volumes, wait, "receive")
	if err != nil {
		return err
	}
	do := func(method, path string, body io.Reader) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, url+path, body)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		return c.Do(req)
	}
	tell := func(path string, err error) error {
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		resp, perr := do(http.MethodPost, path, strings.NewReader(msg))
		if perr != nil {
			return perr
		}
		_ = resp.Body.Close()
		return nil
	}
	type staged struct {
		v       Volume
		dir, id string
	}
	var done []staged
	dropAll := func() {
		for _, s := range done {
			_ = os.RemoveAll(s.dir)
		}
	}
	for _, v := range volumes {
		resp, err := do(http.MethodGet, volumePath+v.Name, nil)
		if err != nil {
			dropAll()
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		id := resp.Header.Get(backupIDHeader)
		if resp.StatusCode != http.StatusOK || id == "" {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			_ = resp.Body.Close()
			dropAll()
			return fmt.Errorf("volume %s: the runner answered %s: %s", v.Name, resp.Status, strings.TrimSpace(string(msg)))
		}
		dir := filepath.Join(v.Path, stagingPrefix+id)
		_ = os.RemoveAll(dir)
		err = os.Mkdir(dir, 0o700)
		if err == nil {
			err = extractTar(resp.Body, dir)
		}
		_ = resp.Body.Close()
		if err != nil {
			_ = os.RemoveAll(dir)
			dropAll()
			_ = tell(volumePath+v.Name+"/staged", err)
			return fmt.Errorf("volume %s: %w; every volume is left as it was", v.Name, err)
		}
		done = append(done, staged{v: v, dir: dir, id: id})
		if err := tell(volumePath+v.Name+"/staged", nil); err != nil {
			dropAll()
			return err
		}
	}
	resp, err := do(http.MethodGet, "/decision", nil)
	if err != nil {
		dropAll()
		return fmt.Errorf("while waiting for the runner: %w; every volume is left as it was", err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		dropAll()
		return fmt.Errorf("the restore was called off, every volume is left as it was: %s", strings.TrimSpace(string(msg)))
	}
	var failed []string
	for _, s := range done {
		previous := filepath.Join(s.v.Path, previousPrefix+s.id)
		_ = os.RemoveAll(previous)
		err := swapIn(s.v.Path, s.dir, previous)
		_ = os.RemoveAll(s.dir)
		if err == nil {
			err = os.RemoveAll(previous)
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("volume %s: %v", s.v.Name, err))
		}
		if terr := tell(volumePath+s.v.Name+"/result", err); terr != nil {
			failed = append(failed, terr.Error())
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

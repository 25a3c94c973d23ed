package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"

	"k8s.io/client-go/rest"

	"cooperator.dev/cooperator/internal/testenv"
)

// meteredProcesses are the control plane's processes whose CPU time each
// contender reports, besides the bench's own ("bench").
var meteredProcesses = []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok"}

// serverProfileChunk is the length of each of the API server's profiles
// when -server-profile-seconds 0 profiles a whole contender.
const serverProfileChunk = 5 * time.Second

// meter measures what a contender costs the whole machine from its first
// create until every tenant is Ready: each process's CPU time and the API
// server's requests from every client, by verb and resource. The operator
// has the same load to carry as the floor (the control plane's own
// controllers, kwok's pods) plus its own, and both cores are busy in both
// runs, so these say where the operator's longer run goes.
type meter struct {
	o        options
	cpu      map[string]float64
	requests map[string]float64
	profiler *serverProfiler
}

// startMeter starts measuring; with -profile it also profiles the API
// server into apiserver-<name>*.pprof in the work folder.
func startMeter(o options, name string) (*meter, error) {
	requests, err := apiServerRequests(o.apiserver)
	if err != nil {
		return nil, err
	}
	m := &meter{o: o, cpu: processCPU(o.env), requests: requests}
	if o.profile && name != "" {
		m.profiler = startServerProfiler(o.apiserver, o.serverProfileSeconds, filepath.Join(o.work, "apiserver-"+name))
	}
	return m, nil
}

// stop records into r what the contender cost since startMeter.
func (m *meter) stop(r *run) error {
	cpu := processCPU(m.o.env)
	requests, err := apiServerRequests(m.o.apiserver)
	if err != nil {
		return err
	}
	if m.profiler != nil {
		m.profiler.stop()
	}
	r.CPUByProcess = map[string]float64{}
	for name, s := range cpu {
		r.CPUByProcess[name] = round(s - m.cpu[name])
	}
	r.ServerCPUSeconds = round(r.CPUByProcess["kube-apiserver"] + r.CPUByProcess["etcd"])
	r.APIServerRequests = diff(requests, m.requests)
	return nil
}

// processCPU is the CPU time of each metered process and of the bench.
func processCPU(env *testenv.Env) map[string]float64 {
	out := map[string]float64{}
	for _, name := range meteredProcesses {
		if pid := env.PID(name); pid > 0 {
			if s, err := processCPUSeconds(pid); err == nil {
				out[name] = s
			}
		}
	}
	if s, err := processCPUSeconds(os.Getpid()); err == nil {
		out["bench"] = s
	}
	return out
}

// serverProfiler saves the API server's CPU profile: one of the given
// seconds, or, for 0, consecutive profiles of serverProfileChunk until
// stopped, numbered, which `go tool pprof` merges when given them all.
type serverProfiler struct {
	done    chan struct{}
	stopped chan struct{}
}

func startServerProfiler(cfg *rest.Config, seconds int, prefix string) *serverProfiler {
	p := &serverProfiler{done: make(chan struct{}), stopped: make(chan struct{})}
	if seconds > 0 {
		close(p.stopped)
		go func() { _ = saveServerProfile(cfg, time.Duration(seconds)*time.Second, prefix+".pprof") }()
		return p
	}
	go func() {
		defer close(p.stopped)
		for i := 0; ; i++ {
			select {
			case <-p.done:
				return
			default:
			}
			if err := saveServerProfile(cfg, serverProfileChunk, fmt.Sprintf("%s-%03d.pprof", prefix, i)); err != nil {
				logf("API server profile: %v", err)
				return
			}
		}
	}()
	return p
}

// stop ends the profiles after the one in progress, so that the next
// contender's can start.
func (p *serverProfiler) stop() {
	close(p.done)
	<-p.stopped
}

// requestDifferences are the requests whose counts differ most between two
// runs, largest first, as "VERB resource a / b".
func requestDifferences(a, b map[string]float64, n int) []string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	type row struct {
		key  string
		a, b float64
	}
	var rows []row
	for k := range keys {
		if a[k] != b[k] {
			rows = append(rows, row{k, a[k], b[k]})
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		di, dj := math.Abs(rows[i].b-rows[i].a), math.Abs(rows[j].b-rows[j].a)
		if di != dj {
			return di > dj
		}
		return rows[i].key < rows[j].key
	})
	var out []string
	for i, r := range rows {
		if i == n {
			break
		}
		out = append(out, fmt.Sprintf("%s %.0f / %.0f", r.key, r.a, r.b))
	}
	return out
}

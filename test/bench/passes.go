package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/testenv"
)

// operatorRun is what one pass of the operator cost.
type operatorRun struct {
	run
	CPUSeconds float64 `json:"cpuSeconds"`
	PeakRSSMiB float64 `json:"peakRSSMiB"`
	// RSSAnonMiB and RSSFileMiB split the resident memory at the end: the
	// heap and stacks, and the binary's mapped pages.
	RSSAnonMiB float64 `json:"rssAnonMiB"`
	RSSFileMiB float64 `json:"rssFileMiB"`
	// Requests are the operator's API requests during the pass, by verb.
	Requests map[string]float64 `json:"requests"`
	// WritesPerCoop are its POST, PUT, PATCH and DELETE requests per coop:
	// objects, status, finalizers and events.
	WritesPerCoop float64 `json:"writesPerCoop"`
	// EventsPerCoop are the Events it recorded per coop, part of the writes.
	EventsPerCoop float64 `json:"eventsPerCoop"`
	// ReconcilesPerCoop are the Cooperative controller's reconciles per
	// coop: each one reads the coop's children and renders its apps.
	ReconcilesPerCoop float64 `json:"reconcilesPerCoop"`
	// ServerSide are the API server's own counts, during the pass, of the
	// server-side applies and the creates of a coop's kinds by resource, and
	// of the writes to Cooperatives by verb and subresource: only the
	// operator applies or creates those kinds, and only it writes a
	// Cooperative once the bench has created it.
	ServerSide map[string]float64 `json:"apiServerCounts"`
}

// resync is a restart of the operator with nothing to change.
type resync struct {
	Coops            int                `json:"coops"`
	Seconds          float64            `json:"seconds"`
	MutatingRequests float64            `json:"mutatingRequests"`
	Requests         map[string]float64 `json:"requests"`
	// PeakRSSMiB is the highest of PeakRSSMiBByRound.
	PeakRSSMiB float64 `json:"peakRSSMiB"`
	// PeakRSSMiBByRound is each restart's peak (-resync-rounds); the
	// seconds and requests are the first restart's.
	PeakRSSMiBByRound []float64 `json:"peakRSSMiBByRound,omitempty"`
}

type starter func() (*operator, error)

// passA: N coops whose databases are dedicated (a CloudNativePG Cluster
// object each), so that no shared server is involved.
func passA(ctx context.Context, o options, res *results, c client.Client, t *tracker, start starter) error {
	op, err := start()
	if err != nil {
		return err
	}
	if _, err := waitIdle(ctx, op, 1); err != nil {
		return err
	}
	coops := names("coop", o.n)
	logf("Operator, pass A: %d coops, dedicated databases", o.n)
	pr, err := measure(ctx, o, op, c, t, coops, "bench-dedicated", 1+o.n)
	if err != nil {
		return err
	}
	res.Operator = pr
	logf("Operator: all %d Ready in %.1fs (p50 %.1fs, p99 %.1fs); %.1f CPU s; peak RSS %.1f MiB (now %.1f anonymous, %.1f file); %.1f writes and %.1f reconciles per coop",
		o.n, pr.AllReadySeconds, pr.P50Seconds, pr.P99Seconds, pr.CPUSeconds, pr.PeakRSSMiB, pr.RSSAnonMiB, pr.RSSFileMiB, pr.WritesPerCoop, pr.ReconcilesPerCoop)
	if o.profile {
		if err := saveProfile(op, "heap", filepath.Join(o.work, "heap-passA.pprof")); err != nil {
			return err
		}
	}

	// Resync: the same coops, a new process, as many times as asked: its
	// peak moves by several MiB from one restart to the next.
	op.stop()
	logf("Resync: restarting the operator over %d unchanged coops, %d times", 1+o.n, o.resyncRounds)
	for i := 1; i <= o.resyncRounds; i++ {
		var rs resync
		if op, rs, err = restart(ctx, start, 1+o.n); err != nil {
			return err
		}
		logf("Resync %d: %.1fs, %.0f mutating requests, peak RSS %.1f MiB", i, rs.Seconds, rs.MutatingRequests, rs.PeakRSSMiB)
		if i == 1 {
			res.Resync = rs
			if o.profile {
				if err := saveProfile(op, "heap", filepath.Join(o.work, "heap-resync.pprof")); err != nil {
					op.stop()
					return err
				}
			}
		}
		res.Resync.PeakRSSMiB = max(res.Resync.PeakRSSMiB, rs.PeakRSSMiB)
		res.Resync.PeakRSSMiBByRound = append(res.Resync.PeakRSSMiBByRound, rs.PeakRSSMiB)
		res.Resync.MutatingRequests = max(res.Resync.MutatingRequests, rs.MutatingRequests)
		if i < o.resyncRounds {
			op.stop()
		}
	}

	// Unrelated objects: the operator must not cache them.
	logf("Unrelated: %d Secrets and %d Pods in other namespaces", o.unrelated, o.unrelated)
	if err := createUnrelated(ctx, c, o.unrelated); err != nil {
		op.stop()
		return err
	}
	op.stop()
	op, withUnrelated, err := restart(ctx, start, 1+o.n)
	if err != nil {
		return err
	}
	op.stop()
	// One restart against one: the first resync's.
	res.Unrelated = unrelated{Secrets: o.unrelated, Pods: o.unrelated, Resync: withUnrelated,
		RSSDeltaMiB: round(withUnrelated.PeakRSSMiB - res.Resync.PeakRSSMiBByRound[0])}
	logf("Unrelated: resync peak RSS %.1f MiB, %+.1f MiB; %.0f mutating requests", withUnrelated.PeakRSSMiB, res.Unrelated.RSSDeltaMiB, withUnrelated.MutatingRequests)
	return nil
}

// passB: N more coops with shared databases on the real PostgreSQL server.
func passB(ctx context.Context, o options, res *results, c client.Client, pg *testenv.Postgres, t *tracker, start starter) error {
	if err := addDatabaseServer(ctx, c, pg, int32(o.n)); err != nil {
		return err
	}
	op, err := start()
	if err != nil {
		return err
	}
	defer op.stop()
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		s := &v1alpha1.DatabaseServer{}
		if err := c.Get(ctx, client.ObjectKey{Name: "bench"}, s); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(s.Status.Conditions, v1alpha1.ReadyCondition), nil
	})
	if err != nil {
		return fmt.Errorf("the DatabaseServer did not become Ready: %w", err)
	}
	if _, err := waitIdle(ctx, op, 1+o.n); err != nil {
		return err
	}
	ddlBefore, err := pg.DDLCount("cooperator")
	if err != nil {
		return err
	}
	coops := names("db", o.n)
	logf("Operator, pass B: %d coops with shared databases on PostgreSQL", o.n)
	pr, err := measure(ctx, o, op, c, t, coops, "bench-shared", 1+2*o.n)
	if err != nil {
		return err
	}
	ddlAfter, err := pg.DDLCount("cooperator")
	if err != nil {
		return err
	}
	res.Databases = &databases{operatorRun: pr, DDLPerDatabase: round(float64(ddlAfter-ddlBefore) / float64(o.n))}
	logf("Databases: all %d Ready in %.1fs (p50 %.1fs, p99 %.1fs); %.1f CPU s; %.1f writes per coop",
		o.n, pr.AllReadySeconds, pr.P50Seconds, pr.P99Seconds, pr.CPUSeconds, pr.WritesPerCoop)
	return nil
}

// measure creates the coops and waits until they are Ready and the
// operator has nothing left to do; total is how many coops exist then.
func measure(ctx context.Context, o options, op *operator, c client.Client, t *tracker, coops []string, plan string, total int) (operatorRun, error) {
	before, err := op.scrape()
	if err != nil {
		return operatorRun{}, err
	}
	cpuBefore, err := op.cpuSeconds()
	if err != nil {
		return operatorRun{}, err
	}
	if o.profile {
		go func() {
			_ = saveProfile(op, fmt.Sprintf("profile?seconds=%d", o.operatorProfileSeconds), filepath.Join(o.work, "cpu-"+plan+".pprof"))
		}()
	}
	m, err := startMeter(o, plan)
	if err != nil {
		return operatorRun{}, err
	}
	if err := createCoops(ctx, c, t, coops, plan); err != nil {
		return operatorRun{}, err
	}
	if err := t.waitAll(ctx, coops, 30*time.Minute); err != nil {
		return operatorRun{}, fmt.Errorf("operator: %w", err)
	}
	r := t.result(coops)
	if err := m.stop(&r); err != nil {
		return operatorRun{}, err
	}
	// Writes that come after Ready count too.
	after, err := waitIdle(ctx, op, total)
	if err != nil {
		return operatorRun{}, err
	}
	cpuAfter, err := op.cpuSeconds()
	if err != nil {
		return operatorRun{}, err
	}
	rss, err := op.peakRSS()
	if err != nil {
		return operatorRun{}, err
	}
	serverAfter, err := apiServerRequests(o.apiserver)
	if err != nil {
		return operatorRun{}, err
	}
	anon, _ := procStatusKiB(op.cmd.Process.Pid, "RssAnon:")
	file, _ := procStatusKiB(op.cmd.Process.Pid, "RssFile:")
	events, err := countEvents(ctx, c, coops)
	if err != nil {
		return operatorRun{}, err
	}
	requests := diff(after.requestsByVerb(), before.requestsByVerb())
	n := float64(len(coops))
	reconciles := after.sum("controller_runtime_reconcile_total", cooperativeController) -
		before.sum("controller_runtime_reconcile_total", cooperativeController)
	return operatorRun{run: r, CPUSeconds: round(cpuAfter - cpuBefore), PeakRSSMiB: round(rss),
		RSSAnonMiB: round(anon), RSSFileMiB: round(file), ServerSide: operatorCounts(diff(serverAfter, m.requests), o.stackResources),
		Requests: requests, WritesPerCoop: round(mutating(requests) / n), EventsPerCoop: round(float64(events) / n),
		ReconcilesPerCoop: round(reconciles / n)}, nil
}

// restart starts the operator and waits until it has reconciled every coop
// once and has nothing left to do.
func restart(ctx context.Context, start starter, coops int) (*operator, resync, error) {
	op, err := start()
	if err != nil {
		return nil, resync{}, err
	}
	after, err := waitIdle(ctx, op, coops)
	if err != nil {
		op.stop()
		return nil, resync{}, err
	}
	seconds := time.Since(op.started).Seconds()
	rss, err := op.peakRSS()
	if err != nil {
		op.stop()
		return nil, resync{}, err
	}
	requests := after.requestsByVerb()
	return op, resync{Coops: coops, Seconds: round(seconds), MutatingRequests: mutating(requests), Requests: requests, PeakRSSMiB: round(rss)}, nil
}

// cooperativeController selects the Cooperative controller's metrics.
var cooperativeController = map[string]string{"controller": "cooperative"}

// waitIdle waits until the Cooperative controller has reconciled at least
// coops times in this process, its queue is empty and no worker is busy,
// twice in a row 500 ms apart, and returns the last scrape.
func waitIdle(ctx context.Context, op *operator, coops int) (samples, error) {
	idle := 0
	var last samples
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 30*time.Minute, true, func(context.Context) (bool, error) {
		s, err := op.scrape()
		if err != nil {
			return false, nil
		}
		last = s
		if s.sum("controller_runtime_reconcile_total", cooperativeController) >= float64(coops) &&
			s.sum("workqueue_depth", map[string]string{"name": "cooperative"}) == 0 &&
			s.sum("controller_runtime_active_workers", cooperativeController) == 0 {
			idle++
		} else {
			idle = 0
		}
		return idle >= 2, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for the operator to finish: %w", err)
	}
	return last, nil
}

// countEvents counts the Events recorded about the coops.
func countEvents(ctx context.Context, c client.Client, coops []string) (int, error) {
	want := map[string]bool{}
	for _, n := range coops {
		want[n] = true
	}
	var list corev1.EventList
	if err := c.List(ctx, &list, client.MatchingFields{"involvedObject.kind": "Cooperative"}); err != nil {
		return 0, err
	}
	n := 0
	for _, e := range list.Items {
		if want[e.InvolvedObject.Name] {
			n++
		}
	}
	return n, nil
}

// createUnrelated makes Secrets and Pods that no coop owns, in namespaces of
// their own. The Pods name a scheduler that does not exist, so they stay
// Pending and cost the fake nodes nothing.
func createUnrelated(ctx context.Context, c client.Client, n int) error {
	const namespaces = 10
	for i := range namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%d", i)}}
		if err := c.Create(ctx, ns); err != nil {
			return err
		}
	}
	return pool(names("unrelated", n), 32, func(name string) error {
		i, err := strconv.Atoi(strings.TrimPrefix(name, "unrelated-"))
		if err != nil {
			return err
		}
		ns := fmt.Sprintf("unrelated-%d", i%namespaces)
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "unrelated"}},
			Data: map[string][]byte{"token": []byte(name + "-0123456789abcdef0123456789abcdef")}}
		if err := c.Create(ctx, secret); err != nil {
			return err
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "unrelated"}},
			Spec: corev1.PodSpec{SchedulerName: "not-scheduled", Containers: []corev1.Container{{Name: "idle", Image: "registry.example/idle:1"}}}}
		return c.Create(ctx, pod)
	})
}

func saveProfile(op *operator, what, path string) error {
	// A CPU profile takes as long as it is asked to.
	resp, err := (&http.Client{Timeout: time.Hour}).Get(op.pprofURL + what)
	if err != nil {
		return err
	}
	return saveBody(resp, path)
}

// saveServerProfile saves the API server's CPU profile of the next d, in
// whole seconds.
func saveServerProfile(cfg *rest.Config, d time.Duration, path string) error {
	c, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	c.Timeout = d + time.Minute
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", cfg.Host, int(d.Seconds())), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	return saveBody(resp, path)
}

func saveBody(resp *http.Response, path string) error {
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Request.URL.Path, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	_, err = io.Copy(f, resp.Body)
	return err
}

// apiServerRequests reads apiserver_request_total from the API server, by
// "VERB resource[/subresource]", from every client.
func apiServerRequests(cfg *rest.Config) (map[string]float64, error) {
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: transport, Timeout: 30 * time.Second}).Get(cfg.Host + "/metrics")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	all, err := parseMetrics(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, s := range all {
		if s.name != "apiserver_request_total" {
			continue
		}
		resource := s.labels["resource"]
		if sub := s.labels["subresource"]; sub != "" {
			resource += "/" + sub
		}
		out[s.labels["verb"]+" "+resource] += s.value
	}
	return out, nil
}

// operatorCounts are the requests of all that only the operator sends in
// a pass: every server-side apply, every create of the resources of a
// coop's objects, and every write to Cooperatives.
func operatorCounts(all map[string]float64, created map[string]bool) map[string]float64 {
	out := map[string]float64{}
	for key, n := range all {
		verb, resource, _ := strings.Cut(key, " ")
		if verb == "APPLY" || (verb == "POST" && created[resource]) || (strings.HasPrefix(resource, "cooperatives") && verb != "GET" && verb != "LIST" && verb != "WATCH") {
			out[key] = n
		}
	}
	return out
}

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/internal/testenv"
)

// operator is one run of the built bin/cooperator, a process of its own so
// that its CPU time and memory are its own.
type operator struct {
	cmd        *exec.Cmd
	done       chan struct{}
	metricsURL string
	pprofURL   string
	started    time.Time
}

// startOperator runs the operator with its metrics and pprof on free
// loopback ports, extra flags after them, and waits until it serves metrics.
func startOperator(ctx context.Context, bin, kubeconfig, logPath string, env, extra []string) (*operator, error) {
	metricsPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	pprofPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"manager",
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metricsPort),
		fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", pprofPort),
		"--health-probe-bind-address=0",
	}, extra...)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+kubeconfig), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	o := &operator{cmd: cmd, done: make(chan struct{}),
		metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort),
		pprofURL:   fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", pprofPort),
		started:    time.Now()}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(o.done)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := o.scrape(); err == nil {
			if err := waitWebhooks(ctx, extra); err != nil {
				o.stop()
				return nil, err
			}
			return o, nil
		}
		select {
		case <-o.done:
			return nil, fmt.Errorf("the operator exited at start; see %s", logPath)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			o.stop()
			return nil, fmt.Errorf("the operator's metrics did not answer in 60s; see %s", logPath)
		}
	}
}

// stop sends SIGTERM, as a rolling update would, and waits.
func (o *operator) stop() {
	_ = o.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-o.done:
	case <-time.After(60 * time.Second):
		_ = o.cmd.Process.Kill()
		<-o.done
	}
}

// cpuSeconds is the user and system time the process has used.
func (o *operator) cpuSeconds() (float64, error) {
	return processCPUSeconds(o.cmd.Process.Pid)
}

// processCPUSeconds is a process's user and system time.
func processCPUSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields start after its ')'.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, err := strconv.ParseFloat(fields[11], 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseFloat(fields[12], 64)
	if err != nil {
		return 0, err
	}
	const ticks = 100 // USER_HZ on Linux
	return (utime + stime) / ticks, nil
}

// peakRSS is the process's VmHWM in MiB.
func (o *operator) peakRSS() (float64, error) {
	return procStatusKiB(o.cmd.Process.Pid, "VmHWM:")
}

func procStatusKiB(pid int, field string) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kib, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kib / 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type samples []sample

func (o *operator) scrape() (samples, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(o.metricsURL)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (samples, error) {
	var out samples
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		var rest string
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			s.name = line[:i]
			for _, kv := range splitLabels(line[i+1 : j]) {
				k, v, _ := strings.Cut(kv, "=")
				s.labels[k] = strings.Trim(v, `"`)
			}
			rest = line[j+1:]
		} else {
			s.name, rest, _ = strings.Cut(line, " ")
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			continue
		}
		s.value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// splitLabels splits a="x",b="y" at the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// sum adds the samples of a metric whose labels hold every pair of match.
func (ss samples) sum(name string, match map[string]string) float64 {
	total := 0.0
	for _, s := range ss {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range match {
			if s.labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			total += s.value
		}
	}
	return total
}

// requestsByVerb counts the operator's API requests by HTTP method.
func (ss samples) requestsByVerb() map[string]float64 {
	out := map[string]float64{}
	for _, s := range ss {
		if s.name == "rest_client_requests_total" {
			out[s.labels["method"]] += s.value
		}
	}
	return out
}

// mutating is the number of requests that may change something.
func mutating(byVerb map[string]float64) float64 {
	return byVerb["POST"] + byVerb["PUT"] + byVerb["PATCH"] + byVerb["DELETE"]
}

func diff(after, before map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// webhookArgs are the flags of an operator serving its webhooks on a free
// loopback port with the local control plane's serving certificate.
func webhookArgs(work string, env *testenv.Env) ([]string, error) {
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(work, "webhook-certs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for from, to := range map[string]string{env.ServingCert: "tls.crt", env.ServingKey: "tls.key"} {
		data, err := os.ReadFile(from)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, to), data, 0o600); err != nil {
			return nil, err
		}
	}
	return []string{fmt.Sprintf("--webhook-port=%d", port), "--webhook-cert-dir=" + dir}, nil
}

// webhookAddress is where the operator started with args serves webhooks.
func webhookAddress(args []string) string {
	for _, a := range args {
		if port, ok := strings.CutPrefix(a, "--webhook-port="); ok {
			return "127.0.0.1:" + port
		}
	}
	return ""
}

// waitWebhooks waits until the webhook server accepts connections.
func waitWebhooks(ctx context.Context, args []string) error {
	addr := webhookAddress(args)
	if addr == "" {
		return nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the operator's webhook server at %s did not answer in 60s", addr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// installWebhooks points the operator's webhook configurations at its
// server on loopback.
func installWebhooks(ctx context.Context, c client.Client, args []string, caBundle []byte) error {
	objs, err := testenv.WebhookConfigurations("cooperator", "https://"+webhookAddress(args), caBundle)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("while installing the webhooks: %w", err)
		}
	}
	return nil
}

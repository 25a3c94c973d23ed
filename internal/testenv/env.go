// Package testenv runs a real local Kubernetes control plane without Docker:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok,
// built from Go modules into bin/, on free loopback ports. Pods on its fake
// nodes go Running without a kubelet. Tests, `make cluster` and `make demo`
// all use it.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options say where the binaries are and what to start.
type Options struct {
	// BinDir holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler, kwok and kwok-stages.yaml. Default: the repo's bin/.
	BinDir string
	// Dir holds data, certificates, logs and the kubeconfig. Default: a new temp dir.
	Dir string
	// Nodes is how many fake nodes to create. Default 2.
	Nodes int
	// Prepare, when set, runs once the API server serves and before the
	// controller-manager starts: CRDs installed here are known to the
	// garbage collector from its start, instead of after its next
	// discovery refresh.
	Prepare func(ctx context.Context, cfg *rest.Config) error
	// Profiling serves the API server's /debug/pprof, for the bench.
	Profiling bool
}

// Env is a running local control plane.
type Env struct {
	// Dir holds the data, logs and kubeconfig.
	Dir string
	// Kubeconfig is the path of an admin kubeconfig.
	Kubeconfig string
	// Config is an admin client config.
	Config *rest.Config
	// CABundle is the PEM of the local certificate authority, and
	// ServingCert and ServingKey the files of a certificate it signed for
	// 127.0.0.1: a webhook server on loopback serves with them, and the API
	// server trusts it with CABundle.
	CABundle                []byte
	ServingCert, ServingKey string

	procs   []*process
	ownsDir bool
}

// FailingImage is an image whose Job pods fail on the fake nodes (see
// hack/kwok): tests use it to watch a run-once command fail.
const FailingImage = "cooperator.test/fails:always"

// HeldImage is an image whose Job pods stay Running on the fake nodes (see
// hack/kwok): a test runs the pod's command itself, then sets the pod's
// end as a kubelet would.
const HeldImage = "cooperator.test/held:forever"

// NodeAnnotation marks the nodes kwok manages.
const NodeAnnotation = "kwok.x-k8s.io/node"

// Start brings the control plane up and waits until it serves and its fake
// nodes are Ready.
func Start(ctx context.Context, opts Options) (*Env, error) {
	if opts.BinDir == "" {
		root, err := RepoRoot()
		if err != nil {
			return nil, err
		}
		opts.BinDir = filepath.Join(root, "bin")
	}
	if opts.Nodes == 0 {
		opts.Nodes = 2
	}
	e := &Env{Dir: opts.Dir}
	if e.Dir == "" {
		dir, err := os.MkdirTemp("", "cooperator-cluster-")
		if err != nil {
			return nil, err
		}
		e.Dir, e.ownsDir = dir, true
	}
	if err := os.MkdirAll(e.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := e.start(ctx, opts); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

func (e *Env) start(ctx context.Context, opts Options) error {
	p, err := writePKI(e.Dir)
	if err != nil {
		return fmt.Errorf("writing certificates: %w", err)
	}
	e.CABundle, e.ServingCert, e.ServingKey = p.CAPEM, p.ServingCert, p.ServingKey
	token, err := randomToken()
	if err != nil {
		return err
	}
	tokens := filepath.Join(e.Dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return err
	}

	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort, kcmPort, schedPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	etcd := newProcess(opts.BinDir, e.Dir, "etcd",
		"--name=default",
		"--data-dir="+filepath.Join(e.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--unsafe-no-fsync=true", // throwaway data: speed over durability
		"--quota-backend-bytes=8589934592",
		"--log-level=warn",
	)
	if err := e.launch(etcd); err != nil {
		return err
	}
	if err := waitHTTP(ctx, etcd, etcdURL+"/health", nil, 60*time.Second); err != nil {
		return err
	}

	apiURL := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	apiserver := newProcess(opts.BinDir, e.Dir, "kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--tls-cert-file="+p.ServingCert, "--tls-private-key-file="+p.ServingKey,
		"--client-ca-file="+p.CACert,
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+p.SAPub,
		"--service-account-signing-key-file="+p.SAKey,
		// Room for a Service per tenant of a few thousand (make bench).
		"--service-cluster-ip-range=10.0.0.0/20",
		"--allow-privileged=true",
		fmt.Sprintf("--profiling=%t", opts.Profiling),
		"--max-requests-inflight=1000", "--max-mutating-requests-inflight=500",
		"--v=0",
	)
	if err := e.launch(apiserver); err != nil {
		return err
	}
	e.Config = &rest.Config{
		Host:            apiURL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: p.CAPEM},
		QPS:             200,
		Burst:           400,
	}
	if err := e.waitAPIServer(ctx, apiserver); err != nil {
		return err
	}
	e.Kubeconfig = filepath.Join(e.Dir, "kubeconfig")
	if err := writeKubeconfig(e.Kubeconfig, apiURL, p.CAPEM, "admin", token); err != nil {
		return err
	}

	if opts.Prepare != nil {
		if err := opts.Prepare(ctx, e.Config); err != nil {
			return fmt.Errorf("preparing the API server: %w", err)
		}
	}

	kcm := newProcess(opts.BinDir, e.Dir, "kube-controller-manager",
		"--kubeconfig="+e.Kubeconfig,
		"--authentication-kubeconfig="+e.Kubeconfig, "--authorization-kubeconfig="+e.Kubeconfig,
		"--service-account-private-key-file="+p.SAKey,
		"--root-ca-file="+p.CACert,
		"--leader-elect=false",
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", kcmPort),
		"--kube-api-qps=200", "--kube-api-burst=400",
		"--concurrent-namespace-syncs=10", "--concurrent-gc-syncs=40",
		// Claims get volumes, so apps with data schedule on the fake nodes.
		"--enable-hostpath-provisioner",
		"--v=0",
	)
	scheduler := newProcess(opts.BinDir, e.Dir, "kube-scheduler",
		"--kubeconfig="+e.Kubeconfig,
		"--authentication-kubeconfig="+e.Kubeconfig, "--authorization-kubeconfig="+e.Kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", schedPort),
		"--v=0",
	)
	kwok := newProcess(opts.BinDir, e.Dir, "kwok",
		"--kubeconfig="+e.Kubeconfig,
		"--config="+filepath.Join(opts.BinDir, "kwok-stages.yaml"),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+NodeAnnotation+"=fake",
		fmt.Sprintf("--server-address=127.0.0.1:%d", kwokPort),
	)
	for _, proc := range []*process{kcm, scheduler, kwok} {
		if err := e.launch(proc); err != nil {
			return err
		}
	}
	// kwok has been seen to die at start; the supervisor starts it again.
	kwok.supervise()

	if err := e.createNodes(ctx, opts.Nodes); err != nil {
		return err
	}
	return e.createStorageClass(ctx)
}

// StorageClassName is the local cluster's default StorageClass: the
// controller-manager's hostPath provisioner makes a volume for each claim.
// No kubelet mounts them; they let pods with claims be scheduled.
const StorageClassName = "local"

func (e *Env) createStorageClass(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return err
	}
	binding := storagev1.VolumeBindingImmediate
	reclaim := corev1.PersistentVolumeReclaimDelete
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: StorageClassName,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
		Provisioner:       "kubernetes.io/host-path",
		ReclaimPolicy:     &reclaim,
		VolumeBindingMode: &binding,
	}
	if _, err := cs.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating StorageClass %s: %w", sc.Name, err)
	}
	return nil
}

func (e *Env) launch(p *process) error {
	if err := p.start(); err != nil {
		return err
	}
	e.procs = append(e.procs, p)
	return nil
}

func (e *Env) waitAPIServer(ctx context.Context, apiserver *process) error {
	transport, err := rest.TransportFor(e.Config)
	if err != nil {
		return err
	}
	return waitHTTP(ctx, apiserver, e.Config.Host+"/readyz", &http.Client{Transport: transport, Timeout: 5 * time.Second}, 120*time.Second)
}

// createNodes makes fake nodes big enough for a thousand small coops.
func (e *Env) createNodes(ctx context.Context, n int) error {
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return err
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("256"),
		corev1.ResourceMemory: resource.MustParse("1Ti"),
		corev1.ResourcePods:   resource.MustParse("2000"),
	}
	for i := range n {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        fmt.Sprintf("fake-node-%d", i),
				Annotations: map[string]string{NodeAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
				Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": fmt.Sprintf("fake-node-%d", i)},
			},
			Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", node.Name, err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil && countReady(nodes.Items) == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fake nodes did not become Ready; kwok log:\n%s", e.proc("kwok").tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func countReady(nodes []corev1.Node) int {
	n := 0
	for _, node := range nodes {
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}

func (e *Env) proc(name string) *process {
	for _, p := range e.procs {
		if p.name == name {
			return p
		}
	}
	return &process{}
}

// PID is the process id of a running component (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok), or 0.
func (e *Env) PID(name string) int {
	p := e.proc(name)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Stop ends every component, last started first, and removes a temp dir it made.
func (e *Env) Stop() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		e.procs[i].stop()
	}
	e.procs = nil
	if e.ownsDir {
		_ = os.RemoveAll(e.Dir)
	}
}

// Logs names the log file of each component, for a failing test to print.
func (e *Env) Logs() map[string]string {
	out := map[string]string{}
	for _, p := range e.procs {
		out[p.name] = p.logPath
	}
	return out
}

func waitHTTP(ctx context.Context, p *process, url string, c *http.Client, timeout time.Duration) error {
	if c == nil {
		c = &http.Client{Timeout: 2 * time.Second}
	}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("%s exited while starting:\n%s", p.name, p.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer at %s within %s:\n%s", p.name, url, timeout, p.tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WriteKubeconfig writes a kubeconfig for this control plane that
// authenticates as user with token, such as a ServiceAccount's.
func (e *Env) WriteKubeconfig(path, user, token string) error {
	return writeKubeconfig(path, e.Config.Host, e.CABundle, user, token)
}

func writeKubeconfig(path, server string, ca []byte, user, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cooperator-local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["cooperator-local"] = &clientcmdapi.Context{Cluster: "cooperator-local", AuthInfo: user}
	cfg.CurrentContext = "cooperator-local"
	return clientcmd.WriteToFile(*cfg, path)
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func freePorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for len(out) < n {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// RepoRoot is the folder that holds the repo's go.mod, found from this
// source file, or from the working directory upwards.
func RepoRoot() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok {
		root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			return root, nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(data), "module cooperator.dev/cooperator\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the cooperator repo root")
		}
		dir = parent
	}
}

// ModuleDir downloads a Go module at a pinned version through the module
// proxy and returns its folder, for third-party CRDs that the repo must not
// copy (cert-manager's, Gateway API's).
func ModuleDir(module, version string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = os.TempDir()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w", module, version, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", err
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", module, version, info.Error)
	}
	return info.Dir, nil
}

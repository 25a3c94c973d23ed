// Command bench is `make bench`: on the local control plane with fake
// nodes, in one run, it measures the operator making N coops, each with one
// app, against the floor (plain client-go creating exactly the same objects,
// without client-side throttling) and against one `helm install` per tenant
// of a chart that renders the same stack; the operator's resync after a
// restart; its memory with unrelated objects in the cluster; and, apart,
// N coops with shared databases on a real PostgreSQL server. It writes
// bench/results.json, bench/results.md and bench/ready.png.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/controllers"
	"cooperator.dev/cooperator/internal/testenv"
)

type options struct {
	n            int
	nodes        int
	unrelated    int
	floorWorkers int
	floorRounds  int
	resyncRounds int
	helmParallel int
	helmVersion  string
	out          string
	skipHelm     bool
	skipDB       bool
	profile      bool
	// serverProfileSeconds is how long the API server's CPU profiles last.
	serverProfileSeconds int
	// operatorProfileSeconds is how long the operator's CPU profile of
	// each pass lasts.
	operatorProfileSeconds int
	work                   string
	apiserver              *rest.Config
	env                    *testenv.Env
	operatorArgs           []string
	// memoryLimit is the container memory limit the operator is run as
	// if under; empty: none.
	memoryLimit string
	// operatorAsAdmin runs the operator with the bench's admin kubeconfig
	// instead of the chart's identity, as the runs before 2026-12-07 did.
	operatorAsAdmin bool
	// stackResources are the resources of a coop's objects, whose creates
	// the API server's counts report.
	stackResources map[string]bool
}

func main() {
	var o options
	var operatorFlags string
	flag.IntVar(&o.n, "n", 1000, "Coops per contender.")
	flag.IntVar(&o.nodes, "nodes", 4, "Fake nodes (2,000 pods each).")
	flag.IntVar(&o.unrelated, "unrelated", 10000, "Unrelated Secrets, and as many unrelated Pods, created to see whether the operator's memory grows with them.")
	flag.IntVar(&o.floorWorkers, "floor-workers", 32, "Goroutines of the floor's client-go program.")
	flag.IntVar(&o.floorRounds, "floor-rounds", 1, "Times the floor runs, each round on the cluster the earlier ones filled; the ratios use the first.")
	flag.IntVar(&o.resyncRounds, "resync-rounds", 5, "Times the operator is restarted over the unchanged coops (about 7 s each at N=1000); the resync's peak RSS is the highest of them.")
	flag.IntVar(&o.helmParallel, "helm-parallel", 4, "helm installs at a time.")
	flag.StringVar(&o.helmVersion, "helm-version", "", "Helm's pinned version, for the record (bin/helm-<version>).")
	flag.StringVar(&o.out, "out", "bench", "Folder for results.json, results.md and ready.png.")
	flag.BoolVar(&o.skipHelm, "skip-helm", false, "Leave Helm out (its run takes about ten minutes at N=1000).")
	flag.BoolVar(&o.skipDB, "skip-databases", false, "Leave pass B, the shared databases, out.")
	flag.BoolVar(&o.profile, "profile", false, "Save the CPU profiles of the operator for the first 30 s of each pass and of the API server for the floor and each pass, and the operator's heap after pass A and after the resync, in the work folder.")
	flag.IntVar(&o.operatorProfileSeconds, "operator-profile-seconds", 30, "Length of the operator's CPU profile of each pass that -profile saves, from the pass's start.")
	flag.IntVar(&o.serverProfileSeconds, "server-profile-seconds", 20, "Length of the API server's CPU profiles that -profile saves; 0: the whole of the floor and of each pass, in 5 s profiles (apiserver-<name>-NNN.pprof) that go tool pprof merges when given them all.")
	flag.StringVar(&operatorFlags, "operator-flags", "", "Extra flags for the operator, space-separated.")
	flag.BoolVar(&o.operatorAsAdmin, "operator-as-admin", false, "Run the operator with the admin kubeconfig, whose requests skip RBAC, instead of the chart's ServiceAccount and ClusterRole.")
	flag.StringVar(&o.memoryLimit, "memory-limit", "", "Run the operator as under a container memory limit (such as 192Mi): with the soft limit it would set from it. Empty: no limit.")
	flag.Parse()
	o.operatorArgs = strings.Fields(operatorFlags)
	if o.floorRounds < 1 || o.resyncRounds < 1 || o.serverProfileSeconds < 0 || o.operatorProfileSeconds < 1 {
		fmt.Fprintln(os.Stderr, "bench: -floor-rounds and -resync-rounds must be at least 1, -server-profile-seconds at least 0, -operator-profile-seconds at least 1")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func bench(ctx context.Context, o options) error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	bin := filepath.Join(root, "bin")
	work, err := os.MkdirTemp("", "cooperator-bench-")
	if err != nil {
		return err
	}
	o.work = work
	logf("Work folder (logs): %s", work)
	res := &results{N: o.n, Date: time.Now().UTC().Format(time.RFC3339), Command: commandLine(o.n)}
	res.Machine = machine()

	logf("Starting the local control plane with %d fake nodes", o.nodes)
	// The logs stay; etcd's data, hundreds of MiB at N=1000, goes once the
	// control plane has stopped.
	defer func() { _ = os.RemoveAll(filepath.Join(work, "cluster", "etcd")) }()
	env, err := testenv.Start(ctx, testenv.Options{Dir: filepath.Join(work, "cluster"), Nodes: o.nodes, Profiling: o.profile})
	if err != nil {
		return err
	}
	defer env.Stop()
	pg, err := testenv.StartPostgres(ctx, "")
	if err != nil {
		return err
	}
	defer pg.Remove()

	o.apiserver, o.env = env.Config, env
	cfg := rest.CopyConfig(env.Config)
	// The bench's own clients are not throttled: the floor is the API
	// server's pace, not client-go's.
	cfg.QPS, cfg.Burst = -1, 0
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := installCRDs(ctx, c, root); err != nil {
		return err
	}
	if err := applyManifests(ctx, c, manifests); err != nil {
		return err
	}
	playCloudNativePG(ctx, dyn)

	coopTracker, floorTracker := newTracker(), newTracker()
	watchCoops(ctx, dyn, coopTracker)
	watchDeployments(ctx, dyn, floorTracker)

	opBin := filepath.Join(bin, "cooperator")
	opLog := filepath.Join(work, "operator.log")
	var opEnv []string
	res.GOGC = fmt.Sprintf("%d (its default)", controllers.GCPercent)
	if gogc, ok := os.LookupEnv("GOGC"); ok {
		res.GOGC = gogc + " (from the environment)"
	}
	if o.memoryLimit != "" {
		q, err := resource.ParseQuantity(o.memoryLimit)
		if err != nil {
			return fmt.Errorf("-memory-limit: %w", err)
		}
		// What the operator sets from its container's limit (cgroup), which
		// a process on this machine does not have.
		opEnv = append(opEnv, fmt.Sprintf("GOMEMLIMIT=%d", int64(float64(q.Value())*controllers.MemoryLimitRatio)))
		res.MemoryLimit = o.memoryLimit
	}
	// The operator serves its admission webhooks, as the chart installs it:
	// they check each coop the bench creates and give it its finalizer.
	hookArgs, err := webhookArgs(work, env)
	if err != nil {
		return err
	}
	opKubeconfig := env.Kubeconfig
	if !o.operatorAsAdmin {
		if opKubeconfig, err = operatorKubeconfig(ctx, c, env, root, work); err != nil {
			return err
		}
	}
	res.OperatorIdentity = "the chart's: ServiceAccount " + operatorNamespace + "/" + operatorServiceAccount + ", ClusterRole of config/rbac"
	if o.operatorAsAdmin {
		res.OperatorIdentity = "the admin kubeconfig (system:masters, no RBAC)"
	}
	start := func() (*operator, error) {
		return startOperator(ctx, opBin, opKubeconfig, opLog, opEnv, append(hookArgs, o.operatorArgs...))
	}

	// One coop first: it shows the stack each contender makes.
	logf("Warm-up: one coop through the operator, to read the stack it makes")
	op, err := start()
	if err != nil {
		return err
	}
	if err := installWebhooks(ctx, c, hookArgs, env.CABundle); err != nil {
		op.stop()
		return err
	}
	const template = "template"
	if err := createCoops(ctx, c, coopTracker, []string{template}, "bench-dedicated"); err != nil {
		return err
	}
	if err := coopTracker.waitAll(ctx, []string{template}, 2*time.Minute); err != nil {
		op.stop()
		return fmt.Errorf("the warm-up coop: %w; see %s", err, opLog)
	}
	op.stop()
	stack, err := captureStack(ctx, dyn, template)
	if err != nil {
		return err
	}
	res.Objects = describe(stack)
	o.stackResources = map[string]bool{}
	for _, obj := range stack {
		o.stackResources[obj.gvr.Resource] = true
	}
	if err := writeStack(filepath.Join(work, "operator-objects.yaml"), stack); err != nil {
		return err
	}
	helm := filepath.Join(bin, "helm")
	chart := filepath.Join(root, "test", "bench", "chart")
	if err := checkChart(helm, chart, template, stack); err != nil {
		return err
	}
	logf("Each contender makes %d objects per tenant: %s", len(stack), strings.Join(res.Objects, ", "))

	// The floor first, alone on the machine and on an empty cluster. Later
	// rounds show how much the floor moves within one run, and whether a
	// cluster that already holds tenants slows the next ones.
	logf("Floor: plain client-go, %d workers, %d tenants", o.floorWorkers, o.n)
	for i := 1; i <= o.floorRounds; i++ {
		prefix := "floor"
		if i > 1 {
			prefix = fmt.Sprintf("floor%d", i)
		}
		tenants := names(prefix, o.n)
		profile := ""
		if i == 1 {
			profile = "floor"
		}
		m, err := startMeter(o, profile)
		if err != nil {
			return err
		}
		if err := floor(ctx, dyn, floorTracker, stack, template, tenants, o.floorWorkers); err != nil {
			return err
		}
		if err := floorTracker.waitAll(ctx, tenants, 30*time.Minute); err != nil {
			return fmt.Errorf("floor, round %d: %w", i, err)
		}
		r := floorTracker.result(tenants)
		if err := m.stop(&r); err != nil {
			return err
		}
		logf("Floor, round %d: all %d Available in %.1fs (p50 %.1fs, p99 %.1fs)", i, o.n, r.AllReadySeconds, r.P50Seconds, r.P99Seconds)
		if i == 1 {
			res.Floor = r
		} else {
			res.FloorRounds = append(res.FloorRounds, r)
		}
	}

	// Every request RBAC checks, and every check of a Role or binding
	// create for escalation, walks all ClusterRoleBindings. The floor ran as
	// admin, past RBAC, with none of another tenant's; the operator, which
	// runs under RBAC, starts from the same count.
	logf("Deleting the floor's ClusterRoles and ClusterRoleBindings")
	if err := deleteClusterRBAC(ctx, dyn, "bench-floor"); err != nil {
		return err
	}
	// Each Service's cluster IP is allocated by a walk over those taken: the
	// floor's 1,000 would cost pass A's Services more than its own cost it.
	logf("Deleting the floor's Services")
	if err := deleteServices(ctx, dyn, "bench-floor", o.floorWorkers); err != nil {
		return err
	}

	// Pass A: the operator, coops without a shared database.
	if err := passA(ctx, o, res, c, coopTracker, start); err != nil {
		return err
	}

	// Pass B: the database part, on the real PostgreSQL server.
	if !o.skipDB {
		if err := passB(ctx, o, res, c, pg, coopTracker, start); err != nil {
			return err
		}
	}

	if !o.skipHelm {
		helmNames := names("helm", o.n)
		logf("Helm: one helm install per tenant, %d at a time", o.helmParallel)
		res.HelmVersion = o.helmVersion
		// Helm keeps its releases in one namespace of their own.
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench-helm"}}); err != nil {
			return err
		}
		m, err := startMeter(o, "")
		if err != nil {
			return err
		}
		if err := helmInstalls(ctx, helm, chart, env.Kubeconfig, "bench-helm", floorTracker, helmNames, o.helmParallel); err != nil {
			return err
		}
		if err := floorTracker.waitAll(ctx, helmNames, 60*time.Minute); err != nil {
			return fmt.Errorf("helm: %w", err)
		}
		h := floorTracker.result(helmNames)
		if err := m.stop(&h); err != nil {
			return err
		}
		res.Helm = &h
		logf("Helm: all %d Available in %.1fs (p50 %.1fs, p99 %.1fs)", o.n, h.AllReadySeconds, h.P50Seconds, h.P99Seconds)
	}
	res.Machine.LoadAfter = loadAverage()
	res.evaluate()
	if !filepath.IsAbs(o.out) {
		o.out = filepath.Join(root, o.out)
	}
	if err := res.write(o.out); err != nil {
		return err
	}
	logf("Wrote %s", filepath.Join(o.out, "results.json"))
	fmt.Println(res.markdown())
	return nil
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}

func commandLine(n int) string {
	if n != 1000 {
		return fmt.Sprintf("N=%d make bench", n)
	}
	return "make bench"
}

func loadAverage() string {
	out, err := exec.Command("uptime").Output()
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(out))
	if i := strings.Index(s, "load average:"); i >= 0 {
		return strings.TrimSpace(s[i+len("load average:"):])
	}
	return s
}

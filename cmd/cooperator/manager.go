package main

import (
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"cooperator.dev/cooperator/controllers"
	"cooperator.dev/cooperator/internal/dns"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/webhook"
)

func runManager(args []string) error {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	var (
		metricsAddr   = fs.String("metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 turns it off.")
		probeAddr     = fs.String("health-probe-bind-address", ":8081", "Address of the health and readiness probes.")
		leaderElect   = fs.Bool("leader-elect", false, "Elect a leader, so that only one replica reconciles.")
		leaderNS      = fs.String("leader-election-namespace", "", "Namespace of the leader election Lease; default: the operator's own namespace.")
		ingressNS     = fs.String("ingress-namespace", "ingress-nginx", "Namespace of the ingress controller, whose pods may reach coop pods.")
		dnsNS         = fs.String("dns-namespace", "kube-system", "Namespace of the cluster DNS, which coop pods may reach.")
		databaseCIDRs = fs.String("database-cidrs", "", "Comma-separated networks of the shared database servers, which coop pods may reach on port 5432.")
		cnpgNS        = fs.String("cnpg-namespace", "cnpg-system", "Namespace of the CloudNativePG operator, which manages coops' dedicated databases.")
		baseDomain    = fs.String("base-domain", "", "Apps get the hostname <app>.<coop>.<base-domain>; empty: apps are not exposed.")
		ingressClass  = fs.String("ingress-class", "", "IngressClass of app Ingresses; empty: the cluster's default.")
		clusterIssuer = fs.String("cluster-issuer", "", "cert-manager ClusterIssuer for app certificates; empty: no certificates are asked for.")
		gateway       = fs.String("gateway", "", "namespace/name of a Gateway API Gateway: apps get HTTPRoutes attached to it instead of Ingresses, and TLS is the Gateway's.")
		wildcardTLS   = fs.Bool("wildcard-tls", false, "Apps get the hostname <app>-<coop>.<base-domain>, served under one *.<base-domain> certificate held by the ingress controller or Gateway; only custom domains get certificates of their own.")
		dnsResolver   = fs.String("dns-resolver", "", "host:port of the DNS resolver that checks custom domains' TXT records; default: the first of /etc/resolv.conf.")
		recheck       = fs.Duration("domain-recheck-interval", 10*time.Minute, "How often verified custom domains are checked again.")
		qps           = fs.Int("kube-api-qps", 500, "Requests per second the operator may send to the API server.")
		burst         = fs.Int("kube-api-burst", 1000, "Requests the operator may send at once above kube-api-qps.")
		concurrency   = fs.Int("max-concurrent-reconciles", 32, "How many cooperatives are reconciled at once.")
		renders       = fs.Int("max-concurrent-renders", 0, "How many app renders (kustomize) run at once; 0: as many as the cores the process may use (GOMAXPROCS).")
		pprofAddr     = fs.String("pprof-bind-address", "", "Address of Go's pprof endpoints (/debug/pprof/), for profiling; empty turns them off.")
		namespace     = fs.String("namespace", os.Getenv("POD_NAMESPACE"), "The operator's namespace, where coops' backups run ($POD_NAMESPACE).")
		runnerImage   = fs.String("runner-image", os.Getenv("RUNNER_IMAGE"), "Image of the backup runner: the operator's own image ($RUNNER_IMAGE).")
		webhookPort   = fs.Int("webhook-port", 0, "Port of the admission webhooks' HTTPS server; 0 serves no webhooks.")
		webhookCerts  = fs.String("webhook-cert-dir", "", "Folder holding tls.crt and tls.key of the webhook server; default: controller-runtime's.")
		certSecret    = fs.String("webhook-cert-secret", "", "Secret in the operator's namespace, mounted at --webhook-cert-dir, in which the operator makes and rotates a self-signed CA and the webhook server's certificate; empty: another party (cert-manager) writes the certificate.")
		certDNSNames  = fs.String("webhook-dns-names", "", "Comma-separated DNS names of the webhook server's certificate, with --webhook-cert-secret; the first is the one the API server dials, <service>.<namespace>.svc.")
		validatingWH  = fs.String("webhook-validating-configuration", "cooperator-validating", "ValidatingWebhookConfiguration whose caBundle the operator keeps, with --webhook-cert-secret.")
		mutatingWH    = fs.String("webhook-mutating-configuration", "cooperator-mutating", "MutatingWebhookConfiguration whose caBundle the operator keeps, with --webhook-cert-secret.")
	)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	// The heap is mostly the caches, which live as long as the process: a
	// collection at half again the live heap, not twice it, keeps the peak
	// down for a little more CPU. GOGC, when set, wins.
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(controllers.GCPercent)
	}
	// A soft memory limit below the container's: the garbage collector
	// works harder near it instead of letting the heap double, and the pod
	// is not killed for garbage. GOMEMLIMIT, when set, wins.
	if limit, err := memlimit.Set(memlimit.WithRatio(controllers.MemoryLimitRatio), memlimit.WithProvider(memlimit.FromCgroup)); err != nil {
		ctrl.Log.WithName("setup").Info("No soft memory limit", "reason", err.Error())
	} else if limit < math.MaxInt64 {
		ctrl.Log.WithName("setup").Info("Soft memory limit", "bytes", limit)
	}

	cidrs, err := parseCIDRs(*databaseCIDRs)
	if err != nil {
		return fmt.Errorf("--database-cidrs: %w", err)
	}

	gw, err := parseGateway(*gateway)
	if err != nil {
		return fmt.Errorf("--gateway: %w", err)
	}
	if *wildcardTLS && *baseDomain == "" {
		return fmt.Errorf("--wildcard-tls: needs --base-domain, the domain the wildcard certificate covers")
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("while loading the kubeconfig: %w", err)
	}
	// Set on purpose: client-go's defaults (5 and 10) throttle a
	// thousand coops, and so did 100: a coop costs about 20 writes, and
	// at 100 per second a thousand coops wait more than three minutes on
	// the client alone (docs/performance.md, Scale). The API server's
	// priority and fairness protects it; this limit only caps a runaway loop.
	cfg.QPS, cfg.Burst = float32(*qps), *burst
	resolver := *dnsResolver
	if resolver == "" {
		if resolver, err = dns.SystemResolver(); err != nil {
			// Custom domains then report DNSUnavailable; nothing else needs DNS.
			ctrl.Log.WithName("setup").Error(err, "No DNS resolver: set --dns-resolver to verify custom domains")
		}
	}
	cnpg, err := controllers.Serves(cfg, controllers.CNPGCluster)
	if err != nil {
		return err
	}
	cnpgDatabase, err := controllers.Serves(cfg, controllers.CNPGDatabase)
	if err != nil {
		return err
	}
	certManager, err := controllers.Serves(cfg, controllers.CertManagerCertificate)
	if err != nil {
		return err
	}
	if gw != nil {
		served, err := controllers.Serves(cfg, specs.HTTPRoute)
		if err != nil {
			return err
		}
		if !served {
			return fmt.Errorf("--gateway: the API server does not serve %s: install the Gateway API CRDs", specs.HTTPRoute.GroupVersion().WithResource("httproutes"))
		}
	}
	config := controllers.Config{
		Specs: specs.Options{
			IngressNamespace:  *ingressNS,
			DNSNamespace:      *dnsNS,
			DatabaseCIDRs:     cidrs,
			CNPGNamespace:     *cnpgNS,
			BaseDomain:        *baseDomain,
			OperatorNamespace: *namespace,
			RunnerImage:       *runnerImage,
			Expose: specs.ExposeOptions{IngressClass: *ingressClass, ClusterIssuer: *clusterIssuer,
				Gateway: gw, WildcardTLS: *wildcardTLS},
		},
		CNPGInstalled:           cnpg,
		CNPGDatabaseInstalled:   cnpgDatabase,
		CertManagerInstalled:    certManager,
		DNS:                     dns.Verifier{Resolver: resolver},
		DomainRecheck:           *recheck,
		MaxConcurrentReconciles: *concurrency,
		MaxConcurrentRenders:    *renders,
		Webhooks:                *webhookPort != 0,
	}
	if *certSecret != "" {
		if *webhookPort == 0 || *webhookCerts == "" || *namespace == "" || *certDNSNames == "" {
			return fmt.Errorf("--webhook-cert-secret: needs --webhook-port, --webhook-cert-dir (where the Secret is mounted), --namespace and --webhook-dns-names")
		}
		config.WebhookCerts = &webhook.Certs{Namespace: *namespace, Secret: *certSecret, CertDir: *webhookCerts,
			DNSNames: strings.Split(*certDNSNames, ","), Validating: *validatingWH, Mutating: *mutatingWH}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  controllers.Scheme,
		Cache:                   controllers.CacheOptions(config),
		Client:                  controllers.ClientOptions(),
		Controller:              controllers.ControllerConfig(),
		Metrics:                 metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress:  *probeAddr,
		PprofBindAddress:        *pprofAddr,
		LeaderElection:          *leaderElect,
		LeaderElectionID:        "cooperator.dev",
		LeaderElectionNamespace: *leaderNS,
		WebhookServer:           ctrlwebhook.NewServer(ctrlwebhook.Options{Port: *webhookPort, CertDir: *webhookCerts}),
	})
	if err != nil {
		return fmt.Errorf("while creating the manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := controllers.Setup(ctx, mgr, config); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("Starting manager")
	return mgr.Start(ctx)
}

// parseGateway reads namespace/name.
func parseGateway(s string) (*specs.GatewayRef, error) {
	if s == "" {
		return nil, nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("%q is not namespace/name", s)
	}
	return &specs.GatewayRef{Namespace: ns, Name: name}, nil
}

// parseCIDRs reads a comma-separated list of networks.
func parseCIDRs(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if _, _, err := net.ParseCIDR(p); err != nil {
			return nil, fmt.Errorf("%q is not a network in CIDR notation", p)
		}
		out = append(out, p)
	}
	return out, nil
}

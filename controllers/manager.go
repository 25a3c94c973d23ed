package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unique"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/dns"
	"cooperator.dev/cooperator/internal/metrics"
	"cooperator.dev/cooperator/internal/postgres"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/ssa"
	"cooperator.dev/cooperator/internal/webhook"
)

// MemoryLimitRatio is the share of the container's memory limit that the
// manager's Go heap may fill before the garbage collector runs hard; the
// rest is for the binary's mapped pages, stacks and headroom.
const MemoryLimitRatio = 0.8

// GCPercent is the manager's GOGC unless the environment sets one.
const GCPercent = 50

// Scheme knows every kind the operator reads or writes.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(v1alpha1.AddToScheme(Scheme))
}

// Config is what the operator is told at start.
type Config struct {
	Specs specs.Options
	// CNPGInstalled says whether CloudNativePG's Cluster kind is served;
	// see Serves.
	CNPGInstalled bool
	// CNPGDatabaseInstalled says whether CloudNativePG's Database kind
	// (1.25 and later) is served, which drills of dedicated coops need.
	CNPGDatabaseInstalled bool
	// CertManagerInstalled says whether cert-manager's Certificate kind is served.
	CertManagerInstalled bool
	// DNS checks custom domains' TXT records.
	DNS dns.Verifier
	// DomainRecheck is how often custom domains are checked again.
	DomainRecheck time.Duration
	// MaxConcurrentReconciles is how many coops are reconciled at once.
	MaxConcurrentReconciles int
	// MaxConcurrentRenders is how many kustomize renders run at once; 0:
	// as many as Go's GOMAXPROCS.
	MaxConcurrentRenders int
	// Webhooks serves the admission webhooks from the manager's webhook server.
	Webhooks bool
	// WebhookCerts, when set, has the operator make and rotate the webhook
	// server's certificate.
	WebhookCerts *webhook.Certs
}

// CacheOptions keep only the operator's own children in memory: a cluster
// with many unrelated objects costs the operator nothing, and managedFields
// of other managers are dropped.
func CacheOptions(cfg Config) cache.Options {
	// Everything is selected by the operator's label unless said here: no
	// cluster-wide Secret or Pod informer, whatever kind an app brings.
	managed := labels.SelectorFromSet(labels.Set{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue})
	everything := cache.ByObject{Label: labels.Everything()}
	return cache.Options{
		DefaultLabelSelector: managed,
		ByObject: map[client.Object]cache.ByObject{
			&v1alpha1.Cooperative{}: everything, &v1alpha1.Plan{}: everything,
			&v1alpha1.DatabaseServer{}: everything, &v1alpha1.Blueprint{}: everything,
			&v1alpha1.DomainClaim{}: everything, &v1alpha1.BackupStore{}: everything,
			&v1alpha1.Restore{}: everything,
		},
		DefaultTransform: compactCached,
	}
}

// compactCached is the cache's transform. Of the managedFields of cached
// objects it keeps only what the ssa package looks at (ssa.StripToWriters):
// which other managers wrote an object, and whether the operator made it by
// create. It also shares what repeats from object to object.
func compactCached(in any) (any, error) {
	if m, ok := in.(metav1.Object); ok {
		ssa.StripToWriters(m)
		if _, isUnstructured := in.(runtime.Unstructured); !isUnstructured {
			shareStrings(m)
		}
	}
	return in, nil
}

// shareStrings makes the strings of a cached object's metadata that repeat
// across objects point to one copy: decoding gives every object its own.
// Every coop's children have the same names, labels, annotation keys and
// owner in their namespace, which is a third of the metadata the cache
// holds; objects with the same labels share one map of them. Strings seen
// once (uid, resourceVersion, annotation values) are left alone.
// Unstructured objects keep their metadata in nested maps, which a Set would
// copy; they are left alone too.
func shareStrings(m metav1.Object) {
	m.SetNamespace(shared(m.GetNamespace()))
	m.SetName(shared(m.GetName()))
	if labels := m.GetLabels(); len(labels) > 0 {
		m.SetLabels(labelSets.share(labels))
	}
	if annotations := m.GetAnnotations(); len(annotations) > 0 {
		same := make(map[string]string, len(annotations))
		for k, v := range annotations {
			same[shared(k)] = v
		}
		m.SetAnnotations(same)
	}
	owners := m.GetOwnerReferences()
	for i := range owners {
		o := &owners[i]
		o.APIVersion, o.Kind, o.Name = shared(o.APIVersion), shared(o.Kind), shared(o.Name)
		o.UID = types.UID(shared(string(o.UID)))
	}
	fields := m.GetManagedFields()
	for i := range fields {
		e := &fields[i]
		e.Manager, e.Operation, e.Subresource = shared(e.Manager), metav1.ManagedFieldsOperationType(shared(string(e.Operation))), shared(e.Subresource)
	}
}

// labelSets hands out one map per set of labels: a coop's children carry
// the same few labels, and a small map costs more than its strings. Cached
// objects are never changed in place (the cache hands out deep copies), so
// they can share a map.
var labelSets sharedMaps

// maxSharedMaps bounds the maps kept for sharing; past it, the table starts
// over. Objects keep the maps they have.
const maxSharedMaps = 4096

type sharedMaps struct {
	mu   sync.Mutex
	maps map[string]map[string]string
}

// share returns the map kept for m's entries, keeping a copy of m when there
// is none.
func (t *sharedMaps) share(m map[string]string) map[string]string {
	var key strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		key.WriteString(k)
		key.WriteByte(0)
		key.WriteString(m[k])
		key.WriteByte(0)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if same, ok := t.maps[key.String()]; ok {
		return same
	}
	if t.maps == nil || len(t.maps) >= maxSharedMaps {
		t.maps = make(map[string]map[string]string, maxSharedMaps)
	}
	same := make(map[string]string, len(m))
	for k, v := range m {
		same[shared(k)] = shared(v)
	}
	t.maps[key.String()] = same
	return same
}

// shared is the one copy of s; copies no object uses any more are freed.
func shared(s string) string {
	if s == "" {
		return s
	}
	return unique.Make(s).Value()
}

// ControllerConfig turns controller-runtime's priority queue off: with it,
// a manager stopping while many coops are queued was seen to deadlock (its
// ready-items loop holds the queue's lock while it hands an item to workers
// that have already stopped), so the operator never finished shutting down.
func ControllerConfig() config.Controller {
	return config.Controller{UsePriorityQueue: ptr.To(false)}
}

// ClientOptions read unstructured objects (app workloads, CloudNativePG
// Clusters) from the cache too, so a steady reconcile reads nothing from the
// API server.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{Unstructured: true}}
}

// Setup registers every reconciler with the manager.
func Setup(ctx context.Context, mgr ctrl.Manager, cfg Config) error {
	if cfg.MaxConcurrentReconciles <= 0 {
		cfg.MaxConcurrentReconciles = 4
	}
	servers := &postgres.Servers{}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		servers.CloseAll()
		return nil
	})); err != nil {
		return err
	}
	// Apps' objects are rendered unstructured; read typed, they share the
	// typed informers and take less memory.
	c := ssa.TypedReads(mgr.GetClient())
	coops := &CooperativeReconciler{
		Client:                  c,
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("cooperator"),
		Options:                 cfg.Specs,
		Servers:                 servers,
		CNPGInstalled:           cfg.CNPGInstalled,
		CNPGDatabaseInstalled:   cfg.CNPGDatabaseInstalled,
		CertManagerInstalled:    cfg.CertManagerInstalled,
		DNS:                     cfg.DNS,
		DomainRecheck:           cfg.DomainRecheck,
		MaxConcurrentReconciles: cfg.MaxConcurrentReconciles,
		MaxConcurrentRenders:    cfg.MaxConcurrentRenders,
	}
	if err := coops.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("while setting up the Cooperative controller: %w", err)
	}
	dbServers := &DatabaseServerReconciler{Client: c, APIReader: mgr.GetAPIReader(), Servers: servers}
	if err := dbServers.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("while setting up the DatabaseServer controller: %w", err)
	}
	if err := (&BlueprintReconciler{Client: c}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("while setting up the Blueprint controller: %w", err)
	}
	if err := (&BackupStoreReconciler{Client: c, APIReader: mgr.GetAPIReader()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("while setting up the BackupStore controller: %w", err)
	}
	restores := &RestoreReconciler{Client: c, APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("cooperator"), Options: cfg.Specs}
	if err := restores.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("while setting up the Restore controller: %w", err)
	}
	// Per-coop metrics, read from the cache at scrape time.
	if err := metrics.Register(mgr.GetCache()); err != nil {
		return fmt.Errorf("while registering the cooperatives' metrics: %w", err)
	}
	if cfg.Webhooks {
		if err := webhook.Setup(mgr, webhook.Options{BaseDomain: cfg.Specs.BaseDomain, Certs: cfg.WebhookCerts}); err != nil {
			return err
		}
	}
	return nil
}

// Kinds the operator uses only when they are installed. Installing one later
// needs an operator restart.
var (
	CNPGCluster            = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"}
	CNPGDatabase           = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Database"}
	CertManagerCertificate = schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}
)

// Serves says whether the API server serves a kind.
func Serves(cfg *rest.Config, gvk schema.GroupVersionKind) (bool, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false, err
	}
	resources, err := dc.ServerResourcesForGroupVersion(gvk.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("while looking for %s: %w", gvk.Kind, err)
	}
	for _, r := range resources.APIResources {
		if r.Kind == gvk.Kind {
			return true, nil
		}
	}
	return false, nil
}

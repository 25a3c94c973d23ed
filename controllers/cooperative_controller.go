// Package controllers holds one reconciler per kind of the cooperator.dev API.
package controllers

import (
	"context"
	"errors"
	"runtime"
	"time"

	"golang.org/x/time/rate"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/blueprint"
	"cooperator.dev/cooperator/internal/dns"
	"cooperator.dev/cooperator/internal/postgres"
	"cooperator.dev/cooperator/internal/specs"
)

// CooperativeReconciler turns a Cooperative into its tenant stack.
type CooperativeReconciler struct {
	client.Client
	// APIReader reads past the cache, for objects the cache does not select
	// (a namespace of the coop's name that is not the coop's).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Options   specs.Options
	// Servers holds the admin connections to the shared database servers,
	// opened by the DatabaseServer controller.
	Servers *postgres.Servers
	// CNPGInstalled says whether the CloudNativePG Cluster kind is served.
	CNPGInstalled bool
	// CNPGDatabaseInstalled says whether the CloudNativePG Database kind is served.
	CNPGDatabaseInstalled bool
	// CertManagerInstalled says whether cert-manager's Certificate kind is served.
	CertManagerInstalled bool
	// DNS checks the TXT records of custom domains.
	DNS dns.Verifier
	// DomainRecheck is how often verified domains are checked again.
	DomainRecheck time.Duration
	// MaxConcurrentReconciles is how many coops are reconciled at once.
	MaxConcurrentReconciles int
	// MaxConcurrentRenders is how many kustomize renders run at once; 0:
	// as many as Go's GOMAXPROCS.
	MaxConcurrentRenders int

	placer placer
	// renders keeps each app's last render, so a coop reconciled again
	// with nothing changed does not run kustomize.
	renders blueprint.Renders
	// steps holds back a new coop's next waiting step for a moment.
	steps heldSteps
	// written is each coop's status as last written, until the cache has it.
	written statusWrites
}

// scope carries what one reconcile of one coop has observed so far.
type scope struct {
	coop *v1alpha1.Cooperative
	// original is the coop as it was read, for patches.
	original *v1alpha1.Cooperative
	// plan is set by resolvePlan.
	plan *v1alpha1.Plan
	// exposures is set by reconcileApps: the apps that serve HTTP.
	exposures []exposure
	// connection is set by reconcileDatabase once the coop's database is
	// ready, on a shared server or in its own cluster: how the coop's role
	// reaches its databases, with the password the server has.
	connection *specs.Connection
}

// exposure is an app that serves HTTP, and where.
type exposure struct {
	app, service string
	port         int32
	// hosts are the platform's hostnames of the app; domains the coop's own.
	hosts, domains []string
}

type phaseFunc func(ctx context.Context, s *scope) (ctrl.Result, error)

// +kubebuilder:rbac:groups=cooperator.dev,resources=cooperatives,verbs=get;list;watch
// +kubebuilder:rbac:groups=cooperator.dev,resources=cooperatives/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=cooperator.dev,resources=cooperatives/finalizers,verbs=update
// +kubebuilder:rbac:groups=cooperator.dev,resources=plans,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;update;patch;delete

// Reconcile runs the phases of a coop in order and writes its status once.
func (r *CooperativeReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	coop := &v1alpha1.Cooperative{}
	if err := r.Get(ctx, req.NamespacedName, coop); err != nil {
		if apierrors.IsNotFound(err) {
			r.steps.forget(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	coop = r.written.newest(coop)
	s := &scope{coop: coop, original: coop.DeepCopy()}
	defer func() {
		wait, err := r.finalizeStatus(ctx, s, retErr)
		if err != nil {
			retErr = errors.Join(retErr, err)
		}
		if wait > 0 && retErr == nil && (result.RequeueAfter == 0 || wait < result.RequeueAfter) {
			result.RequeueAfter = wait
		}
	}()

	if !coop.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, s)
	}

	return runPhases(ctx, s, []phaseFunc{
		r.resolvePlan,
		r.reconcileNamespace,
		r.reconcileDatabase,
		// Backups need only the database: a failing app must not stop them.
		r.reconcileBackups,
		r.reconcileApps,
		r.reconcileDomains,
	})
}

// runPhases runs phases in order and stops at the first error; a phase that
// waits on the outside world asks for a requeue, and the soonest wins.
func runPhases(ctx context.Context, s *scope, phases []phaseFunc) (ctrl.Result, error) {
	var result ctrl.Result
	for _, phase := range phases {
		res, err := phase(ctx, s)
		if err != nil {
			return ctrl.Result{}, err
		}
		if res.RequeueAfter > 0 && (result.RequeueAfter == 0 || res.RequeueAfter < result.RequeueAfter) {
			result.RequeueAfter = res.RequeueAfter
		}
	}
	return result, nil
}

const (
	planIndex      = "spec.plan"
	serverIndex    = "metadata.annotations.database-server"
	blueprintIndex = "spec.apps.blueprint"
	domainIndex    = "spec.apps.domains"
	storeIndex     = "spec.backup.store"
)

// SetupWithManager registers the reconciler. Children are watched so that a
// change made by hand is put back; Plans are watched so that a plan change
// reaches every coop on it, and a coop waiting for its plan starts when it
// appears.
func (r *CooperativeReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	renders := r.MaxConcurrentRenders
	if renders <= 0 {
		renders = runtime.GOMAXPROCS(0)
	}
	r.renders.Bound(renders)
	r.written.memory.For = statusMemory
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Cooperative{}, planIndex, func(o client.Object) []string {
		return []string{o.(*v1alpha1.Cooperative).Spec.Plan}
	}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Cooperative{}, serverIndex, func(o client.Object) []string {
		return []string{o.GetAnnotations()[DatabaseServerAnnotation]}
	}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Cooperative{}, blueprintIndex, func(o client.Object) []string {
		var names []string
		for _, a := range o.(*v1alpha1.Cooperative).Spec.Apps {
			names = append(names, a.Blueprint)
		}
		return names
	}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Cooperative{}, domainIndex, func(o client.Object) []string {
		coop := o.(*v1alpha1.Cooperative)
		var hosts []string
		for _, a := range coop.Spec.Apps {
			hosts = append(hosts, a.Domains...)
			if r.Options.Expose.WildcardTLS {
				// Platform hostnames are claimed too: a coop waiting for
				// one wakes when it is released.
				hosts = append(hosts, specs.AppHostname(coop, a.Name, r.Options))
			}
		}
		return hosts
	}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Cooperative{}, storeIndex, func(o client.Object) []string {
		return []string{o.(*v1alpha1.Cooperative).Spec.Backup.Store}
	}); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		// Annotations carry requests such as a password rotation.
		For(&v1alpha1.Cooperative{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		// The stack's kinds; those applied with ssa.ApplyHashed are
		// cached as metadata only.
		Watches(&corev1.Namespace{}, ownedByCooperative, builder.OnlyMetadata).
		Watches(&corev1.ResourceQuota{}, ownedByCooperative).
		Watches(&corev1.LimitRange{}, ownedByCooperative, builder.OnlyMetadata).
		Watches(&networkingv1.NetworkPolicy{}, ownedByCooperative, builder.OnlyMetadata).
		Watches(&rbacv1.RoleBinding{}, ownedByCooperative, builder.OnlyMetadata).
		Watches(&rbacv1.ClusterRole{}, ownedByCooperative, builder.OnlyMetadata).
		Watches(&rbacv1.ClusterRoleBinding{}, ownedByCooperative, builder.OnlyMetadata).
		Watches(&corev1.Secret{}, ownedByCooperative).
		Watches(&corev1.PersistentVolumeClaim{}, ownedByCooperative).
		Watches(&networkingv1.Ingress{}, ownedByCooperative).
		Watches(&batchv1.CronJob{}, ownedByCooperative).
		Watches(&appsv1.Deployment{}, ownedByCooperative).
		Watches(&appsv1.StatefulSet{}, ownedByCooperative).
		Watches(&batchv1.Job{}, ownedByCooperative).
		Watches(&v1alpha1.Blueprint{}, handler.EnqueueRequestsFromMapFunc(r.cooperativesBy(blueprintIndex))).
		// A released claim lets a coop waiting for that hostname take it.
		Watches(&v1alpha1.DomainClaim{}, handler.EnqueueRequestsFromMapFunc(r.cooperativesBy(domainIndex)),
			builder.WithPredicates(predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		Watches(&v1alpha1.Plan{}, handler.EnqueueRequestsFromMapFunc(r.cooperativesBy(planIndex))).
		Watches(&v1alpha1.DatabaseServer{}, handler.EnqueueRequestsFromMapFunc(r.cooperativesOnServer),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, readyChanged{}))).
		Watches(&v1alpha1.BackupStore{}, handler.EnqueueRequestsFromMapFunc(r.cooperativesOfStore),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, readyChanged{}))).
		// A Restore that starts or stops holding the coop's apps at zero.
		Watches(&v1alpha1.Restore{}, handler.EnqueueRequestsFromMapFunc(coopOfRestore), builder.WithPredicates(restoreHoldChanged{})).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: r.MaxConcurrentReconciles,
			// A server that is down is tried again with backoff, at most
			// about once a minute per coop once it has been down a while.
			RateLimiter: workqueue.NewTypedMaxOfRateLimiter(
				workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](500*time.Millisecond, time.Minute),
				&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(50), 300)},
			),
		}).
		Named("cooperative")
	if r.CNPGInstalled {
		b = b.Watches(specs.Cluster(&v1alpha1.Cooperative{}, &v1alpha1.Plan{}), ownedByCooperative)
	}
	if r.CNPGDatabaseInstalled {
		b = b.Watches(specs.DrillDatabase(&v1alpha1.Cooperative{}), ownedByCooperative)
	}
	if r.CertManagerInstalled {
		b = b.Watches(specs.AppCertificate(&v1alpha1.Cooperative{}, "", nil, ""), ownedByCooperative)
	}
	if r.Options.Expose.Gateway != nil {
		b = b.Watches(specs.AppHTTPRoute(&v1alpha1.Cooperative{}, "", "", 0, nil, specs.GatewayRef{}), ownedByCooperative)
	}
	if err := r.watchStatusWrites(ctx, mgr); err != nil {
		return err
	}
	return b.Complete(r)
}

// ownedByCooperative queues the Cooperative that is an object's
// controller, as builder.Owns does, but without asking the REST mapper for
// the owner's scope on every event: a Cooperative is cluster-scoped, and
// those lookups were a tenth of what the operator allocated while creating
// a thousand coops (docs/performance.md).
var ownedByCooperative = handler.EnqueueRequestsFromMapFunc(owningCooperative)

// owningCooperative is the Cooperative that controls obj, if one does.
func owningCooperative(_ context.Context, obj client.Object) []reconcile.Request {
	ref := metav1.GetControllerOfNoCopy(obj)
	if ref == nil || ref.Kind != v1alpha1.CooperativeKind {
		return nil
	}
	if gv, err := schema.ParseGroupVersion(ref.APIVersion); err != nil || gv.Group != v1alpha1.GroupVersion.Group {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: ref.Name}}}
}

// watchStatusWrites lets go of each status the operator wrote once the
// cache has moved past the version it was written on.
func (r *CooperativeReconciler) watchStatusWrites(ctx context.Context, mgr ctrl.Manager) error {
	informer, err := mgr.GetCache().GetInformer(ctx, &v1alpha1.Cooperative{})
	if err != nil {
		return err
	}
	_, err = informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) {
			if coop, ok := obj.(client.Object); ok {
				r.written.seen(coop.GetName(), coop.GetResourceVersion())
			}
		},
		DeleteFunc: func(obj any) {
			if tombstone, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tombstone.Obj
			}
			if coop, ok := obj.(client.Object); ok {
				r.written.forget(coop.GetName())
			}
		},
	})
	return err
}

// workload is an apps/v1 kind as unstructured: app objects are rendered and
// read as unstructured, so they share one informer.
func workload(kind string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: kind})
	return u
}

// cooperativesBy maps an object to the coops whose index holds its name:
// the coops on a plan, using a blueprint, wanting a domain.
func (r *CooperativeReconciler) cooperativesBy(index string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []ctrl.Request {
		return r.cooperativesWith(ctx, index, o.GetName())
	}
}

func (r *CooperativeReconciler) cooperativesWith(ctx context.Context, index, value string) []ctrl.Request {
	var coops v1alpha1.CooperativeList
	if err := r.List(ctx, &coops, client.MatchingFields{index: value}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing cooperatives", "index", index, "value", value)
		return nil
	}
	reqs := make([]ctrl.Request, 0, len(coops.Items))
	for _, c := range coops.Items {
		reqs = append(reqs, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&c)})
	}
	return reqs
}

// cooperativesOnServer wakes the coops on a server whose readiness changed,
// and the coops still waiting for a server.
func (r *CooperativeReconciler) cooperativesOnServer(ctx context.Context, server client.Object) []ctrl.Request {
	return append(r.cooperativesWith(ctx, serverIndex, server.GetName()), r.cooperativesWith(ctx, serverIndex, "")...)
}

// cooperativesOfStore wakes the coops that back up to a store: those that
// name it, and those whose plan does.
func (r *CooperativeReconciler) cooperativesOfStore(ctx context.Context, store client.Object) []ctrl.Request {
	reqs := r.cooperativesWith(ctx, storeIndex, store.GetName())
	var plans v1alpha1.PlanList
	if err := r.List(ctx, &plans); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing plans")
		return reqs
	}
	for _, p := range plans.Items {
		if p.Spec.Backup.Store == store.GetName() {
			reqs = append(reqs, r.cooperativesWith(ctx, planIndex, p.Name)...)
		}
	}
	return reqs
}

// readyChanged passes updates that turn a DatabaseServer or a BackupStore
// Ready or not Ready: the coops on it then have something to do.
type readyChanged struct {
	predicate.Funcs
}

func (readyChanged) Update(e event.UpdateEvent) bool {
	return isReady(e.ObjectOld) != isReady(e.ObjectNew)
}

func isReady(o client.Object) bool {
	var conditions []metav1.Condition
	switch o := o.(type) {
	case *v1alpha1.DatabaseServer:
		conditions = o.Status.Conditions
	case *v1alpha1.BackupStore:
		conditions = o.Status.Conditions
	}
	return meta.IsStatusConditionTrue(conditions, v1alpha1.ReadyCondition)
}

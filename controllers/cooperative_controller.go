// Package controllers holds one reconciler per kind of the cooperator.dev API.
package controllers

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"cooperator.dev/cooperator/api/v1alpha1"
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
	// MaxConcurrentReconciles is how many coops are reconciled at once.
	MaxConcurrentReconciles int
}

// scope carries what one reconcile of one coop has observed so far.
type scope struct {
	coop *v1alpha1.Cooperative
	// plan is set by resolvePlan.
	plan *v1alpha1.Plan
}

type phaseFunc func(ctx context.Context, s *scope) (ctrl.Result, error)

// +kubebuilder:rbac:groups=cooperator.dev,resources=cooperatives,verbs=get;list;watch
// +kubebuilder:rbac:groups=cooperator.dev,resources=cooperatives/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=cooperator.dev,resources=cooperatives/finalizers,verbs=update
// +kubebuilder:rbac:groups=cooperator.dev,resources=plans,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile runs the phases of a coop in order and writes its status once.
func (r *CooperativeReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	coop := &v1alpha1.Cooperative{}
	if err := r.Get(ctx, req.NamespacedName, coop); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	s := &scope{coop: coop}
	before := coop.DeepCopy()
	defer func() {
		if err := r.finalizeStatus(ctx, before, s, retErr); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	if !coop.DeletionTimestamp.IsZero() {
		// Every child has the coop as its controller owner: the garbage
		// collector removes them, and the namespace with all it holds.
		return ctrl.Result{}, nil
	}

	return runPhases(ctx, s, []phaseFunc{
		r.resolvePlan,
		r.reconcileNamespace,
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

const planIndex = "spec.plan"

// SetupWithManager registers the reconciler. Children are watched so that a
// change made by hand is put back; Plans are watched so that a plan change
// reaches every coop on it, and a coop waiting for its plan starts when it
// appears.
func (r *CooperativeReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Cooperative{}, planIndex, func(o client.Object) []string {
		return []string{o.(*v1alpha1.Cooperative).Spec.Plan}
	}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Cooperative{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.Namespace{}).
		Owns(&corev1.ResourceQuota{}).
		Owns(&corev1.LimitRange{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Owns(&rbacv1.Role{}).
		Owns(&rbacv1.RoleBinding{}).
		Watches(&v1alpha1.Plan{}, handler.EnqueueRequestsFromMapFunc(r.cooperativesOnPlan)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Named("cooperative").
		Complete(r)
}

func (r *CooperativeReconciler) cooperativesOnPlan(ctx context.Context, plan client.Object) []ctrl.Request {
	var coops v1alpha1.CooperativeList
	if err := r.List(ctx, &coops, client.MatchingFields{planIndex: plan.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing cooperatives on plan", "plan", plan.GetName())
		return nil
	}
	reqs := make([]ctrl.Request, 0, len(coops.Items))
	for _, c := range coops.Items {
		reqs = append(reqs, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&c)})
	}
	return reqs
}

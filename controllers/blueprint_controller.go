package controllers

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/blueprint"
)

// BlueprintReconciler renders every version of each catalog app with
// example values and reports on the Blueprint whether it passes the checks,
// before any coop picks it.
type BlueprintReconciler struct {
	client.Client
}

// +kubebuilder:rbac:groups=cooperator.dev,resources=blueprints,verbs=get;list;watch
// +kubebuilder:rbac:groups=cooperator.dev,resources=blueprints/status,verbs=get;update;patch

// Reconcile validates one Blueprint and writes its status when it changed.
func (r *BlueprintReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	bp := &v1alpha1.Blueprint{}
	if err := r.Get(ctx, req.NamespacedName, bp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := bp.DeepCopy()
	setBlueprintReady(bp, blueprint.Validate(bp))
	if equality.Semantic.DeepEqual(before.Status, bp.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Status().Patch(ctx, bp, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, fmt.Errorf("while writing status: %w", err)
	}
	return ctrl.Result{}, nil
}

// maxProblemsShown keeps the Ready message readable.
const maxProblemsShown = 5

// setBlueprintReady sets Ready from the problems Validate found.
func setBlueprintReady(bp *v1alpha1.Blueprint, problems []string) {
	ready := metav1.Condition{Type: v1alpha1.ReadyCondition, Status: metav1.ConditionTrue,
		Reason: v1alpha1.BlueprintValidReason, ObservedGeneration: bp.Generation,
		Message: fmt.Sprintf("%d versions render and pass the checks", len(bp.Spec.Versions))}
	if len(problems) > 0 {
		shown := problems
		if len(shown) > maxProblemsShown {
			shown = append(shown[:maxProblemsShown:maxProblemsShown], fmt.Sprintf("and %d more", len(problems)-maxProblemsShown))
		}
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.BlueprintChecksFailedReason, strings.Join(shown, "; ")
	}
	meta.SetStatusCondition(&bp.Status.Conditions, ready)
	bp.Status.ObservedGeneration = bp.Generation
}

// SetupWithManager registers the reconciler.
func (r *BlueprintReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Blueprint{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("blueprint").
		Complete(r)
}

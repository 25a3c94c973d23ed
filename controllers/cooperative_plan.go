package controllers

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// errPlanNotFound stops a coop until its plan exists; the Plan watch starts
// it again then.
var errPlanNotFound = errors.New("plan not found")

// resolvePlan finds the coop's Plan. Without one nothing is created.
func (r *CooperativeReconciler) resolvePlan(ctx context.Context, s *scope) (ctrl.Result, error) {
	plan := &v1alpha1.Plan{}
	key := client.ObjectKey{Name: s.coop.Spec.Plan}
	err := r.Get(ctx, key, plan)
	if apierrors.IsNotFound(err) {
		// A plan created just before its coops may not be cached yet; ask
		// the API server before calling the coop stalled.
		err = r.APIReader.Get(ctx, key, plan)
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, reconcile.TerminalError(errPlanNotFound)
		}
		return ctrl.Result{}, fmt.Errorf("while getting Plan %q: %w", s.coop.Spec.Plan, err)
	}
	s.plan = plan
	return ctrl.Result{}, nil
}

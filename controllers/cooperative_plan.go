package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// errPlanNotFound stops a coop until its plan exists; the Plan watch starts
// it again then.
var errPlanNotFound = reconcile.TerminalError(fmt.Errorf("plan not found"))

// resolvePlan finds the coop's Plan. Without one nothing is created.
func (r *CooperativeReconciler) resolvePlan(ctx context.Context, s *scope) (ctrl.Result, error) {
	plan := &v1alpha1.Plan{}
	if err := r.Get(ctx, client.ObjectKey{Name: s.coop.Spec.Plan}, plan); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, errPlanNotFound
		}
		return ctrl.Result{}, fmt.Errorf("while getting Plan %q: %w", s.coop.Spec.Plan, err)
	}
	s.plan = plan
	return ctrl.Result{}, nil
}

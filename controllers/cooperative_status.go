package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// partConditions are the conditions that Ready summarises, in the order the
// phases set them: the first that is not True explains why the coop is not ready.
// RestoreVerified is not one of them (see cooperative_drills.go).
var partConditions = []string{
	v1alpha1.NamespaceReadyCondition,
	v1alpha1.DatabaseReadyCondition,
	v1alpha1.AppsReadyCondition,
	v1alpha1.DomainsReadyCondition,
	v1alpha1.BackupsReadyCondition,
}

// finalizeStatus summarises the pass into Ready, Reconciling and Stalled,
// records transitions as events, and writes the status once, only when it
// changed.
func (r *CooperativeReconciler) finalizeStatus(ctx context.Context, s *scope, reconcileErr error) error {
	before := s.original
	summarize(s.coop, reconcileErr)
	r.recordTransition(before, s.coop)
	if equality.Semantic.DeepEqual(before.Status, s.coop.Status) {
		return nil
	}
	// A coop whose last finalizer went in this pass is gone.
	if err := r.Status().Patch(ctx, s.coop, client.MergeFrom(before)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("while writing status: %w", err)
	}
	return nil
}

// summarize sets Ready from the part conditions and the pass's error, sets
// Reconciling and Stalled as kstatus reads them, and bumps
// observedGeneration when the pass finished or cannot go on.
func summarize(coop *v1alpha1.Cooperative, reconcileErr error) {
	terminal := errors.Is(reconcileErr, reconcile.TerminalError(nil))
	ready := metav1.Condition{Type: v1alpha1.ReadyCondition, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReadyReason, Message: "Cooperative is ready"}

	switch {
	case !coop.DeletionTimestamp.IsZero():
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.DeletingReason, "Cooperative is being deleted"
	case errors.Is(reconcileErr, errPlanNotFound):
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.PlanNotFoundReason
		ready.Message = fmt.Sprintf("Plan %q does not exist; nothing is created until it does", coop.Spec.Plan)
	default:
		if part := firstNotTrue(coop); part != nil {
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, part.Reason, part.Message
		} else if reconcileErr != nil {
			ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReconcileErrorReason
			ready.Message = "Reconcile failed; retrying (see the operator's events and logs)"
		}
	}
	setCondition(coop, ready.Type, ready.Status, ready.Reason, ready.Message)

	switch {
	case ready.Status == metav1.ConditionTrue:
		coop.Status.Initialization = &v1alpha1.CooperativeInitialization{Provisioned: true}
		meta.RemoveStatusCondition(&coop.Status.Conditions, v1alpha1.ReconcilingCondition)
		meta.RemoveStatusCondition(&coop.Status.Conditions, v1alpha1.StalledCondition)
	case terminal:
		meta.RemoveStatusCondition(&coop.Status.Conditions, v1alpha1.ReconcilingCondition)
		setCondition(coop, v1alpha1.StalledCondition, metav1.ConditionTrue, ready.Reason, ready.Message)
	default:
		meta.RemoveStatusCondition(&coop.Status.Conditions, v1alpha1.StalledCondition)
		setCondition(coop, v1alpha1.ReconcilingCondition, metav1.ConditionTrue, v1alpha1.ProgressingReason, ready.Message)
	}

	if reconcileErr == nil || terminal {
		coop.Status.ObservedGeneration = coop.Generation
	}
}

// firstNotTrue is the first part condition that is missing or not True.
func firstNotTrue(coop *v1alpha1.Cooperative) *metav1.Condition {
	for _, t := range partConditions {
		c := meta.FindStatusCondition(coop.Status.Conditions, t)
		if c == nil {
			return &metav1.Condition{Type: t, Status: metav1.ConditionUnknown, Reason: v1alpha1.ProgressingReason,
				Message: fmt.Sprintf("Waiting for %s", t)}
		}
		if c.Status != metav1.ConditionTrue {
			return c
		}
	}
	return nil
}

// provisioned says whether the coop has been Ready before.
func provisioned(coop *v1alpha1.Cooperative) bool {
	return coop.Status.Initialization != nil && coop.Status.Initialization.Provisioned
}

// recordTransition emits an event when Ready changes, never on a pass that
// changed nothing.
func (r *CooperativeReconciler) recordTransition(before, after *v1alpha1.Cooperative) {
	old := meta.FindStatusCondition(before.Status.Conditions, v1alpha1.ReadyCondition)
	now := meta.FindStatusCondition(after.Status.Conditions, v1alpha1.ReadyCondition)
	if now == nil || (old != nil && old.Status == now.Status && old.Reason == now.Reason) {
		return
	}
	// A new coop on its way records nothing until its first Ready, however
	// many steps it passes (its database, then its apps' rollout): its
	// status says where it is, and an event per step would cost writes that
	// tell nobody anything. Failures are recorded from the first pass on.
	failed := meta.IsStatusConditionTrue(after.Status.Conditions, v1alpha1.StalledCondition) ||
		now.Reason == v1alpha1.ReconcileErrorReason || now.Reason == v1alpha1.PlanNotFoundReason
	if !provisioned(before) && now.Status != metav1.ConditionTrue && !failed {
		return
	}
	// Nor does its first Ready: status.initialization.provisioned and the
	// condition's time record it. Ready after a fall is recorded.
	if now.Status == metav1.ConditionTrue && !provisioned(before) {
		return
	}
	eventType := corev1.EventTypeWarning
	if now.Status == metav1.ConditionTrue || now.Reason == v1alpha1.ProgressingReason || now.Reason == v1alpha1.DeletingReason {
		eventType = corev1.EventTypeNormal
	}
	r.Recorder.Eventf(after, nil, eventType, now.Reason, "Reconcile", "%s", now.Message)
}

package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/recent"
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
// changed. It returns how long to wait before the next pass when it held a
// new coop's next waiting step back (see waitingStep).
func (r *CooperativeReconciler) finalizeStatus(ctx context.Context, s *scope, reconcileErr error) (time.Duration, error) {
	before := s.original
	summarize(s.coop, reconcileErr)
	if equality.Semantic.DeepEqual(before.Status, s.coop.Status) {
		r.steps.forget(s.coop.Name)
		return 0, nil
	}
	if waitingStep(before, s.coop) {
		if wait := r.steps.hold(s.coop.Name, time.Now()); wait > 0 {
			return wait, nil
		}
	}
	r.steps.forget(s.coop.Name)
	r.recordTransition(before, s.coop)
	// A coop whose last finalizer went in this pass is gone.
	if err := r.Status().Patch(ctx, s.coop, client.MergeFrom(before)); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("while writing status: %w", err)
	}
	r.written.record(before.ResourceVersion, s.coop)
	return 0, nil
}

// statusWrites remembers, by coop, the status the operator last wrote,
// until the cache has it. A pass that starts before then (a child's event
// comes first) reads the coop as it was before that write: it would find
// the status unwritten and write it again. Each entry is dropped as soon as
// the cache moves past the version the write was made on, and after 10 to
// 20 s in any case.
type statusWrites struct {
	memory recent.Memory[string, statusWrite]
}

// statusMemory is how long a status written is kept at least: a cache is
// behind by less.
const statusMemory = 10 * time.Second

type statusWrite struct {
	// from is the resourceVersion the status was written on.
	from string
	// coop is the API server's answer to the write.
	coop *v1alpha1.Cooperative
}

// record keeps written, the coop as the API server returned it, written on
// the version from.
func (w *statusWrites) record(from string, written *v1alpha1.Cooperative) {
	w.memory.Add(written.Name, statusWrite{from: from, coop: written.DeepCopy()}, time.Now())
}

// newest is cached, or the operator's own later write of it when the cache
// still holds the version that write was made on.
func (w *statusWrites) newest(cached *v1alpha1.Cooperative) *v1alpha1.Cooperative {
	if last, ok := w.memory.Get(cached.Name); ok && last.from == cached.ResourceVersion {
		return last.coop.DeepCopy()
	}
	return cached
}

// seen drops what is kept of the coop once the cache holds another version
// than the one the write was made on.
func (w *statusWrites) seen(name, resourceVersion string) {
	w.memory.ForgetIf(name, func(last statusWrite) bool { return last.from != resourceVersion })
}

// forget drops what is kept of the coop.
func (w *statusWrites) forget(name string) {
	w.memory.Forget(name)
}

// stepHold is how long a new coop's next waiting step must last before its
// status says so.
const stepHold = 5 * time.Second

// waitingReasons are the Ready reasons of a coop on its way with nothing
// wrong: its database or its apps are still coming up.
var waitingReasons = []string{v1alpha1.ProgressingReason, v1alpha1.ClusterNotReadyReason, v1alpha1.AppsProgressingReason}

// waitingStep says whether after differs from before only by the step a
// new coop waits on: it has never been Ready and is still on its way, and
// either no pass has written its status yet, or its status already says it
// is on its way and nothing but its conditions and its apps' readiness and
// messages changed. A new coop's first steps (its stack made, then its
// database up) are often followed, seconds later, by its Ready: holding
// such a step back a little saves a write, and one that lasts is still
// written (stepHold). Anything else is written at once: a failure, Ready,
// and, once a status is written, the database's place, an app's version,
// the generation observed.
func waitingStep(before, after *v1alpha1.Cooperative) bool {
	if provisioned(before) || !waiting(after) {
		return false
	}
	if meta.FindStatusCondition(before.Status.Conditions, v1alpha1.ReadyCondition) == nil {
		return true
	}
	if !waiting(before) {
		return false
	}
	mask := func(st *v1alpha1.CooperativeStatus) *v1alpha1.CooperativeStatus {
		out := st.DeepCopy()
		out.Conditions = nil
		for i := range out.Apps {
			out.Apps[i].Ready, out.Apps[i].Message = false, ""
		}
		return out
	}
	return equality.Semantic.DeepEqual(mask(&before.Status), mask(&after.Status))
}

// waiting says whether the coop's Ready condition says it is on its way.
func waiting(coop *v1alpha1.Cooperative) bool {
	ready := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.ReadyCondition)
	return ready != nil && ready.Status != metav1.ConditionTrue && slices.Contains(waitingReasons, ready.Reason) &&
		!meta.IsStatusConditionTrue(coop.Status.Conditions, v1alpha1.StalledCondition)
}

// heldSteps remembers, by coop, since when a waiting step has been held back.
// Kept in memory only: a restarted operator holds a step back once more.
type heldSteps struct {
	mu    sync.Mutex
	since map[string]time.Time
}

// hold returns how much longer the coop's step is to be held back at now:
// stepHold from the first pass that held it, then 0.
func (h *heldSteps) hold(coop string, now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	first, ok := h.since[coop]
	if !ok {
		if h.since == nil {
			h.since = map[string]time.Time{}
		}
		h.since[coop] = now
		return stepHold
	}
	return max(0, stepHold-now.Sub(first))
}

// forget drops what hold remembers of the coop.
func (h *heldSteps) forget(coop string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.since, coop)
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

package v1alpha1

// Condition types of a Cooperative. Ready summarises the others; Reconciling
// and Stalled follow kstatus so that tools such as kubectl wait and Flux read
// a coop's state without knowing this API.
const (
	// ReadyCondition is True when every part of the coop is ready.
	ReadyCondition = "Ready"
	// ReconcilingCondition is True while the operator is still working towards the spec.
	ReconcilingCondition = "Reconciling"
	// StalledCondition is True when the operator cannot progress without a change by a person.
	StalledCondition = "Stalled"
	// NamespaceReadyCondition is True when the namespace and its quota,
	// limits, network policies and access are applied.
	NamespaceReadyCondition = "NamespaceReady"
)

// Reasons of the Cooperative conditions.
const (
	// ReadyReason: every part is ready.
	ReadyReason = "Ready"
	// ProgressingReason: the operator is applying the spec.
	ProgressingReason = "Progressing"
	// PlanNotFoundReason: spec.plan names no Plan; nothing is created until it exists.
	PlanNotFoundReason = "PlanNotFound"
	// NamespaceAppliedReason: the namespace and its policies are applied.
	NamespaceAppliedReason = "Applied"
	// NamespaceApplyFailedReason: the API server refused part of the namespace.
	NamespaceApplyFailedReason = "ApplyFailed"
	// NamespaceTerminatingReason: an earlier namespace of the same name is still being deleted.
	NamespaceTerminatingReason = "NamespaceTerminating"
	// NamespaceOwnedElsewhereReason: a namespace of that name exists and is not this coop's.
	NamespaceOwnedElsewhereReason = "NamespaceOwnedElsewhere"
	// ReconcileErrorReason: a pass failed before any part could say why; it is retried with backoff.
	ReconcileErrorReason = "ReconcileError"
	// DeletingReason: the coop is being deleted.
	DeletingReason = "Deleting"
)

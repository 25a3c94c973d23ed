package v1alpha1

// RestoreFinalizer holds a Restore until the Jobs and the Secret it made in
// the operator's namespace are gone: owner references cannot cross
// namespaces, so the garbage collector does not reach them.
const RestoreFinalizer = "cooperator.dev/restore"

// RestoreLabel names, on the objects made for a Restore, the Restore; with
// CooperativeLabel, the coop whose namespace holds it.
const RestoreLabel = "cooperator.dev/restore"

// IsFinal says whether a Restore in this phase is done: it never runs again.
func (p RestorePhase) IsFinal() bool {
	return p == RestoreSucceeded || p == RestoreFailed
}

// HoldsApps says whether a Restore in this phase keeps its coop's apps
// scaled to zero.
func (p RestorePhase) HoldsApps() bool {
	return p == RestoreScalingDown || p == RestoreRestoring
}

package v1alpha1

import "strings"

// CooperativeKind is the kind of a Cooperative, as owner references name it.
const CooperativeKind = "Cooperative"

// NamespacePrefix starts the name of every coop's namespace.
const NamespacePrefix = "coop-"

// NamespaceName is the namespace that holds this coop's workloads.
func (c *Cooperative) NamespaceName() string {
	return NamespacePrefix + c.Name
}

// Labels shared by every object the operator creates for a coop.
const (
	// CooperativeLabel names the coop an object belongs to.
	CooperativeLabel = "cooperator.dev/cooperative"
	// AppLabel names the app of a coop an object belongs to. It is also in
	// the selectors of an app's workloads and Services, so that two apps of
	// one Blueprint in a coop never select each other's pods.
	AppLabel = "cooperator.dev/app"
	// ManagedByLabel marks the objects the operator manages; its caches select on it.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of ManagedByLabel.
	ManagedByValue = "cooperator"
)

// RotateDatabasePasswordAnnotation asks for a new database password: set it
// to any new value (a date, a ticket number) and the operator changes the
// password and the Secret once, recording the value in
// status.database.passwordRotation.
const RotateDatabasePasswordAnnotation = "cooperator.dev/rotate-database-password"

// DatabaseFinalizer guards a coop's database: on a shared server, which the
// garbage collector cannot reach, or in a dedicated cluster, which it would
// take with the coop's namespace.
const DatabaseFinalizer = "cooperator.dev/database"

// RetainedLabel marks a namespace kept, with the data in it, after its coop
// was deleted under deletionPolicy Retain. Its value is the coop's name.
const RetainedLabel = "cooperator.dev/retained"

// DatabaseName is the name of the coop's database and of its role on a
// shared server. Coop names are at most 58 characters, so it fits
// PostgreSQL's 63.
func (c *Cooperative) DatabaseName() string {
	return "coop_" + strings.ReplaceAll(c.Name, "-", "_")
}

// EffectiveDatabaseMode is the coop's database mode, or its plan's.
func (c *Cooperative) EffectiveDatabaseMode(plan *Plan) DatabaseMode {
	if c.Spec.Database.Mode != "" {
		return c.Spec.Database.Mode
	}
	if plan != nil && plan.Spec.Database.Mode != "" {
		return plan.Spec.Database.Mode
	}
	return DatabaseModeShared
}

// EffectiveBackupStore is the coop's backup store, or its plan's; "" when
// neither names one.
func (c *Cooperative) EffectiveBackupStore(plan *Plan) string {
	if c.Spec.Backup.Store != "" {
		return c.Spec.Backup.Store
	}
	return plan.Spec.Backup.Store
}

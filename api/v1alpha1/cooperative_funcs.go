package v1alpha1

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
	// ManagedByLabel marks the objects the operator manages; its caches select on it.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of ManagedByLabel.
	ManagedByValue = "cooperator"
)

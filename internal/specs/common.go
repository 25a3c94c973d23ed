package specs

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// Labels are put on every object the operator creates for a coop.
func Labels(coop *v1alpha1.Cooperative) map[string]string {
	return map[string]string{
		v1alpha1.ManagedByLabel:   v1alpha1.ManagedByValue,
		v1alpha1.CooperativeLabel: coop.Name,
	}
}

// OwnerReference makes the coop the controller of a child, so that deleting
// the coop lets the garbage collector remove the child.
func OwnerReference(coop *v1alpha1.Cooperative) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(v1alpha1.GroupVersion.String()).
		WithKind(v1alpha1.CooperativeKind).
		WithName(coop.Name).
		WithUID(coop.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// Options are the host-wide settings the builders need.
type Options struct {
	// IngressNamespace is where the ingress controller or gateway runs; its
	// pods may reach the coop's pods.
	IngressNamespace string
	// DNSNamespace is where the cluster DNS runs.
	DNSNamespace string
	// DatabaseCIDRs are the networks of the shared database servers that
	// coops may reach on the PostgreSQL port.
	DatabaseCIDRs []string
	// CNPGNamespace is where the CloudNativePG operator runs.
	CNPGNamespace string
	// BaseDomain gives every app the hostname <app>.<coop>.<BaseDomain>.
	BaseDomain string
	// Expose says how apps are exposed.
	Expose ExposeOptions
	// OperatorNamespace is where the operator runs, and where coops' backup
	// Jobs run: the store's keys never enter a coop's namespace, whose
	// admins can read every Secret and exec into every pod there.
	OperatorNamespace string
	// RunnerImage is the operator's image, which backup Jobs run.
	RunnerImage string
}

func resourceCount(n int32) *resource.Quantity {
	return resource.NewQuantity(int64(n), resource.DecimalSI)
}

package webhook

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// +kubebuilder:webhook:path=/mutate-cooperator-dev-v1alpha1-restore,mutating=true,failurePolicy=fail,sideEffects=None,groups=cooperator.dev,resources=restores,verbs=create,versions=v1alpha1,name=mrestore.cooperator.dev,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-cooperator-dev-v1alpha1-restore,mutating=false,failurePolicy=fail,sideEffects=None,groups=cooperator.dev,resources=restores,verbs=create,versions=v1alpha1,name=vrestore.cooperator.dev,admissionReviewVersions=v1

// RestoreValidator refuses a Restore that could never start: one outside
// a coop's namespace, or one reading the backups of a coop that does not
// exist. Whether the source allows the clone, and which backups it has,
// the Restore's status says.
type RestoreValidator struct {
	// Reader reads Cooperatives, from the manager's cache.
	Reader client.Reader
}

// SetupWithManager serves the webhook from the manager's webhook server.
func (v *RestoreValidator) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.Restore{}).WithDefaulter(v).WithValidator(v).Complete()
}

// Default names the source of an in-place Restore, the coop of its
// namespace, so that the stored Restore says whose backup it brings back.
func (v *RestoreValidator) Default(_ context.Context, r *v1alpha1.Restore) error {
	if coop, ok := strings.CutPrefix(r.Namespace, v1alpha1.NamespacePrefix); ok && r.Spec.Source == "" {
		r.Spec.Source = coop
	}
	return nil
}

// ValidateCreate checks a new Restore; its spec cannot change afterwards.
func (v *RestoreValidator) ValidateCreate(ctx context.Context, r *v1alpha1.Restore) (admission.Warnings, error) {
	var errs field.ErrorList
	coop, ok := strings.CutPrefix(r.Namespace, v1alpha1.NamespacePrefix)
	if !ok {
		coop = ""
	}
	exists, err := v.cooperativeExists(ctx, coop)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if !exists {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "namespace"), r.Namespace,
			"belongs to no Cooperative: create the Restore in the namespace of the coop to restore into, "+v1alpha1.NamespacePrefix+"<coop>"))
	}
	if src := r.Spec.Source; src != "" && src != coop {
		exists, err := v.cooperativeExists(ctx, src)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		if !exists {
			errs = append(errs, field.NotFound(field.NewPath("spec", "source"), src))
		}
	}
	if len(errs) == 0 {
		return nil, nil
	}
	return nil, apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("Restore").GroupKind(), r.Name, errs)
}

// ValidateUpdate lets updates through: the spec is immutable, and the
// finalizer must be able to go.
func (v *RestoreValidator) ValidateUpdate(context.Context, *v1alpha1.Restore, *v1alpha1.Restore) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete lets every deletion through.
func (v *RestoreValidator) ValidateDelete(context.Context, *v1alpha1.Restore) (admission.Warnings, error) {
	return nil, nil
}

func (v *RestoreValidator) cooperativeExists(ctx context.Context, name string) (bool, error) {
	if name == "" {
		return false, nil
	}
	err := v.Reader.Get(ctx, client.ObjectKey{Name: name}, &v1alpha1.Cooperative{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("while reading Cooperative %s: %w", name, err)
	}
	return true, nil
}

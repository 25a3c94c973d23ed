// Package webhook holds the operator's admission webhooks: they refuse at
// once, with the field and the reason, what the reconcilers would only
// report later on the object's status.
package webhook

import (
	"context"
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/specs"
)

// The API server calls these webhooks only when they have work: the
// defaulter on a create (the finalizer) or for custom domains, the validator
// for custom domains. A coop without them costs no call on an update, and
// one call, not two, on its create.
// +kubebuilder:webhook:path=/mutate-cooperator-dev-v1alpha1-cooperative,mutating=true,failurePolicy=fail,sideEffects=None,groups=cooperator.dev,resources=cooperatives,verbs=create;update,versions=v1alpha1,name=mcooperative.cooperator.dev,admissionReviewVersions=v1,patch=`{"matchConditions":[{"name":"creates-or-has-domains","expression":"request.operation == 'CREATE' || (has(object.spec.apps) && object.spec.apps.exists(a, has(a.domains) && size(a.domains) > 0))"}]}`
// +kubebuilder:webhook:path=/validate-cooperator-dev-v1alpha1-cooperative,mutating=false,failurePolicy=fail,sideEffects=None,groups=cooperator.dev,resources=cooperatives,verbs=create;update,versions=v1alpha1,name=vcooperative.cooperator.dev,admissionReviewVersions=v1,patch=`{"matchConditions":[{"name":"has-domains","expression":"has(object.spec.apps) && object.spec.apps.exists(a, has(a.domains) && size(a.domains) > 0)"}]}`

// CooperativeValidator refuses custom domains that the coop cannot have:
// held by another coop, listed by two of its apps, or under the platform's
// base domain outside the coop's own part of it. The DomainClaims stay the
// rule (two coops asking at the same moment both pass here, and one gets
// the claim); this check tells a coop at once, instead of on its status.
// Its defaulter normalizes domains and gives a new coop the database
// finalizer: deletionPolicy and admins[].kind are the schema's defaults, and
// the database mode follows the plan on purpose.
type CooperativeValidator struct {
	// Reader reads DomainClaims, from the manager's cache.
	Reader client.Reader
	// BaseDomain is the platform's domain, as the operator was told.
	BaseDomain string
}

// SetupWithManager serves the webhook from the manager's webhook server.
func (v *CooperativeValidator) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.Cooperative{}).WithDefaulter(v).WithValidator(v).Complete()
}

// Default writes custom domains as DNS compares them: lower case, without
// a final dot. Mutating webhooks run before the schema's rules, so
// "Shop.Example.org." is stored as "shop.example.org" instead of refused.
func (v *CooperativeValidator) Default(ctx context.Context, coop *v1alpha1.Cooperative) error {
	// Every coop gets a database to guard; set at creation, the finalizer
	// costs the operator no write. Never on an update: the operator removes
	// it when the coop goes.
	if req, err := admission.RequestFromContext(ctx); err == nil && req.Operation == admissionv1.Create {
		controllerutil.AddFinalizer(coop, v1alpha1.DatabaseFinalizer)
	}
	for i := range coop.Spec.Apps {
		for j, d := range coop.Spec.Apps[i].Domains {
			coop.Spec.Apps[i].Domains[j] = strings.TrimSuffix(strings.ToLower(d), ".")
		}
	}
	return nil
}

// ValidateCreate checks a new coop.
func (v *CooperativeValidator) ValidateCreate(ctx context.Context, coop *v1alpha1.Cooperative) (admission.Warnings, error) {
	return nil, v.validate(ctx, coop, nil)
}

// ValidateUpdate checks the domains a changed coop adds. Domains it had
// already stay its to keep: a coop that lost one, or had it before the
// webhook, is told on its status, and must still take any other change
// (its finalizer, a password rotation).
func (v *CooperativeValidator) ValidateUpdate(ctx context.Context, old, coop *v1alpha1.Cooperative) (admission.Warnings, error) {
	if !coop.DeletionTimestamp.IsZero() {
		// A coop on its way out must be able to lose its finalizer.
		return nil, nil
	}
	had := map[string]bool{}
	for _, app := range old.Spec.Apps {
		for _, host := range app.Domains {
			had[strings.ToLower(host)] = true
		}
	}
	return nil, v.validate(ctx, coop, had)
}

// ValidateDelete lets every deletion through.
func (v *CooperativeValidator) ValidateDelete(context.Context, *v1alpha1.Cooperative) (admission.Warnings, error) {
	return nil, nil
}

func (v *CooperativeValidator) validate(ctx context.Context, coop *v1alpha1.Cooperative, had map[string]bool) error {
	var errs field.ErrorList
	seen := map[string]string{}
	for i, app := range coop.Spec.Apps {
		for j, host := range app.Domains {
			path := field.NewPath("spec", "apps").Index(i).Child("domains").Index(j)
			host = strings.ToLower(host)
			if other, ok := seen[host]; ok {
				errs = append(errs, field.Duplicate(path, fmt.Sprintf("%s (already listed for app %s)", host, other)))
				continue
			}
			seen[host] = app.Name
			if had[host] {
				continue
			}
			if _, reason := specs.PlatformDomain(coop, host, v.BaseDomain); reason != "" {
				errs = append(errs, field.Forbidden(path, reason))
				continue
			}
			claim := &v1alpha1.DomainClaim{}
			err := v.Reader.Get(ctx, client.ObjectKey{Name: host}, claim)
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				return apierrors.NewInternalError(fmt.Errorf("while reading the claim of %s: %w", host, err))
			case claim.Spec.Cooperative != coop.Name:
				errs = append(errs, field.Forbidden(path, fmt.Sprintf("%q is already claimed by another cooperative", host)))
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind(v1alpha1.CooperativeKind).GroupKind(), coop.Name, errs)
}

package webhook

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"k8s.io/utils/ptr"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/blueprint"
)

// +kubebuilder:webhook:path=/mutate-cooperator-dev-v1alpha1-blueprint,mutating=true,failurePolicy=fail,sideEffects=None,groups=cooperator.dev,resources=blueprints,verbs=create;update,versions=v1alpha1,name=mblueprint.cooperator.dev,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-cooperator-dev-v1alpha1-blueprint,mutating=false,failurePolicy=fail,sideEffects=None,groups=cooperator.dev,resources=blueprints,verbs=create;update,versions=v1alpha1,name=vblueprint.cooperator.dev,admissionReviewVersions=v1

// BlueprintValidator refuses a Blueprint that the Blueprint controller
// would mark not Ready: it renders every version and runs the same checks
// (blueprint.Validate), so a bad app never reaches the catalog. Its
// defaulter lists the base's claims as the app's data when the Blueprint
// names none, so the stored Blueprint says what coops' backups hold.
type BlueprintValidator struct{}

// SetupWithManager serves the webhook from the manager's webhook server.
func (v *BlueprintValidator) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.Blueprint{}).WithDefaulter(v).WithValidator(v).Complete()
}

// Default fills spec.data, when empty, with every PersistentVolumeClaim of
// the base and its requested size, backed up: what the operator backs up
// of an app when its Blueprint says nothing. A file that does not parse is
// left for the validator to refuse.
func (v *BlueprintValidator) Default(_ context.Context, bp *v1alpha1.Blueprint) error {
	if len(bp.Spec.Data) > 0 {
		return nil
	}
	for _, f := range bp.Spec.Resources {
		dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(f.Content), 4096)
		for {
			var claim corev1.PersistentVolumeClaim
			if err := dec.Decode(&claim); err != nil {
				break
			}
			size, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
			if claim.Kind != "PersistentVolumeClaim" || claim.Name == "" || !ok {
				continue
			}
			bp.Spec.Data = append(bp.Spec.Data, v1alpha1.BlueprintData{Claim: claim.Name, Size: size, Backup: ptr.To(true)})
		}
	}
	return nil
}

// ValidateCreate checks a new Blueprint.
func (v *BlueprintValidator) ValidateCreate(_ context.Context, bp *v1alpha1.Blueprint) (admission.Warnings, error) {
	return nil, validateBlueprint(bp)
}

// ValidateUpdate checks a changed Blueprint; one on its way out passes, so
// that it can lose its finalizers.
func (v *BlueprintValidator) ValidateUpdate(_ context.Context, _, bp *v1alpha1.Blueprint) (admission.Warnings, error) {
	if !bp.DeletionTimestamp.IsZero() {
		return nil, nil
	}
	return nil, validateBlueprint(bp)
}

// ValidateDelete lets every deletion through.
func (v *BlueprintValidator) ValidateDelete(context.Context, *v1alpha1.Blueprint) (admission.Warnings, error) {
	return nil, nil
}

func validateBlueprint(bp *v1alpha1.Blueprint) error {
	problems := blueprint.Validate(bp)
	if len(problems) == 0 {
		return nil
	}
	errs := make(field.ErrorList, 0, len(problems))
	for _, p := range problems {
		path, detail := blueprintField(bp, p)
		errs = append(errs, field.Forbidden(path, detail))
	}
	return apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("Blueprint").GroupKind(), bp.Name, errs)
}

// blueprintField points a problem of blueprint.Validate, "version V: what",
// at the field to fix: the spec field it names, or the file of
// spec.resources that holds the object it names; spec.resources when the
// base as a whole does not render.
func blueprintField(bp *v1alpha1.Blueprint, problem string) (*field.Path, string) {
	resources := field.NewPath("spec", "resources")
	version, what, ok := strings.Cut(problem, ": ")
	if !ok || !strings.HasPrefix(version, "version ") {
		return resources, problem
	}
	subject, reason, ok := strings.Cut(what, ": ")
	if !ok {
		return resources, problem
	}
	if strings.HasPrefix(subject, "spec.") {
		// The path is already in the spec's own terms.
		return field.NewPath(subject), version + ": " + reason
	}
	kind, name, ok := strings.Cut(subject, "/")
	if !ok {
		return resources, problem
	}
	// Validate renders with the app name "app": objects are "app-<name>".
	name = strings.TrimPrefix(name, "app-")
	for i, f := range bp.Spec.Resources {
		if declares(f.Content, kind, name) {
			return resources.Index(i).Child("content"), version + ": " + kind + " " + name + ": " + reason
		}
	}
	return resources, problem
}

// declares says whether a file of the base holds an object of this kind
// and name.
func declares(content, kind, name string) bool {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(content), 4096)
	for {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := dec.Decode(&obj); err != nil {
			// The end of the file, or YAML the render already refused.
			return false
		}
		if obj.Kind == kind && obj.Metadata.Name == name {
			return true
		}
	}
}

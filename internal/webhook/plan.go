package webhook

import (
	"context"
	"fmt"
	"strings"

	"github.com/robfig/cron/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// +kubebuilder:webhook:path=/mutate-cooperator-dev-v1alpha1-plan,mutating=true,failurePolicy=fail,sideEffects=None,groups=cooperator.dev,resources=plans,verbs=create;update,versions=v1alpha1,name=mplan.cooperator.dev,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-cooperator-dev-v1alpha1-plan,mutating=false,failurePolicy=fail,sideEffects=None,groups=cooperator.dev,resources=plans,verbs=create;update,versions=v1alpha1,name=vplan.cooperator.dev,admissionReviewVersions=v1

// PlanWebhook stores a Plan with the container defaults the operator will
// give its coops, and refuses amounts that cannot work together and
// schedules that do not parse.
type PlanWebhook struct {
	// Reader reads BackupStores and DatabaseServers, from the manager's cache.
	Reader client.Reader
}

// SetupWithManager serves the webhooks from the manager's webhook server.
func (w *PlanWebhook) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.Plan{}).WithDefaulter(w).WithValidator(w).Complete()
}

// Default writes the container defaults the operator uses for what the
// plan leaves out (v1alpha1.PlanSpec.EffectiveContainerDefaults, the one
// source of them), so that the stored Plan says what its coops get. Other
// defaults are the CRD schema's.
func (w *PlanWebhook) Default(_ context.Context, plan *v1alpha1.Plan) error {
	plan.Spec.ContainerDefaults = plan.Spec.EffectiveContainerDefaults()
	return nil
}

// ValidateCreate checks a new plan.
func (w *PlanWebhook) ValidateCreate(ctx context.Context, plan *v1alpha1.Plan) (admission.Warnings, error) {
	return w.validate(ctx, plan)
}

// ValidateUpdate checks a changed plan as a whole: coops on it get the new
// amounts at their next reconcile.
func (w *PlanWebhook) ValidateUpdate(ctx context.Context, _, plan *v1alpha1.Plan) (admission.Warnings, error) {
	return w.validate(ctx, plan)
}

// ValidateDelete lets every deletion through: coops on a deleted plan say
// so on their status.
func (w *PlanWebhook) ValidateDelete(context.Context, *v1alpha1.Plan) (admission.Warnings, error) {
	return nil, nil
}

func (w *PlanWebhook) validate(ctx context.Context, plan *v1alpha1.Plan) (admission.Warnings, error) {
	errs, warnings := validatePlan(&plan.Spec)
	if len(errs) > 0 {
		return warnings, apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("Plan").GroupKind(), plan.Name, errs)
	}
	missing, err := w.references(ctx, &plan.Spec)
	if err != nil {
		return warnings, apierrors.NewInternalError(err)
	}
	return append(warnings, missing...), nil
}

// validatePlan finds what the schema cannot say: amounts that contradict
// each other, and cron expressions the CronJob controller would refuse; and
// warns about amounts only some coops on the plan would run into.
func validatePlan(spec *v1alpha1.PlanSpec) (field.ErrorList, admission.Warnings) {
	var errs field.ErrorList
	var warnings admission.Warnings
	root := field.NewPath("spec")
	defaults := spec.EffectiveContainerDefaults()
	cd := root.Child("containerDefaults")
	for _, r := range []struct {
		name           string
		request, limit *resource.Quantity
		total          resource.Quantity
	}{
		{"cpu", defaults.Requests.CPU, defaults.Limits.CPU, spec.Quota.CPU},
		{"memory", defaults.Requests.Memory, defaults.Limits.Memory, spec.Quota.Memory},
	} {
		if r.request.Cmp(*r.limit) > 0 {
			errs = append(errs, field.Invalid(cd.Child("requests", r.name), r.request.String(),
				fmt.Sprintf("must not be more than the default limit, %s: a LimitRange refuses it", r.limit.String())))
		}
		if r.limit.Cmp(r.total) > 0 {
			errs = append(errs, field.Invalid(cd.Child("limits", r.name), r.limit.String(),
				fmt.Sprintf("must not be more than spec.quota.%s, %s: no container without a limit of its own could start", r.name, r.total.String())))
		}
	}
	if d := spec.Database.Dedicated; d.Storage != nil && d.Instances > 0 {
		need := resource.NewQuantity(0, resource.BinarySI)
		for range d.Instances {
			need.Add(*d.Storage)
		}
		path := root.Child("database", "dedicated", "storage")
		tooBig := fmt.Sprintf("%d instances of it need %s, more than spec.quota.storage, %s", d.Instances, need.String(), spec.Quota.Storage.String())
		switch {
		case need.Cmp(spec.Quota.Storage) <= 0:
		case spec.Database.Mode == v1alpha1.DatabaseModeDedicated:
			errs = append(errs, field.Invalid(path, d.Storage.String(), tooBig))
		default:
			// Only coops that choose Dedicated themselves would not fit.
			warnings = append(warnings, path.String()+": "+tooBig+": a coop on this plan choosing Dedicated mode would get no database")
		}
	}
	if sel := spec.Database.ServerSelector; sel != nil {
		if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			errs = append(errs, field.Invalid(root.Child("database", "serverSelector"), sel.String(), err.Error()))
		}
	}
	backup := root.Child("backup")
	errs = append(errs, validateSchedule(backup.Child("schedule"), spec.Backup.Schedule)...)
	errs = append(errs, validateSchedule(backup.Child("drill", "schedule"), spec.Backup.Drill.Schedule)...)
	return errs, warnings
}

// validateSchedule parses a cron expression as the CronJob controller does.
// Empty is left to the schema's default.
func validateSchedule(path *field.Path, schedule string) field.ErrorList {
	if schedule == "" {
		return nil
	}
	if strings.Contains(schedule, "TZ") {
		// As the CronJob API: the backup CronJobs run in UTC.
		return field.ErrorList{field.Invalid(path, schedule, "a time zone (TZ= or CRON_TZ=) is not supported: schedules are in UTC")}
	}
	if _, err := cron.ParseStandard(schedule); err != nil {
		return field.ErrorList{field.Invalid(path, schedule, err.Error())}
	}
	return nil
}

// references warns about a BackupStore or DatabaseServer the plan names
// and the cluster does not have: `kubectl apply` may create them after the
// plan, so they are not refused; coops on the plan say what is missing on
// their status until they exist.
func (w *PlanWebhook) references(ctx context.Context, spec *v1alpha1.PlanSpec) (admission.Warnings, error) {
	var warnings admission.Warnings
	if name := spec.Backup.Store; name != "" {
		err := w.Reader.Get(ctx, client.ObjectKey{Name: name}, &v1alpha1.BackupStore{})
		switch {
		case apierrors.IsNotFound(err):
			warnings = append(warnings, fmt.Sprintf("spec.backup.store: BackupStore %q does not exist (yet): coops on this plan are not backed up until it does", name))
		case err != nil:
			return nil, fmt.Errorf("while reading BackupStore %s: %w", name, err)
		}
	}
	if sel := spec.Database.ServerSelector; sel != nil {
		selector, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return nil, err
		}
		servers := &v1alpha1.DatabaseServerList{}
		if err := w.Reader.List(ctx, servers, client.MatchingLabelsSelector{Selector: selector}); err != nil {
			return nil, fmt.Errorf("while listing DatabaseServers: %w", err)
		}
		if len(servers.Items) == 0 {
			warnings = append(warnings, "spec.database.serverSelector: no DatabaseServer matches (yet): coops on this plan in Shared mode get no database until one does")
		}
	}
	return warnings, nil
}

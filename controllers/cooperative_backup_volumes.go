package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/ssa"
)

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch

// appVolumes lists, app by app, the claims a coop's backups hold: every
// claim of its apps except Redis's, a cache, and those its Blueprint marks
// `backup: false`. A claim whose name cannot name a backup object (not a
// DNS label) is left out, and said.
func appVolumes(ctx context.Context, c client.Reader, coop *v1alpha1.Cooperative) (vols []specs.AppVolumes, skipped []string, err error) {
	claims := &corev1.PersistentVolumeClaimList{}
	if err := c.List(ctx, claims, client.InNamespace(coop.NamespaceName()), client.HasLabels{specs.AppLabel}); err != nil {
		return nil, nil, err
	}
	// A Blueprint may say that a claim of its base holds nothing worth
	// keeping (spec.data[].backup: false).
	notBackedUp := map[string]bool{}
	for _, app := range coop.Spec.Apps {
		bp := &v1alpha1.Blueprint{}
		if err := c.Get(ctx, client.ObjectKey{Name: app.Blueprint}, bp); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, nil, err
		}
		for _, d := range bp.Spec.Data {
			if d.Backup != nil && !*d.Backup {
				notBackedUp[app.Name+"-"+d.Claim] = true
			}
		}
	}
	byApp := map[string][]string{}
	for _, c := range claims.Items {
		app := c.Labels[specs.AppLabel]
		switch {
		case !c.DeletionTimestamp.IsZero() || c.Name == specs.RedisDataClaimName(app) || notBackedUp[c.Name]:
		case len(validation.IsDNS1123Label(c.Name)) > 0:
			skipped = append(skipped, c.Name)
		default:
			byApp[app] = append(byApp[app], c.Name)
		}
	}
	apps := make([]string, 0, len(byApp))
	for app := range byApp {
		apps = append(apps, app)
	}
	slices.Sort(apps)
	for _, app := range apps {
		v := specs.AppVolumes{App: app, Claims: byApp[app]}
		slices.Sort(v.Claims)
		if err := readAppIdentity(ctx, c, coop, &v); err != nil {
			return nil, nil, err
		}
		vols = append(vols, v)
	}
	return vols, skipped, nil
}

// readAppIdentity finds the app's workload that mounts its claims, for the
// sender to run next to it as its user.
func readAppIdentity(ctx context.Context, c client.Reader, coop *v1alpha1.Cooperative, v *specs.AppVolumes) error {
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(workload(kind).GroupVersionKind())
		if err := c.List(ctx, list, client.InNamespace(coop.NamespaceName()), client.MatchingLabels{specs.AppLabel: v.App}); err != nil {
			return err
		}
		for _, w := range list.Items {
			volumes, _, _ := unstructured.NestedSlice(w.Object, "spec", "template", "spec", "volumes")
			if !mountsAny(volumes, v.Claims) {
				continue
			}
			v.Selector, _, _ = unstructured.NestedStringMap(w.Object, "spec", "selector", "matchLabels")
			for field, into := range map[string]**int64{"runAsUser": &v.RunAsUser, "runAsGroup": &v.RunAsGroup, "fsGroup": &v.FSGroup} {
				if n, found, _ := unstructured.NestedInt64(w.Object, "spec", "template", "spec", "securityContext", field); found {
					*into = &n
				}
			}
			return nil
		}
	}
	return nil
}

func mountsAny(volumes []any, claims []string) bool {
	for _, v := range volumes {
		name, _, _ := unstructured.NestedString(v.(map[string]any), "persistentVolumeClaim", "claimName")
		if slices.Contains(claims, name) {
			return true
		}
	}
	return false
}

// scheduleVolumeSenders puts in place what streams the coop's volumes to its
// backup runner: the token on both sides, the runner's Service, and a
// sender CronJob per app with volumes. Senders of apps without volumes go.
func (r *CooperativeReconciler) scheduleVolumeSenders(ctx context.Context, coop *v1alpha1.Cooperative, schedule string, vols []specs.AppVolumes) error {
	keep := map[string]bool{}
	if len(vols) > 0 {
		token, err := volumeToken(ctx, r.Client, client.ObjectKey{Namespace: r.Options.OperatorNamespace, Name: specs.VolumeTokenSecretOfRunner(coop)})
		if err != nil {
			return err
		}
		ns := r.Options.OperatorNamespace
		for _, s := range []*corev1ac.SecretApplyConfiguration{
			specs.VolumeTokenSecret(coop, ns, specs.VolumeTokenSecretOfRunner(coop), token),
			specs.VolumeTokenSecret(coop, coop.NamespaceName(), specs.VolumeTokenSecretName, token),
		} {
			if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &corev1.Secret{}, s, corev1ac.ExtractSecret); err != nil {
				return fmt.Errorf("while applying the volume token: %w", err)
			}
		}
		if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &corev1.Service{}, specs.BackupRunnerService(coop, r.Options), corev1ac.ExtractService); err != nil {
			return fmt.Errorf("while applying the backup runner's Service: %w", err)
		}
		for _, v := range vols {
			cj := specs.VolumeSenderCronJob(coop, v, schedule, r.Options)
			if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &batchv1.CronJob{}, cj, batchv1ac.ExtractCronJob); err != nil {
				return fmt.Errorf("while applying the volume sender of app %s: %w", v.App, err)
			}
			keep[*cj.Name] = true
		}
	}
	return r.removeVolumeSenders(ctx, coop, keep)
}

// removeVolumeSenders deletes the coop's sender CronJobs not in keep, and,
// when none is kept, the token and the runner's Service.
func (r *CooperativeReconciler) removeVolumeSenders(ctx context.Context, coop *v1alpha1.Cooperative, keep map[string]bool) error {
	list := &batchv1.CronJobList{}
	if err := r.List(ctx, list, client.InNamespace(coop.NamespaceName()), client.MatchingLabels(specs.Labels(coop))); err != nil {
		return err
	}
	for i := range list.Items {
		cj := &list.Items[i]
		if strings.HasPrefix(cj.Name, specs.VolumeSenderName("")) && !keep[cj.Name] {
			if err := r.deleteIfPresent(ctx, cj); err != nil {
				return err
			}
		}
	}
	if len(keep) > 0 || r.Options.OperatorNamespace == "" {
		return nil
	}
	for _, obj := range []client.Object{
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: r.Options.OperatorNamespace, Name: specs.BackupName(coop)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Options.OperatorNamespace, Name: specs.VolumeTokenSecretOfRunner(coop)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: coop.NamespaceName(), Name: specs.VolumeTokenSecretName}},
	} {
		if err := r.deleteIfPresent(ctx, obj); err != nil {
			return err
		}
	}
	return nil
}

// startFinalSenders runs each of the coop's sender CronJobs once, for the
// final backup that the runner's Job of the same moment waits for.
func (r *CooperativeReconciler) startFinalSenders(ctx context.Context, coop *v1alpha1.Cooperative) error {
	list := &batchv1.CronJobList{}
	if err := r.List(ctx, list, client.InNamespace(coop.NamespaceName()), client.MatchingLabels(specs.Labels(coop))); err != nil {
		return err
	}
	// A retried final backup needs senders of its own; the old ones go
	// with the coop.
	suffix := fmt.Sprintf("-final-%x", time.Now().Unix())
	for _, cj := range list.Items {
		if !strings.HasPrefix(cj.Name, specs.VolumeSenderName("")) {
			continue
		}
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: cj.Name + suffix, Namespace: cj.Namespace, Labels: cj.Labels},
			Spec:       *cj.Spec.JobTemplate.Spec.DeepCopy(),
		}
		if r.Options.RunnerImage != "" {
			for i := range job.Spec.Template.Spec.Containers {
				job.Spec.Template.Spec.Containers[i].Image = r.Options.RunnerImage
			}
		}
		if err := controllerutil.SetControllerReference(coop, job, r.Scheme()); err != nil {
			return err
		}
		if err := r.Create(ctx, job); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("while starting the final volume sender %s: %w", job.Name, err)
		}
	}
	return nil
}

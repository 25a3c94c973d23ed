package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/blueprint"
	"cooperator.dev/cooperator/internal/secret"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/ssa"
)

// +kubebuilder:rbac:groups=cooperator.dev,resources=blueprints,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=create;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=delete
// +kubebuilder:rbac:groups="",resources=services;configmaps;persistentvolumeclaims;serviceaccounts,verbs=create;update;patch;delete
// +kubebuilder:rbac:groups=batch,resources=cronjobs,verbs=create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=create;update;patch;delete

var errAppInvalid = errors.New("app cannot be rendered")

// appProblem is why one app is not ready; the first one becomes AppsReady's reason.
type appProblem struct {
	reason, message string
	terminal        bool
}

// reconcileApps renders each app the coop picked from its Blueprint, checks
// it against the coop's plan, applies it, exposes it, and reports its
// rollout.
func (r *CooperativeReconciler) reconcileApps(ctx context.Context, s *scope) (ctrl.Result, error) {
	coop := s.coop
	if max := s.plan.Spec.MaxApps; max > 0 && int32(len(coop.Spec.Apps)) > max {
		setCondition(coop, v1alpha1.AppsReadyCondition, metav1.ConditionFalse, v1alpha1.TooManyAppsReason,
			fmt.Sprintf("The coop runs %d apps; plan %s allows %d", len(coop.Spec.Apps), s.plan.Name, max))
		return ctrl.Result{}, reconcile.TerminalError(errAppInvalid)
	}
	// A running Restore holds the apps at zero, as if they hibernated, so
	// that nothing writes the databases while they are restored.
	restore, err := activeRestore(ctx, r.Client, coop)
	if err != nil {
		return ctrl.Result{}, err
	}
	statuses := make([]v1alpha1.AppStatus, 0, len(coop.Spec.Apps))
	var first *appProblem
	for _, app := range coop.Spec.Apps {
		if restore != nil {
			app.Hibernate = true
		}
		st, problem, err := r.reconcileApp(ctx, s, app)
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("app %s: %w", app.Name, err)
		}
		if problem != nil && first == nil {
			first = problem
		}
		statuses = append(statuses, st)
	}
	coop.Status.Apps = statuses
	if err := r.pruneApps(ctx, coop); err != nil {
		return ctrl.Result{}, err
	}
	switch {
	case restore != nil && (first == nil || !first.terminal):
		setCondition(coop, v1alpha1.AppsReadyCondition, metav1.ConditionFalse, v1alpha1.AppsRestoringReason,
			fmt.Sprintf("Restore %s is restoring a backup: the apps are scaled to zero until it ends", restore.Name))
	case first != nil:
		setCondition(coop, v1alpha1.AppsReadyCondition, metav1.ConditionFalse, first.reason, first.message)
		if first.terminal {
			return ctrl.Result{}, reconcile.TerminalError(errAppInvalid)
		}
	case len(coop.Spec.Apps) == 0:
		setCondition(coop, v1alpha1.AppsReadyCondition, metav1.ConditionTrue, v1alpha1.AppsAvailableReason, "The coop runs no apps")
	default:
		setCondition(coop, v1alpha1.AppsReadyCondition, metav1.ConditionTrue, v1alpha1.AppsAvailableReason,
			fmt.Sprintf("%d apps are available", len(coop.Spec.Apps)))
	}
	return ctrl.Result{}, nil
}

func (r *CooperativeReconciler) reconcileApp(ctx context.Context, s *scope, app v1alpha1.CooperativeApp) (v1alpha1.AppStatus, *appProblem, error) {
	coop := s.coop
	st := v1alpha1.AppStatus{Name: app.Name, Version: app.Version}
	fail := func(reason, format string, args ...any) (v1alpha1.AppStatus, *appProblem, error) {
		st.Message = fmt.Sprintf(format, args...)
		return st, &appProblem{reason: reason, message: fmt.Sprintf("App %s: %s", app.Name, st.Message), terminal: true}, nil
	}

	bp := &v1alpha1.Blueprint{}
	if err := r.Get(ctx, client.ObjectKey{Name: app.Blueprint}, bp); err != nil {
		if apierrors.IsNotFound(err) {
			return fail(v1alpha1.BlueprintNotFoundReason, "Blueprint %q does not exist", app.Blueprint)
		}
		return st, nil, err
	}
	if c := meta.FindStatusCondition(bp.Status.Conditions, v1alpha1.ReadyCondition); c == nil || c.Status != metav1.ConditionTrue || bp.Status.ObservedGeneration != bp.Generation {
		return fail(v1alpha1.BlueprintNotReadyReason, "Blueprint %q has not passed its checks", app.Blueprint)
	}
	hostname := specs.AppHostname(coop, app.Name, r.Options)
	var hosts []string
	if hostname != "" {
		hosts = append(hosts, hostname)
	}
	in, err := blueprint.InputFor(bp, app.Version, coop.NamespaceName(), app.Name, hostname, specs.AppLabels(coop, app.Name))
	if err != nil {
		return fail(v1alpha1.VersionNotOfferedReason, "Blueprint %q does not offer version %q", app.Blueprint, app.Version)
	}
	if err := r.applyGenerated(ctx, coop, app.Name, bp); err != nil {
		return st, nil, err
	}
	objs, err := r.renders.Render(blueprint.Files(bp), in)
	if err != nil {
		return fail(v1alpha1.AppChecksFailedReason, "rendering failed")
	}
	defaults := s.plan.Spec.EffectiveContainerDefaults()
	checked, err := budgetedObjects(coop, app.Name, bp, objs)
	if err != nil {
		return st, nil, err
	}
	violations, err := blueprint.Check(checked, blueprint.Budget{
		CPU: s.plan.Spec.Quota.CPU, Memory: s.plan.Spec.Quota.Memory,
		DefaultCPU: *defaults.Limits.CPU, DefaultMemory: *defaults.Limits.Memory,
	})
	if err != nil {
		return st, nil, err
	}
	if len(violations) > 0 {
		return fail(v1alpha1.AppChecksFailedReason, "%s", violations[0].String())
	}
	// What the app needs comes before it, and only once it passed the checks.
	if problem, err := r.reconcileAppNeeds(ctx, s, app, bp); err != nil || problem != nil {
		st.Version, st.Message = servingVersion(coop, app.Name), problemMessage(problem)
		return st, problem, err
	}

	if m := bp.Spec.Migration; m != nil {
		if serving := servingVersion(coop, app.Name); serving != app.Version {
			// The Job mounts the app's volumes; on a first install it also
			// reads the app's configuration. Nothing of it can break a
			// version that serves: on an upgrade, only volumes go first.
			for _, obj := range objs {
				if obj.GetKind() != "PersistentVolumeClaim" && (serving != "" || isWorkload(obj) || isRunOnce(obj)) {
					continue
				}
				specs.Own(obj, coop)
				if _, err := ssa.ApplyUnstructured(ctx, r.Client, r.APIReader, obj); err != nil {
					return st, nil, fmt.Errorf("while applying %s %s before the migration: %w", obj.GetKind(), obj.GetName(), err)
				}
			}
			problem, err := r.migrate(ctx, coop, app, m, objs, serving)
			if err != nil || problem != nil {
				st.Version, st.Message = serving, problemMessage(problem)
				return st, problem, err
			}
		}
	}

	for _, obj := range objs {
		specs.Own(obj, coop)
		if app.Hibernate && isWorkload(obj) {
			_ = unstructured.SetNestedField(obj.Object, int64(0), "spec", "replicas")
		}
		if _, err := ssa.ApplyUnstructured(ctx, r.Client, r.APIReader, obj); err != nil {
			return st, nil, fmt.Errorf("while applying %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	if e := bp.Spec.Expose; e != nil {
		// The domains phase claims and verifies the custom domains, and
		// exposes the app on them and on its default hostname.
		s.exposures = append(s.exposures, exposure{app: app.Name, service: app.Name + "-" + e.Service, port: e.Port,
			hosts: hosts, domains: app.Domains})
	}

	waiting, err := r.rolloutWaiting(ctx, objs)
	if err != nil {
		return st, nil, err
	}
	if waiting != "" {
		st.Message = waiting
		return st, &appProblem{reason: v1alpha1.AppsProgressingReason, message: fmt.Sprintf("App %s: %s", app.Name, waiting)}, nil
	}
	st.Ready = true
	if app.Hibernate {
		st.Message = "Hibernating: scaled to zero, data kept"
	}
	return st, nil, nil
}

// servingVersion is the version the app ran at the end of the last pass.
func servingVersion(coop *v1alpha1.Cooperative, app string) string {
	for _, a := range coop.Status.Apps {
		if a.Name == app {
			return a.Version
		}
	}
	return ""
}

func problemMessage(p *appProblem) string {
	if p == nil {
		return ""
	}
	return p.message
}

// migrate runs the app's migration for its new version as a Job. Until the
// Job succeeds, the new version is not applied, so the old one keeps
// serving; a failed Job stops the upgrade and says so.
func (r *CooperativeReconciler) migrate(ctx context.Context, coop *v1alpha1.Cooperative, app v1alpha1.CooperativeApp,
	m *v1alpha1.BlueprintMigration, objs []*unstructured.Unstructured, serving string) (*appProblem, error) {
	job, err := blueprint.MigrationJob(objs, m, app.Name+"-", app.Name, app.Version)
	if err != nil {
		return &appProblem{reason: v1alpha1.AppChecksFailedReason, message: fmt.Sprintf("App %s: %v", app.Name, err), terminal: true}, nil
	}
	specs.Own(job, coop)
	if _, err := ssa.ApplyUnstructured(ctx, r.Client, r.APIReader, job); err != nil {
		return nil, fmt.Errorf("while applying the migration Job: %w", err)
	}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(job.GroupVersionKind())
	if err := r.Get(ctx, client.ObjectKeyFromObject(job), live); client.IgnoreNotFound(err) != nil {
		return nil, err
	}
	still := "nothing serves yet"
	if serving != "" {
		still = fmt.Sprintf("version %s still serves", serving)
	}
	switch blueprint.StateOf(live) {
	case blueprint.JobSucceeded:
		return nil, nil
	case blueprint.JobFailed:
		return &appProblem{reason: v1alpha1.MigrationFailedReason, terminal: true, message: fmt.Sprintf(
			"App %s: the migration to version %s failed (Job %s; see its logs); %s", app.Name, app.Version, job.GetName(), still)}, nil
	default:
		return &appProblem{reason: v1alpha1.MigratingReason, message: fmt.Sprintf(
			"App %s: migrating to version %s (Job %s); %s", app.Name, app.Version, job.GetName(), still)}, nil
	}
}

func isWorkload(obj *unstructured.Unstructured) bool {
	return obj.GetKind() == "Deployment" || obj.GetKind() == "StatefulSet"
}

func isRunOnce(obj *unstructured.Unstructured) bool {
	return obj.GetKind() == "Job" || obj.GetKind() == "CronJob"
}

// rolloutWaiting names the first workload whose rollout is not complete.
func (r *CooperativeReconciler) rolloutWaiting(ctx context.Context, objs []*unstructured.Unstructured) (string, error) {
	for _, obj := range objs {
		if !isWorkload(obj) {
			continue
		}
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(obj.GroupVersionKind())
		if err := r.Get(ctx, client.ObjectKeyFromObject(obj), live); err != nil {
			if apierrors.IsNotFound(err) {
				return fmt.Sprintf("%s %s is being created", obj.GetKind(), obj.GetName()), nil
			}
			return "", err
		}
		if !rolledOut(live) {
			return fmt.Sprintf("%s %s is rolling out", obj.GetKind(), obj.GetName()), nil
		}
	}
	return "", nil
}

// rolledOut reads a Deployment's or StatefulSet's status as kubectl
// rollout status does.
func rolledOut(u *unstructured.Unstructured) bool {
	get := func(path ...string) int64 {
		v, _, _ := unstructured.NestedInt64(u.Object, path...)
		return v
	}
	want, found, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	if !found {
		want = 1
	}
	if get("status", "observedGeneration") < u.GetGeneration() {
		return false
	}
	if want == 0 {
		return get("status", "replicas") == 0
	}
	available := get("status", "availableReplicas")
	if u.GetKind() == "StatefulSet" {
		available = get("status", "readyReplicas")
	}
	return get("status", "updatedReplicas") == want && available == want && get("status", "replicas") == want
}

// applyGenerated keeps one Secret of the app's Generated parameters: values
// already made are kept, missing ones are made with crypto/rand.
func (r *CooperativeReconciler) applyGenerated(ctx context.Context, coop *v1alpha1.Cooperative, app string, bp *v1alpha1.Blueprint) error {
	var generated []v1alpha1.BlueprintParameter
	for _, p := range bp.Spec.Parameters {
		if p.Source == v1alpha1.ParameterGenerated {
			generated = append(generated, p)
		}
	}
	if len(generated) == 0 {
		return nil
	}
	existing := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: coop.NamespaceName(), Name: specs.AppSecretName(app)}, existing)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	values := map[string]string{}
	for _, p := range generated {
		if v := existing.Data[p.Name]; len(v) > 0 {
			values[p.Name] = string(v)
			continue
		}
		n := p.Length
		if n == 0 {
			n = 32
		}
		v, err := secret.Token(int(n))
		if err != nil {
			return err
		}
		values[p.Name] = v
	}
	if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &corev1.Secret{}, specs.AppSecret(coop, app, values), corev1ac.ExtractSecret); err != nil {
		return fmt.Errorf("while applying the app's Secret: %w", err)
	}
	return nil
}

// appObjects lists the objects of one kind that belong to an app of the
// namespace's coop. They are the cache's own, not copies, as every pass
// looks at them and nearly always leaves them be: only their metadata may
// be read, and only a copy changed. A kind the scheme knows is listed as
// its Go type, which saves converting each object to a map.
func (r *CooperativeReconciler) appObjects(ctx context.Context, gvk schema.GroupVersionKind, namespace string) ([]client.Object, error) {
	var list client.ObjectList
	if typed, err := r.Scheme().New(gvk.GroupVersion().WithKind(gvk.Kind + "List")); err == nil {
		list = typed.(client.ObjectList)
	} else {
		u := &unstructured.UnstructuredList{}
		u.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		list = u
	}
	if err := r.List(ctx, list, client.InNamespace(namespace), client.HasLabels{specs.AppLabel}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	objs := make([]client.Object, 0, len(items))
	for _, item := range items {
		obj, ok := item.(client.Object)
		if !ok {
			return nil, fmt.Errorf("%s is not an object", gvk.Kind)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// appKinds are the kinds an app may bring (see blueprint.Check), less
// PersistentVolumeClaims: an app taken out of spec.apps leaves its data.
var appKinds = []schema.GroupVersionKind{
	{Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "apps", Version: "v1", Kind: "StatefulSet"},
	{Group: "batch", Version: "v1", Kind: "Job"},
	{Group: "batch", Version: "v1", Kind: "CronJob"},
	{Version: "v1", Kind: "Service"},
	{Version: "v1", Kind: "ConfigMap"},
	{Version: "v1", Kind: "Secret"},
	{Version: "v1", Kind: "ServiceAccount"},
	{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
}

// pruneApps deletes what apps no longer in spec.apps left behind, routes
// and certificates included, but for their volumes.
func (r *CooperativeReconciler) pruneApps(ctx context.Context, coop *v1alpha1.Cooperative) error {
	keep := map[string]bool{}
	for _, a := range coop.Spec.Apps {
		keep[a.Name] = true
	}
	kinds := appKinds
	if r.CertManagerInstalled {
		kinds = append(slices.Clone(kinds), CertManagerCertificate)
	}
	if r.Options.Expose.Gateway != nil {
		kinds = append(slices.Clone(kinds), specs.HTTPRoute)
	}
	for _, gvk := range kinds {
		objs, err := r.appObjects(ctx, gvk, coop.NamespaceName())
		if err != nil {
			return fmt.Errorf("while listing %s: %w", gvk.Kind, err)
		}
		for _, obj := range objs {
			if keep[obj.GetLabels()[specs.AppLabel]] || !obj.GetDeletionTimestamp().IsZero() {
				continue
			}
			if err := r.Delete(ctx, obj.DeepCopyObject().(client.Object), client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("while deleting %s %s of a removed app: %w", gvk.Kind, obj.GetName(), err)
			}
			ctrl.LoggerFrom(ctx).Info("Deleted an object of a removed app", "kind", gvk.Kind, "name", obj.GetName())
		}
	}
	return nil
}

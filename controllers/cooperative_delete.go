package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/blueprint"
	"cooperator.dev/cooperator/internal/postgres"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/ssa"
)

// reconcileDelete guards a coop's data from the garbage collector, which
// takes everything carrying the coop as owner, the namespace and all it
// holds. With deletionPolicy Delete a final backup is taken, when the coop
// has backups, and then a shared server's databases are dropped (a
// dedicated cluster goes with the namespace). With Retain the databases and
// role stay on a shared server, and a namespace holding data (a dedicated
// cluster, the apps' volume claims) stays with it.
func (r *CooperativeReconciler) reconcileDelete(ctx context.Context, s *scope) (ctrl.Result, error) {
	coop := s.coop
	if !controllerutil.ContainsFinalizer(coop, v1alpha1.DatabaseFinalizer) {
		return ctrl.Result{}, nil
	}
	serverName := coop.Annotations[DatabaseServerAnnotation]
	db := postgres.Database{Name: coop.DatabaseName()}
	dedicated := coop.Status.Database != nil && coop.Status.Database.Mode == v1alpha1.DatabaseModeDedicated

	if coop.Spec.DeletionPolicy == v1alpha1.DeletionPolicyDelete {
		if serverName != "" || dedicated {
			if res, err := r.finalBackup(ctx, coop); err != nil || !res.IsZero() {
				return res, err
			}
		}
		if serverName != "" {
			if res, err := r.dropDatabase(ctx, coop, serverName, db); err != nil || !res.IsZero() {
				return res, err
			}
		}
	} else {
		if err := r.retainNamespace(ctx, coop, dedicated); err != nil {
			return ctrl.Result{}, err
		}
		if st := coop.Status.Database; serverName != "" && st != nil {
			st.Retained = true
			names := []string{db.Name}
			for _, a := range st.Apps {
				names = append(names, a.Name)
			}
			// Databases of apps removed earlier are not in the status; the
			// role owns them too, and they stay as well.
			r.Recorder.Eventf(coop, nil, corev1.EventTypeNormal, "DatabaseRetained", "Delete",
				"Role %s and the databases it owns (%s) are kept on DatabaseServer %s (%s:%d), as deletionPolicy Retain says",
				db.Name, strings.Join(names, ", "), serverName, st.Host, st.Port)
			ctrl.LoggerFrom(ctx).Info("Retained databases", "server", serverName, "databases", names)
		}
	}

	// The last status says where the data is; after the finalizer goes,
	// the coop and its status are gone.
	summarize(coop, nil)
	if err := r.Status().Patch(ctx, coop, client.MergeFrom(s.original)); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("while writing the final status: %w", err)
	}
	before := coop.DeepCopy()
	controllerutil.RemoveFinalizer(coop, v1alpha1.DatabaseFinalizer)
	if err := r.Patch(ctx, coop, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("while removing the finalizer: %w", err)
	}
	return ctrl.Result{}, nil
}

func (r *CooperativeReconciler) dropDatabase(ctx context.Context, coop *v1alpha1.Cooperative, serverName string, db postgres.Database) (ctrl.Result, error) {
	server := &v1alpha1.DatabaseServer{}
	if err := r.Get(ctx, client.ObjectKey{Name: serverName}, server); err != nil {
		if apierrors.IsNotFound(err) {
			// The server itself is gone; nothing is left to drop.
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	pg, ok := r.Servers.Lookup(serverName)
	if !ok {
		return ctrl.Result{RequeueAfter: waitForServer}, nil
	}
	dropped, err := pg.Drop(ctx, db)
	if err != nil {
		return ctrl.Result{}, databaseFailure(coop, serverName, "dropping the databases", err)
	}
	r.Recorder.Eventf(coop, nil, corev1.EventTypeNormal, "DatabaseDropped", "Delete",
		"Databases %s and role %s on DatabaseServer %s were dropped, as deletionPolicy Delete says", strings.Join(dropped, ", "), db.Name, serverName)
	ctrl.LoggerFrom(ctx).Info("Dropped databases", "server", serverName, "databases", dropped)
	return ctrl.Result{}, nil
}

// waitForFinalBackup is how often a coop waiting on its final backup looks.
const waitForFinalBackup = 10 * time.Second

var errFinalBackupFailed = errors.New("final backup failed")

// finalBackup takes one more backup of a coop whose databases are about to
// be dropped or to go with its namespace, with the Job its backup CronJob would run, and holds the drop
// until it succeeded. A failed one keeps the databases: nothing is lost
// because a store was down. A coop with no backups scheduled has none to take.
func (r *CooperativeReconciler) finalBackup(ctx context.Context, coop *v1alpha1.Cooperative) (ctrl.Result, error) {
	ns := r.Options.OperatorNamespace
	if ns == "" {
		return ctrl.Result{}, nil
	}
	cronJob := &batchv1.CronJob{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: specs.BackupName(coop)}, cronJob); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	name := specs.BackupName(coop) + "-final"
	taking := func() (ctrl.Result, error) {
		setCondition(coop, v1alpha1.BackupsReadyCondition, metav1.ConditionFalse, v1alpha1.ProgressingReason,
			fmt.Sprintf("Taking the final backup before the databases are removed (Job %s/%s)", ns, name))
		return ctrl.Result{RequeueAfter: waitForFinalBackup}, nil
	}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(batchv1.SchemeGroupVersion.WithKind("Job"))
	err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, live)
	if apierrors.IsNotFound(err) {
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: specs.Labels(coop)},
			Spec:       *cronJob.Spec.JobTemplate.Spec.DeepCopy(),
		}
		// The runner of the operator that runs now, which may be newer
		// than the one the CronJob was last written with.
		for i := range job.Spec.Template.Spec.Containers {
			if r.Options.RunnerImage != "" {
				job.Spec.Template.Spec.Containers[i].Image = r.Options.RunnerImage
			}
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(job)
		if err != nil {
			return ctrl.Result{}, err
		}
		obj := &unstructured.Unstructured{Object: u}
		obj.SetGroupVersionKind(batchv1.SchemeGroupVersion.WithKind("Job"))
		unstructured.RemoveNestedField(obj.Object, "status")
		unstructured.RemoveNestedField(obj.Object, "metadata", "creationTimestamp")
		specs.Own(obj, coop)
		if _, err := ssa.ApplyUnstructured(ctx, r.Client, r.APIReader, obj); err != nil {
			return ctrl.Result{}, fmt.Errorf("while starting the final backup: %w", err)
		}
		if err := r.startFinalSenders(ctx, coop); err != nil {
			return ctrl.Result{}, err
		}
		ctrl.LoggerFrom(ctx).Info("Taking the final backup before the databases are removed", "job", name)
		return taking()
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	switch blueprint.StateOf(live) {
	case blueprint.JobSucceeded:
		return ctrl.Result{}, nil
	case blueprint.JobFailed:
		setCondition(coop, v1alpha1.BackupsReadyCondition, metav1.ConditionFalse, v1alpha1.FinalBackupFailedReason, fmt.Sprintf(
			"The final backup before the databases are removed failed (Job %s/%s), so they are kept. Delete the Job to try again, or set deletionPolicy Retain", ns, name))
		return ctrl.Result{}, reconcile.TerminalError(errFinalBackupFailed)
	default:
		return taking()
	}
}

// keptKinds are what a retained namespace keeps of its coop's: the data,
// the Secrets that reach it, and what isolates and bounds it. Workloads,
// Services and routes go with the coop.
var keptKinds = []schema.GroupVersionKind{
	corev1.SchemeGroupVersion.WithKind("PersistentVolumeClaim"),
	corev1.SchemeGroupVersion.WithKind("Secret"),
	corev1.SchemeGroupVersion.WithKind("ResourceQuota"),
	corev1.SchemeGroupVersion.WithKind("LimitRange"),
	networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"),
	rbacv1.SchemeGroupVersion.WithKind("Role"),
	rbacv1.SchemeGroupVersion.WithKind("RoleBinding"),
}

// retainNamespace keeps a deleted coop's namespace when it holds data the
// garbage collector would take with it: a dedicated cluster, or the apps'
// volume claims. It takes the coop off the namespace and the kept objects
// as owner, and labels the namespace; what else the coop owned there goes.
// Each step can be run again, so a pass cut short is finished by the next.
func (r *CooperativeReconciler) retainNamespace(ctx context.Context, coop *v1alpha1.Cooperative, dedicated bool) error {
	ns := coop.NamespaceName()
	kinds := keptKinds
	if dedicated && r.CNPGInstalled {
		kinds = append(slices.Clip(kinds), CNPGCluster)
	}
	var claims, kept []string
	var owned []*metav1.PartialObjectMetadata
	for _, gvk := range kinds {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := r.APIReader.List(ctx, list, client.InNamespace(ns)); err != nil {
			return fmt.Errorf("while listing the %ss to keep in namespace %s: %w", gvk.Kind, ns, err)
		}
		for i := range list.Items {
			o := &list.Items[i]
			if gvk.Kind == "PersistentVolumeClaim" {
				claims = append(claims, o.Name)
			}
			if !ownedBy(o, coop) {
				continue
			}
			o.SetGroupVersionKind(gvk)
			owned = append(owned, o)
			kept = append(kept, gvk.Kind+" "+o.Name)
		}
	}
	if !dedicated && len(claims) == 0 {
		return nil
	}
	for _, o := range owned {
		if err := r.disown(ctx, o, coop, nil); err != nil {
			return err
		}
	}
	namespace := &metav1.PartialObjectMetadata{}
	namespace.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: ns}, namespace); err != nil {
		return client.IgnoreNotFound(err)
	}
	if err := r.disown(ctx, namespace, coop, map[string]string{v1alpha1.RetainedLabel: coop.Name}); err != nil {
		return err
	}
	var data []string
	if dedicated {
		data = append(data, "the CloudNativePG cluster "+specs.ClusterName)
	}
	if len(claims) > 0 {
		data = append(data, "volume claims "+strings.Join(claims, ", "))
	}
	if coop.Status.Database != nil && dedicated {
		coop.Status.Database.Retained = true
	}
	r.Recorder.Eventf(coop, nil, corev1.EventTypeNormal, "NamespaceRetained", "Delete",
		"Namespace %s is kept with %s and Secret %s, as deletionPolicy Retain says; its workloads are removed. Delete the namespace once the data has moved",
		ns, strings.Join(data, " and "), specs.DatabaseSecretName)
	ctrl.LoggerFrom(ctx).Info("Retained namespace", "namespace", ns, "kept", kept)
	return nil
}

func ownedBy(o metav1.Object, coop *v1alpha1.Cooperative) bool {
	return slices.ContainsFunc(o.GetOwnerReferences(), func(ref metav1.OwnerReference) bool { return ref.UID == coop.UID })
}

// disown removes the coop from an object's owners, so that the garbage
// collector leaves it, and adds labels.
func (r *CooperativeReconciler) disown(ctx context.Context, o *metav1.PartialObjectMetadata, coop *v1alpha1.Cooperative, labels map[string]string) error {
	if !ownedBy(o, coop) && hasLabels(o, labels) {
		return nil
	}
	before := o.DeepCopy()
	o.SetOwnerReferences(slices.DeleteFunc(o.GetOwnerReferences(), func(ref metav1.OwnerReference) bool { return ref.UID == coop.UID }))
	for k, v := range labels {
		metav1.SetMetaDataLabel(&o.ObjectMeta, k, v)
	}
	err := r.Patch(ctx, o, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("while keeping %s %s: %w", o.Kind, o.Name, err)
	}
	return nil
}

func hasLabels(o metav1.Object, labels map[string]string) bool {
	for k, v := range labels {
		if o.GetLabels()[k] != v {
			return false
		}
	}
	return true
}

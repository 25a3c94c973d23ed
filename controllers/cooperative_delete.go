package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
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

// reconcileDelete handles what the garbage collector cannot reach: a
// database on a shared server, and its apps' databases. Everything in the
// cluster carries the coop as its controller owner and goes with it, the
// namespace and all it holds. With deletionPolicy Retain the databases and
// the role stay on the server; with Delete a final backup is taken, when
// the coop has backups, and then they are dropped.
func (r *CooperativeReconciler) reconcileDelete(ctx context.Context, s *scope) (ctrl.Result, error) {
	coop := s.coop
	if !controllerutil.ContainsFinalizer(coop, v1alpha1.DatabaseFinalizer) {
		return ctrl.Result{}, nil
	}
	serverName := coop.Annotations[DatabaseServerAnnotation]
	db := postgres.Database{Name: coop.DatabaseName()}

	if serverName != "" {
		if coop.Spec.DeletionPolicy == v1alpha1.DeletionPolicyDelete {
			if res, err := r.finalBackup(ctx, coop); err != nil || !res.IsZero() {
				return res, err
			}
			if res, err := r.dropDatabase(ctx, coop, serverName, db); err != nil || !res.IsZero() {
				return res, err
			}
		} else if st := coop.Status.Database; st != nil {
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
// be dropped, with the Job its backup CronJob would run, and holds the drop
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
			fmt.Sprintf("Taking the final backup before the databases are dropped (Job %s/%s)", ns, name))
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
		if _, err := ssa.ApplyUnstructured(ctx, r.Client, obj); err != nil {
			return ctrl.Result{}, fmt.Errorf("while starting the final backup: %w", err)
		}
		if err := r.startFinalSenders(ctx, coop); err != nil {
			return ctrl.Result{}, err
		}
		ctrl.LoggerFrom(ctx).Info("Taking the final backup before the databases are dropped", "job", name)
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
			"The final backup before the databases are dropped failed (Job %s/%s), so they are kept. Delete the Job to try again, or set deletionPolicy Retain", ns, name))
		return ctrl.Result{}, reconcile.TerminalError(errFinalBackupFailed)
	default:
		return taking()
	}
}

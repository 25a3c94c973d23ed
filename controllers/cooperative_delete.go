package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/postgres"
)

// reconcileDelete handles what the garbage collector cannot reach: a
// database on a shared server, and its apps' databases. Everything in the
// cluster carries the coop as its controller owner and goes with it, the
// namespace and all it holds. With deletionPolicy Retain the databases and
// the role stay on the server; with Delete they are dropped.
func (r *CooperativeReconciler) reconcileDelete(ctx context.Context, s *scope) (ctrl.Result, error) {
	coop := s.coop
	if !controllerutil.ContainsFinalizer(coop, v1alpha1.DatabaseFinalizer) {
		return ctrl.Result{}, nil
	}
	serverName := coop.Annotations[DatabaseServerAnnotation]
	db := postgres.Database{Name: coop.DatabaseName()}

	if serverName != "" {
		if coop.Spec.DeletionPolicy == v1alpha1.DeletionPolicyDelete {
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

package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/postgres"
)

// serverRefresh is how often a server's reachability, version and database
// count are read again, and its admin Secret with them.
const serverRefresh = time.Minute

// serverRetry is how often a server that does not answer is tried again;
// the coops on it wake when it does.
const serverRetry = 10 * time.Second

// DatabaseServerReconciler keeps an admin connection to each shared
// PostgreSQL server and reports whether it answers.
type DatabaseServerReconciler struct {
	client.Client
	// APIReader reads admin Secrets, which the cache does not hold.
	APIReader client.Reader
	Servers   *postgres.Servers
}

// +kubebuilder:rbac:groups=cooperator.dev,resources=databaseservers,verbs=get;list;watch
// +kubebuilder:rbac:groups=cooperator.dev,resources=databaseservers/status,verbs=get;update;patch

// Reconcile opens or refreshes the server's admin pool and writes its status.
func (r *DatabaseServerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	server := &v1alpha1.DatabaseServer{}
	if err := r.Get(ctx, req.NamespacedName, server); err != nil {
		if apierrors.IsNotFound(err) {
			r.Servers.Forget(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := server.DeepCopy()

	ready := metav1.Condition{Type: v1alpha1.ReadyCondition, Status: metav1.ConditionTrue, Reason: v1alpha1.ReachableReason,
		ObservedGeneration: server.Generation}
	cfg, err := r.adminConfig(ctx, server)
	if err == nil {
		var pg *postgres.Server
		pg, err = r.Servers.Get(server.Name, cfg)
		if err == nil {
			server.Status.ServerVersion, server.Status.Databases, err = pg.Info(ctx)
		}
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "DatabaseServer does not answer")
		}
	}
	switch {
	case errors.Is(err, errAdminSecret):
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.AdminSecretInvalidReason
		ready.Message = fmt.Sprintf("Secret %s/%s must exist and hold username and password",
			server.Spec.AdminSecretRef.Namespace, server.Spec.AdminSecretRef.Name)
	case err != nil && postgres.Classify(err) == postgres.KindAuthFailed:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.AdminAuthFailedReason,
			"The server refused the admin credentials of adminSecretRef"
	case err != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.ServerUnreachableReason,
			fmt.Sprintf("%s:%d does not answer", server.Spec.Host, server.Spec.Port)
	default:
		ready.Message = fmt.Sprintf("PostgreSQL %s answers", server.Status.ServerVersion)
	}
	meta.SetStatusCondition(&server.Status.Conditions, ready)
	server.Status.ObservedGeneration = server.Generation
	if !equality.Semantic.DeepEqual(before.Status, server.Status) {
		if err := r.Status().Patch(ctx, server, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, fmt.Errorf("while writing status: %w", err)
		}
	}
	if ready.Status != metav1.ConditionTrue {
		return ctrl.Result{RequeueAfter: serverRetry}, nil
	}
	return ctrl.Result{RequeueAfter: serverRefresh}, nil
}

var errAdminSecret = errors.New("admin secret invalid")

// adminConfig reads the server's admin credentials. Secrets of other
// namespaces are not cached, so this reads the API server, once per refresh.
func (r *DatabaseServerReconciler) adminConfig(ctx context.Context, server *v1alpha1.DatabaseServer) (postgres.ServerConfig, error) {
	ref := server.Spec.AdminSecretRef
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return postgres.ServerConfig{}, errAdminSecret
		}
		return postgres.ServerConfig{}, err
	}
	user, password := string(secret.Data["username"]), string(secret.Data["password"])
	if user == "" || password == "" {
		return postgres.ServerConfig{}, errAdminSecret
	}
	return postgres.ServerConfig{
		Host: server.Spec.Host, Port: server.Spec.Port, SSLMode: server.Spec.SSLMode,
		User: user, Password: password,
	}, nil
}

// SetupWithManager registers the reconciler.
func (r *DatabaseServerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.DatabaseServer{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("databaseserver").
		Complete(r)
}

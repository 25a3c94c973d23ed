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
	"cooperator.dev/cooperator/internal/backup"
)

// BackupStoreReconciler reports whether each backup store's bucket answers
// with the keys it was given.
type BackupStoreReconciler struct {
	client.Client
	// APIReader reads the stores' key Secrets, which the cache does not hold.
	APIReader client.Reader
}

// +kubebuilder:rbac:groups=cooperator.dev,resources=backupstores,verbs=get;list;watch
// +kubebuilder:rbac:groups=cooperator.dev,resources=backupstores/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

var errStoreSecret = errors.New("store credentials secret invalid")

// Reconcile checks the bucket and writes the store's status.
func (r *BackupStoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	store := &v1alpha1.BackupStore{}
	if err := r.Get(ctx, req.NamespacedName, store); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := store.DeepCopy()
	ready := metav1.Condition{Type: v1alpha1.ReadyCondition, Status: metav1.ConditionTrue, Reason: v1alpha1.ReachableReason,
		ObservedGeneration: store.Generation, Message: fmt.Sprintf("Bucket %s answers", store.Spec.Bucket)}
	err := r.check(ctx, store)
	switch {
	case errors.Is(err, errStoreSecret):
		ref := store.Spec.CredentialsSecretRef
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.CredentialsInvalidReason
		ready.Message = fmt.Sprintf("Secret %s/%s must exist and hold accessKeyID and secretAccessKey", ref.Namespace, ref.Name)
	case errors.Is(err, backup.ErrBucketNotFound):
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.BucketNotFoundReason
		ready.Message = fmt.Sprintf("Bucket %s does not exist on %s", store.Spec.Bucket, store.Spec.Endpoint)
	case err != nil:
		ctrl.LoggerFrom(ctx).Error(err, "BackupStore does not answer")
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.StoreUnreachableReason
		ready.Message = fmt.Sprintf("%s does not answer, or refused the keys", store.Spec.Endpoint)
	}
	meta.SetStatusCondition(&store.Status.Conditions, ready)
	store.Status.ObservedGeneration = store.Generation
	if !equality.Semantic.DeepEqual(before.Status, store.Status) {
		if err := r.Status().Patch(ctx, store, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, fmt.Errorf("while writing status: %w", err)
		}
	}
	if ready.Status != metav1.ConditionTrue {
		return ctrl.Result{RequeueAfter: serverRetry}, nil
	}
	return ctrl.Result{RequeueAfter: serverRefresh}, nil
}

func (r *BackupStoreReconciler) check(ctx context.Context, store *v1alpha1.BackupStore) error {
	s, err := storeConfig(ctx, r.APIReader, store)
	if err != nil {
		return err
	}
	c, err := backup.Open(s)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.Check(ctx)
}

// storeConfig reads a store's keys. Secrets of other namespaces are not
// cached, so this reads the API server, once per refresh.
func storeConfig(ctx context.Context, reader client.Reader, store *v1alpha1.BackupStore) (backup.Store, error) {
	ref := store.Spec.CredentialsSecretRef
	secret := &corev1.Secret{}
	if err := reader.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return backup.Store{}, errStoreSecret
		}
		return backup.Store{}, err
	}
	access, key := string(secret.Data["accessKeyID"]), string(secret.Data["secretAccessKey"])
	if access == "" || key == "" {
		return backup.Store{}, errStoreSecret
	}
	return backup.Store{
		Endpoint: store.Spec.Endpoint, Region: store.Spec.Region, Bucket: store.Spec.Bucket, Prefix: store.Spec.Prefix,
		AccessKey: access, SecretKey: key, UseTLS: !store.Spec.Insecure, PathStyle: store.Spec.PathStyle,
	}, nil
}

// SetupWithManager registers the reconciler.
func (r *BackupStoreReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.BackupStore{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("backupstore").
		Complete(r)
}

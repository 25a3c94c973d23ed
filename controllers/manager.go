package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/ssa"
)

// Scheme knows every kind the operator reads or writes.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(v1alpha1.AddToScheme(Scheme))
}

// Config is what the operator is told at start.
type Config struct {
	Specs specs.Options
	// MaxConcurrentReconciles is how many coops are reconciled at once.
	MaxConcurrentReconciles int
}

// CacheOptions keep only the operator's own children in memory: a cluster
// with many unrelated objects costs the operator nothing, and managedFields
// of other managers are dropped.
func CacheOptions() cache.Options {
	managed := labels.SelectorFromSet(labels.Set{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue})
	byObject := map[client.Object]cache.ByObject{}
	for _, o := range []client.Object{
		&corev1.Namespace{}, &corev1.ResourceQuota{}, &corev1.LimitRange{},
		&networkingv1.NetworkPolicy{}, &rbacv1.Role{}, &rbacv1.RoleBinding{},
	} {
		byObject[o] = cache.ByObject{Label: managed}
	}
	return cache.Options{ByObject: byObject, DefaultTransform: ssa.StripForeignManagedFields}
}

// Setup registers every reconciler with the manager.
func Setup(ctx context.Context, mgr ctrl.Manager, cfg Config) error {
	if cfg.MaxConcurrentReconciles <= 0 {
		cfg.MaxConcurrentReconciles = 4
	}
	coops := &CooperativeReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("cooperator"),
		Options:                 cfg.Specs,
		MaxConcurrentReconciles: cfg.MaxConcurrentReconciles,
	}
	if err := coops.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("while setting up the Cooperative controller: %w", err)
	}
	return nil
}

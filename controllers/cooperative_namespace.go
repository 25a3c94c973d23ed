package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/ssa"
)

// +kubebuilder:rbac:groups="",resources=namespaces;resourcequotas;limitranges,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings;clusterroles;clusterrolebindings,verbs=get;list;watch;create;update;patch
// Bindings of the shared admin ClusterRole skip RBAC's escalation check,
// which walks every ClusterRoleBinding; the operator holds its rules anyway.
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=cooperator:cooperative-admin
// Admins' Roles of earlier versions are replaced by that ClusterRole.
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;patch;delete
// The operator must hold what it grants to coop admins (specs.AdminRules).
// +kubebuilder:rbac:groups="",resources=pods;pods/log;services;configmaps;secrets;persistentvolumeclaims;serviceaccounts;events;endpoints,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=delete
// +kubebuilder:rbac:groups="",resources=pods/exec;pods/portforward,verbs=create
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;deployments/scale;statefulsets/scale,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=batch,resources=cronjobs,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=get;list;watch
// +kubebuilder:rbac:groups=cooperator.dev,resources=restores,verbs=get;list;watch;create;delete
// And what it grants them cluster-wide (specs.MemberRules).
// +kubebuilder:rbac:groups=cooperator.dev,resources=cooperatives;plans;blueprints,verbs=get;list;watch

// namespaceRetry is how soon a coop looks again at a namespace of its name
// that is still being deleted.
const namespaceRetry = 5 * time.Second

// errNamespaceOwnedElsewhere stops a coop whose namespace name is taken.
var errNamespaceOwnedElsewhere = errors.New("namespace owned elsewhere")

// reconcileNamespace applies the coop's namespace and what isolates and
// governs it: quota, limits, network policies, and its admins' access.
func (r *CooperativeReconciler) reconcileNamespace(ctx context.Context, s *scope) (ctrl.Result, error) {
	coop := s.coop
	s.coop.Status.Namespace = coop.NamespaceName()

	made, res, err := r.createNamespace(ctx, s)
	if err != nil || !res.IsZero() {
		return res, err
	}

	var applies []func() (string, error)
	if !made {
		applies = append(applies, applyHashed(ctx, r, &corev1.Namespace{}, specs.Namespace(coop), corev1ac.ExtractNamespace))
	}
	applies = append(applies,
		// The quota is cached whole: its status feeds the coop's metrics.
		applyOne(ctx, r, &corev1.ResourceQuota{}, specs.ResourceQuota(coop, s.plan), corev1ac.ExtractResourceQuota),
		applyHashed(ctx, r, &corev1.LimitRange{}, specs.LimitRange(coop, s.plan), corev1ac.ExtractLimitRange),
		// Shared by every coop, and applied by each: a cache read when unchanged.
		applyHashed(ctx, r, &rbacv1.ClusterRole{}, specs.AdminRole(), rbacv1ac.ExtractClusterRole),
		r.applyAdminRoleBinding(ctx, coop),
		applyHashed(ctx, r, &rbacv1.ClusterRole{}, specs.MemberRole(coop), rbacv1ac.ExtractClusterRole),
		applyHashed(ctx, r, &rbacv1.ClusterRoleBinding{}, specs.MemberRoleBinding(coop), rbacv1ac.ExtractClusterRoleBinding),
	)
	for _, np := range specs.NetworkPolicies(coop, r.Options) {
		applies = append(applies, applyHashed(ctx, r, &networkingv1.NetworkPolicy{}, np, networkingv1ac.ExtractNetworkPolicy))
	}
	for _, apply := range applies {
		if what, err := apply(); err != nil {
			setCondition(coop, v1alpha1.NamespaceReadyCondition, metav1.ConditionFalse, v1alpha1.NamespaceApplyFailedReason,
				fmt.Sprintf("Applying %s failed; retrying", what))
			return ctrl.Result{}, fmt.Errorf("while applying %s: %w", what, err)
		}
	}
	setCondition(coop, v1alpha1.NamespaceReadyCondition, metav1.ConditionTrue, v1alpha1.NamespaceAppliedReason,
		"Namespace, quota, limits, network policies and admin access are applied")
	return ctrl.Result{}, nil
}

// applyOne defers one ssa.Apply, so that the phase can list its children
// first and apply them in order.
func applyOne[O client.Object, A ssa.ApplyConfiguration](ctx context.Context, r *CooperativeReconciler, live O, desired A, extract ssa.Extractor[O, A]) func() (string, error) {
	return func() (string, error) {
		_, err := ssa.Apply(ctx, r.Client, r.APIReader, live, desired, extract)
		return ssa.Describe(desired), err
	}
}

// applyHashed is applyOne for the kinds cached as metadata only.
func applyHashed[O client.Object, A ssa.ApplyConfiguration](ctx context.Context, r *CooperativeReconciler, live O, desired A, extract ssa.Extractor[O, A]) func() (string, error) {
	return func() (string, error) {
		_, err := ssa.ApplyHashed(ctx, r.Client, r.APIReader, live, desired, extract)
		return ssa.Describe(desired), err
	}
}

// applyAdminRoleBinding is applyHashed for the admins' RoleBinding. Before
// the shared admin ClusterRole, it bound a Role of the coop's namespace;
// RBAC forbids changing a binding's roleRef, so such a binding is deleted
// and made anew, and the coop's old Role deleted. Admins lose access for
// the moment between the two.
func (r *CooperativeReconciler) applyAdminRoleBinding(ctx context.Context, coop *v1alpha1.Cooperative) func() (string, error) {
	desired := specs.AdminRoleBinding(coop)
	apply := applyHashed(ctx, r, &rbacv1.RoleBinding{}, desired, rbacv1ac.ExtractRoleBinding)
	return func() (string, error) {
		what, err := apply()
		if !apierrors.IsInvalid(err) {
			return what, err
		}
		key := client.ObjectKey{Namespace: coop.NamespaceName(), Name: specs.AdminRoleBindingName}
		live := &rbacv1.RoleBinding{}
		if err := r.APIReader.Get(ctx, key, live); err != nil {
			return what, err
		}
		if live.RoleRef.Kind != "Role" || !ownedBy(live, coop) {
			return what, err
		}
		if err := r.Delete(ctx, live, client.Preconditions{UID: &live.UID}); client.IgnoreNotFound(err) != nil {
			return what, err
		}
		old := &metav1.PartialObjectMetadata{}
		old.SetGroupVersionKind(rbacv1.SchemeGroupVersion.WithKind("Role"))
		switch err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: live.RoleRef.Name}, old); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return what, err
		case ownedBy(old, coop):
			uid := old.GetUID()
			if err := r.Delete(ctx, old, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
				return what, err
			}
		}
		return apply()
	}
}

// createNamespace creates the coop's namespace when there is none of its
// name, and otherwise refuses to take over a namespace that is not the
// coop's, and waits while an earlier coop's namespace of the same name is
// still being deleted. The cache holds only the operator's namespaces, so
// the create is what asks the API server whether another exists. It reports
// whether it created the namespace.
func (r *CooperativeReconciler) createNamespace(ctx context.Context, s *scope) (bool, ctrl.Result, error) {
	ns := &metav1.PartialObjectMetadata{}
	key := client.ObjectKey{Name: s.coop.NamespaceName()}
	made, err := ssa.CreateHashed(ctx, r.Client, r.APIReader, specs.Namespace(s.coop), ns)
	switch {
	case err != nil:
		setCondition(s.coop, v1alpha1.NamespaceReadyCondition, metav1.ConditionFalse, v1alpha1.NamespaceApplyFailedReason,
			fmt.Sprintf("Creating Namespace %s failed; retrying", key.Name))
		return false, ctrl.Result{}, fmt.Errorf("while creating Namespace %s: %w", key.Name, err)
	case made:
		return true, ctrl.Result{}, nil
	}
	if owner := metav1.GetControllerOf(ns); owner != nil && owner.UID == s.coop.UID {
		return false, ctrl.Result{}, nil
	}
	if !ns.DeletionTimestamp.IsZero() {
		setCondition(s.coop, v1alpha1.NamespaceReadyCondition, metav1.ConditionFalse, v1alpha1.NamespaceTerminatingReason,
			fmt.Sprintf("Namespace %s is still being deleted; waiting", key.Name))
		return false, ctrl.Result{RequeueAfter: namespaceRetry}, nil
	}
	message := fmt.Sprintf("Namespace %s exists and does not belong to this cooperative; rename or remove it", key.Name)
	if from := ns.Labels[v1alpha1.RetainedLabel]; from != "" {
		message = fmt.Sprintf("Namespace %s was kept, with its data, when the cooperative %s was deleted under deletionPolicy Retain; move the data out and delete the namespace, or name this cooperative otherwise", key.Name, from)
	}
	setCondition(s.coop, v1alpha1.NamespaceReadyCondition, metav1.ConditionFalse, v1alpha1.NamespaceOwnedElsewhereReason, message)
	return false, ctrl.Result{}, reconcile.TerminalError(errNamespaceOwnedElsewhere)
}

// setCondition sets one condition for the coop's current generation.
func setCondition(coop *v1alpha1.Cooperative, conditionType string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&coop.Status.Conditions, metav1.Condition{
		Type:               conditionType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: coop.Generation,
	})
}

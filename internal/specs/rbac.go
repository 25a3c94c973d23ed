package specs

import (
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// SettingsSecretName is the Secret a coop's admins write for their apps'
// own settings, such as SMTP; the catalog's apps read it when it exists.
const SettingsSecretName = "settings"

// AdminRoleName names the ClusterRole of every coop's admins, which a
// RoleBinding in each coop's namespace grants there. One role for all coops
// keeps the cluster's RBAC from growing with them and lets the operator hold
// `bind` on that one name instead of RBAC checking, on each coop, that it
// holds every rule it grants.
const AdminRoleName = "cooperator:cooperative-admin"

// AdminRoleBindingName names the RoleBinding of a coop's admins.
const AdminRoleBindingName = "cooperative-admin"

var (
	readVerbs    = []string{"get", "list", "watch"}
	operateVerbs = []string{"get", "list", "watch", "update", "patch"}
	runVerbs     = []string{"get", "list", "watch", "create", "update", "patch", "delete"}
)

// AdminRules let a coop's admins run and inspect their apps and read their
// own Secrets and logs. They can read, but never change, what isolates the
// coop: quota, limits, network policies, Ingress, Endpoints and
// EndpointSlices. The operator holds every one of these rules itself, as
// RBAC requires of whoever grants them (see the markers in controllers/).
func AdminRules() []*rbacv1ac.PolicyRuleApplyConfiguration {
	rule := func(group string, verbs []string, resources ...string) *rbacv1ac.PolicyRuleApplyConfiguration {
		return rbacv1ac.PolicyRule().WithAPIGroups(group).WithResources(resources...).WithVerbs(verbs...)
	}
	return []*rbacv1ac.PolicyRuleApplyConfiguration{
		rule("", readVerbs, "pods", "pods/log", "services", "configmaps", "secrets", "persistentvolumeclaims",
			"serviceaccounts", "events", "resourcequotas", "limitranges", "endpoints"),
		rule("", []string{"delete"}, "pods"),
		// The coop's own settings for its apps (mail, S3, map keys): a
		// Secret it writes itself. RBAC cannot limit create to one name;
		// any other Secret it makes is read by nothing of the operator's.
		rule("", []string{"create"}, "secrets"),
		rule("", []string{"update", "patch", "delete"}, "secrets").WithResourceNames(SettingsSecretName, BackupRecipientsSecretName),
		rule("", []string{"create"}, "pods/exec", "pods/portforward"),
		rule("apps", operateVerbs, "deployments", "statefulsets", "deployments/scale", "statefulsets/scale"),
		rule("apps", readVerbs, "replicasets"),
		rule("batch", runVerbs, "jobs"),
		rule("batch", readVerbs, "cronjobs"),
		rule("networking.k8s.io", readVerbs, "networkpolicies", "ingresses"),
		rule("discovery.k8s.io", readVerbs, "endpointslices"),
		rule("events.k8s.io", readVerbs, "events"),
		// A coop's admins bring their own backups back (docs/backups.md).
		rule(v1alpha1.GroupVersion.Group, []string{"get", "list", "watch", "create", "delete"}, "restores"),
	}
}

// MemberRoleName names the ClusterRole, and its ClusterRoleBinding, that let
// a coop's admins read their Cooperative.
func MemberRoleName(coop *v1alpha1.Cooperative) string {
	return "cooperator:cooperative:" + coop.Name
}

// MemberRules let a coop's admins read their own Cooperative, where its
// status says where its data lives and what its apps and backups are, and
// every Plan and Blueprint: what each plan costs and what the catalog offers
// are open to all members.
func MemberRules(coop *v1alpha1.Cooperative) []*rbacv1ac.PolicyRuleApplyConfiguration {
	group := v1alpha1.GroupVersion.Group
	return []*rbacv1ac.PolicyRuleApplyConfiguration{
		rbacv1ac.PolicyRule().WithAPIGroups(group).WithResources("cooperatives").
			WithResourceNames(coop.Name).WithVerbs("get", "watch"),
		rbacv1ac.PolicyRule().WithAPIGroups(group).WithResources("plans", "blueprints").WithVerbs(readVerbs...),
	}
}

// MemberRole is the ClusterRole of MemberRules.
func MemberRole(coop *v1alpha1.Cooperative) *rbacv1ac.ClusterRoleApplyConfiguration {
	return rbacv1ac.ClusterRole(MemberRoleName(coop)).
		WithLabels(Labels(coop)).
		WithOwnerReferences(OwnerReference(coop)).
		WithRules(MemberRules(coop)...)
}

// MemberRoleBinding binds spec.admins to the member ClusterRole.
func MemberRoleBinding(coop *v1alpha1.Cooperative) *rbacv1ac.ClusterRoleBindingApplyConfiguration {
	rb := rbacv1ac.ClusterRoleBinding(MemberRoleName(coop)).
		WithLabels(Labels(coop)).
		WithOwnerReferences(OwnerReference(coop)).
		WithRoleRef(rbacv1ac.RoleRef().
			WithAPIGroup("rbac.authorization.k8s.io").
			WithKind("ClusterRole").
			WithName(MemberRoleName(coop)))
	for _, s := range adminSubjects(coop) {
		rb.WithSubjects(s)
	}
	return rb
}

// AdminRole is the ClusterRole of AdminRules. It belongs to no coop: it
// stays while any coop's namespace, kept or not, binds it.
func AdminRole() *rbacv1ac.ClusterRoleApplyConfiguration {
	return rbacv1ac.ClusterRole(AdminRoleName).
		WithLabels(map[string]string{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}).
		WithRules(AdminRules()...)
}

// AdminRoleBinding grants spec.admins the admin ClusterRole in the coop's
// namespace.
func AdminRoleBinding(coop *v1alpha1.Cooperative) *rbacv1ac.RoleBindingApplyConfiguration {
	rb := rbacv1ac.RoleBinding(AdminRoleBindingName, coop.NamespaceName()).
		WithLabels(Labels(coop)).
		WithOwnerReferences(OwnerReference(coop)).
		WithRoleRef(rbacv1ac.RoleRef().
			WithAPIGroup("rbac.authorization.k8s.io").
			WithKind("ClusterRole").
			WithName(AdminRoleName))
	for _, s := range adminSubjects(coop) {
		rb.WithSubjects(s)
	}
	return rb
}

// adminSubjects are spec.admins as RBAC subjects.
func adminSubjects(coop *v1alpha1.Cooperative) []*rbacv1ac.SubjectApplyConfiguration {
	var subjects []*rbacv1ac.SubjectApplyConfiguration
	for _, a := range coop.Spec.Admins {
		kind := string(a.Kind)
		if kind == "" {
			kind = string(v1alpha1.SubjectKindUser)
		}
		subjects = append(subjects, rbacv1ac.Subject().
			WithAPIGroup("rbac.authorization.k8s.io").
			WithKind(kind).
			WithName(a.Name))
	}
	return subjects
}

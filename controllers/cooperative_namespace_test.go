package controllers

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/specs"
)

func TestCoopGetsIsolatedNamespace(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	create(t, newPlan("ns-plan"), newCoop("ns-coop", "ns-plan"))
	coop := waitReady(t, "ns-coop")

	if coop.Status.Namespace != "coop-ns-coop" {
		t.Errorf("status.namespace = %q, want coop-ns-coop", coop.Status.Namespace)
	}
	if c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.NamespaceReadyCondition); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("NamespaceReady = %+v, want True", c)
	}

	ns := &corev1.Namespace{}
	mustGet(t, "", "coop-ns-coop", ns)
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("namespace PSA enforce label = %q, want restricted", got)
	}
	if got := ns.Labels[v1alpha1.CooperativeLabel]; got != "ns-coop" {
		t.Errorf("namespace coop label = %q", got)
	}

	quota := &corev1.ResourceQuota{}
	mustGet(t, "coop-ns-coop", specs.ResourceQuotaName, quota)
	for name, want := range map[corev1.ResourceName]string{
		corev1.ResourceRequestsCPU: "2", corev1.ResourceLimitsMemory: "4Gi",
		corev1.ResourceRequestsStorage: "10Gi", corev1.ResourcePods: "20", corev1.ResourceServicesLoadBalancers: "0",
	} {
		got := quota.Spec.Hard[name]
		if got.Cmp(resource.MustParse(want)) != 0 {
			t.Errorf("quota %s = %s, want %s", name, got.String(), want)
		}
	}

	var policies networkingv1.NetworkPolicyList
	if err := adminClient.List(ctx, &policies, client.InNamespace("coop-ns-coop")); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range policies.Items {
		names[p.Name] = true
		assertControlledBy(t, &p, coop)
	}
	for _, want := range []string{specs.DenyAllPolicy, specs.AllowSameNamespace, specs.AllowDNSPolicy, specs.AllowFromIngress, specs.AllowToDatabasePolicy} {
		if !names[want] {
			t.Errorf("NetworkPolicy %s is missing; have %v", want, names)
		}
	}

	binding := &rbacv1.RoleBinding{}
	mustGet(t, "coop-ns-coop", specs.AdminRoleBindingName, binding)
	if len(binding.Subjects) != 1 || binding.Subjects[0].Name != "ns-coop-admin" {
		t.Errorf("RoleBinding subjects = %+v, want ns-coop-admin", binding.Subjects)
	}
	for _, o := range []client.Object{ns, quota, binding} {
		assertControlledBy(t, o, coop)
	}

	// Pod Security Admission restricted is enforced, not only labelled.
	privileged := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "root", Namespace: "coop-ns-coop"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "busybox",
			SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
		}}},
	}
	err := adminClient.Create(ctx, privileged)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "restricted") {
		t.Errorf("creating a privileged pod: got %v, want Forbidden by PodSecurity restricted", err)
	}
}

func TestPlanChangeReachesEveryCoopOnIt(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	plan := newPlan("change-plan")
	create(t, plan, newCoop("change-a", "change-plan"), newCoop("change-b", "change-plan"))
	waitReady(t, "change-a")
	waitReady(t, "change-b")

	mustGet(t, "", "change-plan", plan)
	plan.Spec.Quota.CPU = resource.MustParse("3")
	if err := adminClient.Update(ctx, plan); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"coop-change-a", "coop-change-b"} {
		waitFor(t, 30*time.Second, "quota of "+ns+" to follow the plan", func(ctx context.Context) (bool, error) {
			quota := &corev1.ResourceQuota{}
			if err := adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: specs.ResourceQuotaName}, quota); err != nil {
				return false, err
			}
			got := quota.Spec.Hard[corev1.ResourceLimitsCPU]
			return got.Cmp(resource.MustParse("3")) == 0, nil
		})
	}
}

func TestUnknownPlanCreatesNothingUntilItExists(t *testing.T) {
	startOperator(t)
	create(t, newCoop("orphan", "not-yet"))
	coop := waitReason(t, "orphan", v1alpha1.PlanNotFoundReason)

	ready := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.ReadyCondition)
	if ready.Status != metav1.ConditionFalse || !strings.Contains(ready.Message, `"not-yet"`) {
		t.Errorf("Ready = %s %q, want False naming the plan", ready.Status, ready.Message)
	}
	if !meta.IsStatusConditionTrue(coop.Status.Conditions, v1alpha1.StalledCondition) {
		t.Errorf("Stalled is not True: %+v", coop.Status.Conditions)
	}
	err := adminClient.Get(context.Background(), client.ObjectKey{Name: "coop-orphan"}, &corev1.Namespace{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("namespace of a coop without plan: got %v, want NotFound", err)
	}

	create(t, newPlan("not-yet"))
	coop = waitReady(t, "orphan")
	if meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.StalledCondition) != nil {
		t.Errorf("Stalled is still set once the plan exists")
	}
}

func TestChangesByHandArePutBack(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	create(t, newPlan("drift-plan"), newCoop("drift", "drift-plan"))
	waitReady(t, "drift")

	quota := &corev1.ResourceQuota{}
	mustGet(t, "coop-drift", specs.ResourceQuotaName, quota)
	quota.Spec.Hard[corev1.ResourceRequestsCPU] = resource.MustParse("64")
	if err := adminClient.Update(ctx, quota); err != nil {
		t.Fatal(err)
	}
	deny := &networkingv1.NetworkPolicy{}
	mustGet(t, "coop-drift", specs.DenyAllPolicy, deny)
	if err := adminClient.Delete(ctx, deny); err != nil {
		t.Fatal(err)
	}
	// A policy cached as metadata only, opened by hand to every namespace.
	dns := &networkingv1.NetworkPolicy{}
	mustGet(t, "coop-drift", specs.AllowDNSPolicy, dns)
	dns.Spec.Egress[0].To[0].NamespaceSelector = &metav1.LabelSelector{}
	if err := adminClient.Update(ctx, dns); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the DNS policy to be put back", func(ctx context.Context) (bool, error) {
		p := &networkingv1.NetworkPolicy{}
		if err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-drift", Name: specs.AllowDNSPolicy}, p); err != nil {
			return false, err
		}
		return len(p.Spec.Egress[0].To[0].NamespaceSelector.MatchLabels) == 1, nil
	})

	waitFor(t, 30*time.Second, "the quota and the deny-all policy to be put back", func(ctx context.Context) (bool, error) {
		q := &corev1.ResourceQuota{}
		if err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-drift", Name: specs.ResourceQuotaName}, q); err != nil {
			return false, err
		}
		cpu := q.Spec.Hard[corev1.ResourceRequestsCPU]
		err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-drift", Name: specs.DenyAllPolicy}, &networkingv1.NetworkPolicy{})
		return cpu.Cmp(resource.MustParse("2")) == 0 && err == nil, client.IgnoreNotFound(err)
	})
}

func TestNamespaceOfAnotherOwnerIsNotTakenOver(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	squatted := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "coop-squat"}}
	create(t, squatted, newPlan("squat-plan"), newCoop("squat", "squat-plan"))
	coop := waitReason(t, "squat", v1alpha1.NamespaceOwnedElsewhereReason)
	if !meta.IsStatusConditionTrue(coop.Status.Conditions, v1alpha1.StalledCondition) {
		t.Errorf("Stalled is not True: %+v", coop.Status.Conditions)
	}
	mustGet(t, "", "coop-squat", squatted)
	if len(squatted.OwnerReferences) != 0 || squatted.Labels[v1alpha1.CooperativeLabel] != "" {
		t.Errorf("the foreign namespace was changed: %+v", squatted.ObjectMeta)
	}
	var quotas corev1.ResourceQuotaList
	if err := adminClient.List(ctx, &quotas, client.InNamespace("coop-squat")); err != nil || len(quotas.Items) != 0 {
		t.Errorf("quotas in the foreign namespace: %d (err %v), want none", len(quotas.Items), err)
	}
}

// The cache holds only the operator's namespaces, so a new coop learns
// whether its namespace's name is free from the create itself, not from a
// read of every new coop's namespace before it.
func TestNewCoopsNamespaceIsCreatedWithoutReadingItFirst(t *testing.T) {
	counter := &requestCounter{}
	runOperator(t, testConfig, counter.wrap)
	create(t, newPlan("fresh-plan"), newCoop("fresh", "fresh-plan"))
	waitReady(t, "fresh")
	ns := &corev1.Namespace{}
	mustGet(t, "", "coop-fresh", ns)
	if owner := metav1.GetControllerOf(ns); owner == nil || owner.Name != "fresh" {
		t.Errorf("namespace coop-fresh is controlled by %+v, want the coop fresh", owner)
	}
	if n := counter.requests(http.MethodPost, "/api/v1/namespaces"); n == 0 {
		t.Error("the counted operator sent no create of a namespace; the count sees nothing")
	}
	if n := counter.requests(http.MethodGet, "/api/v1/namespaces/coop-fresh"); n != 0 {
		t.Errorf("the operator read the new coop's namespace %d times from the API server, want 0", n)
	}
}

func TestAdminsRunTheirCoopButNotItsIsolation(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	create(t, newPlan("rbac-plan"), newCoop("rbac-a", "rbac-plan"), newCoop("rbac-b", "rbac-plan"))
	waitReady(t, "rbac-a")
	waitReady(t, "rbac-b")
	for _, ns := range []string{"coop-rbac-a", "coop-rbac-b"} {
		create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns}, StringData: map[string]string{"k": "v"}})
	}

	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "rbac-a-admin"}
	as, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		t.Fatal(err)
	}

	if err := as.List(ctx, &corev1.PodList{}, client.InNamespace("coop-rbac-a")); err != nil {
		t.Errorf("admin listing pods of their coop: %v", err)
	}
	if err := as.Get(ctx, client.ObjectKey{Namespace: "coop-rbac-a", Name: "app"}, &corev1.Secret{}); err != nil {
		t.Errorf("admin reading a Secret of their coop: %v", err)
	}

	// Where their data lives is on their Cooperative's status; the plans
	// and the catalog are open to every member.
	if err := as.Get(ctx, client.ObjectKey{Name: "rbac-a"}, &v1alpha1.Cooperative{}); err != nil {
		t.Errorf("admin reading their Cooperative: %v", err)
	}
	if err := as.List(ctx, &v1alpha1.PlanList{}); err != nil {
		t.Errorf("admin listing the plans: %v", err)
	}
	if err := as.List(ctx, &v1alpha1.BlueprintList{}); err != nil {
		t.Errorf("admin listing the catalog: %v", err)
	}

	settings := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: specs.SettingsSecretName, Namespace: "coop-rbac-a"}, StringData: map[string]string{"SMTP_ADDRESS": "mail.example"}}
	if err := as.Create(ctx, settings); err != nil {
		t.Errorf("admin writing their apps' settings: %v", err)
	}
	settings.StringData = map[string]string{"SMTP_ADDRESS": "smtp.example"}
	if err := as.Update(ctx, settings); err != nil {
		t.Errorf("admin changing their apps' settings: %v", err)
	}
	recipients := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: specs.BackupRecipientsSecretName, Namespace: "coop-rbac-a"}, StringData: map[string]string{"recipients": "age1old"}}
	if err := as.Create(ctx, recipients); err != nil {
		t.Errorf("admin writing their backups' recipients: %v", err)
	}
	recipients.StringData = map[string]string{"recipients": "age1new"}
	if err := as.Update(ctx, recipients); err != nil {
		t.Errorf("admin changing their backups' recipients: %v", err)
	}
	if err := as.Create(ctx, &v1alpha1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: "coop-rbac-a"}}); err != nil {
		t.Errorf("admin asking for a Restore of their coop: %v", err)
	}

	forbidden := map[string]error{}
	appSecret := &corev1.Secret{}
	mustGet(t, "coop-rbac-a", "app", appSecret)
	appSecret.StringData = map[string]string{"k": "changed"}
	forbidden["changing a Secret that is not the settings"] = as.Update(ctx, appSecret)
	forbidden["asking for a Restore in another coop"] = as.Create(ctx, &v1alpha1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "theirs", Namespace: "coop-rbac-b"}})
	forbidden["reading another coop's Cooperative"] = as.Get(ctx, client.ObjectKey{Name: "rbac-b"}, &v1alpha1.Cooperative{})
	forbidden["listing every Cooperative"] = as.List(ctx, &v1alpha1.CooperativeList{})
	forbidden["changing their Cooperative"] = as.Patch(ctx, &v1alpha1.Cooperative{ObjectMeta: metav1.ObjectMeta{Name: "rbac-a"}},
		client.RawPatch(types.MergePatchType, []byte(`{"spec":{"plan":"other"}}`)))
	forbidden["reading a Secret of another coop"] = as.Get(ctx, client.ObjectKey{Namespace: "coop-rbac-b", Name: "app"}, &corev1.Secret{})
	quota := &corev1.ResourceQuota{}
	mustGet(t, "coop-rbac-a", specs.ResourceQuotaName, quota)
	quota.Spec.Hard[corev1.ResourceRequestsCPU] = resource.MustParse("100")
	forbidden["raising their quota"] = as.Update(ctx, quota)
	forbidden["deleting a network policy"] = as.Delete(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "coop-rbac-a", Name: specs.DenyAllPolicy}})
	forbidden["deleting the limit range"] = as.Delete(ctx, &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: "coop-rbac-a", Name: specs.LimitRangeName}})
	forbidden["creating an Ingress"] = as.Create(ctx, &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "coop-rbac-a", Name: "mine"},
		Spec:       networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "x", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
	})
	//nolint:staticcheck // Endpoints are deprecated, but a coop forging them would still hijack a Service.
	forbidden["creating Endpoints"] = as.Create(ctx, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: "coop-rbac-a", Name: "mine"}})
	forbidden["changing their RoleBinding"] = as.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "coop-rbac-a", Name: specs.AdminRoleBindingName}})
	forbidden["changing the admins' ClusterRole"] = as.Delete(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: specs.AdminRoleName}})
	for what, err := range forbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("admin %s: got %v, want Forbidden", what, err)
		}
	}
}

func mustGet(t testing.TB, namespace, name string, obj client.Object) {
	t.Helper()
	if err := adminClient.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
		t.Fatalf("getting %T %s/%s: %v", obj, namespace, name, err)
	}
}

func assertControlledBy(t testing.TB, obj client.Object, coop *v1alpha1.Cooperative) {
	t.Helper()
	owner := metav1.GetControllerOf(obj)
	if owner == nil || owner.UID != coop.UID || owner.Kind != "Cooperative" {
		t.Errorf("%T %s: controller owner = %+v, want Cooperative %s", obj, obj.GetName(), owner, coop.Name)
	}
}

// TestAdminRoleOfEarlierVersionsIsReplaced starts the operator on a coop
// whose admins hold a Role of its namespace, as the operator made them
// before the shared admin ClusterRole: the binding moves to the ClusterRole
// and the old Role goes, with what it granted beyond it.
func TestAdminRoleOfEarlierVersionsIsReplaced(t *testing.T) {
	ctx := context.Background()
	create(t, newPlan("old-rbac-plan"))
	coop := newCoop("old-rbac", "old-rbac-plan")
	create(t, coop)
	ns := coop.NamespaceName()
	owner := []metav1.OwnerReference{*metav1.NewControllerRef(coop, v1alpha1.GroupVersion.WithKind("Cooperative"))}
	labels := map[string]string{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue, v1alpha1.CooperativeLabel: coop.Name}
	old := metav1.ObjectMeta{Name: specs.AdminRoleBindingName, Namespace: ns, Labels: labels, OwnerReferences: owner}
	create(t,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels, OwnerReferences: owner}},
		&rbacv1.Role{ObjectMeta: old, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create"}},
		}},
		&rbacv1.RoleBinding{ObjectMeta: old,
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: specs.AdminRoleBindingName},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "old-rbac-admin"}},
		})

	startOperator(t)
	waitReady(t, "old-rbac")
	binding := &rbacv1.RoleBinding{}
	mustGet(t, ns, specs.AdminRoleBindingName, binding)
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != specs.AdminRoleName {
		t.Errorf("roleRef = %+v, want ClusterRole %s", binding.RoleRef, specs.AdminRoleName)
	}
	assertControlledBy(t, binding, coop)
	err := adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: specs.AdminRoleBindingName}, &rbacv1.Role{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("the old Role: got %v, want NotFound", err)
	}

	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "old-rbac-admin"}
	as, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := as.List(ctx, &corev1.PodList{}, client.InNamespace(ns)); err != nil {
		t.Errorf("admin listing pods through the new binding: %v", err)
	}
	err = as.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: ns}})
	if !apierrors.IsForbidden(err) {
		t.Errorf("admin creating a ConfigMap as the old Role allowed: got %v, want Forbidden", err)
	}
}

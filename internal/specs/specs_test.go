package specs

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

type coopOption func(*v1alpha1.Cooperative)

func withAdmins(admins ...v1alpha1.Subject) coopOption {
	return func(c *v1alpha1.Cooperative) { c.Spec.Admins = admins }
}

func testCoop(opts ...coopOption) *v1alpha1.Cooperative {
	c := &v1alpha1.Cooperative{
		ObjectMeta: metav1.ObjectMeta{Name: "bakers", UID: "uid-1"},
		Spec:       v1alpha1.CooperativeSpec{DisplayName: "Bakers", Plan: "seed"},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func testPlan(defaults v1alpha1.ContainerDefaults) *v1alpha1.Plan {
	return &v1alpha1.Plan{
		ObjectMeta: metav1.ObjectMeta{Name: "seed"},
		Spec: v1alpha1.PlanSpec{
			Quota:             v1alpha1.PlanQuota{CPU: resource.MustParse("2"), Memory: resource.MustParse("4Gi"), Storage: resource.MustParse("20Gi"), Pods: 15},
			ContainerDefaults: defaults,
		},
	}
}

func TestNamespaceEnforcesRestrictedAndIsOwned(t *testing.T) {
	ns := Namespace(testCoop())
	if *ns.Name != "coop-bakers" {
		t.Errorf("name = %s", *ns.Name)
	}
	for k, want := range map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		v1alpha1.CooperativeLabel:            "bakers",
		v1alpha1.ManagedByLabel:              v1alpha1.ManagedByValue,
	} {
		if ns.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, ns.Labels[k], want)
		}
	}
	if len(ns.OwnerReferences) != 1 || *ns.OwnerReferences[0].UID != "uid-1" || !*ns.OwnerReferences[0].Controller {
		t.Errorf("owner references = %+v", ns.OwnerReferences)
	}
}

func TestResourceQuotaFollowsPlan(t *testing.T) {
	q := ResourceQuota(testCoop(), testPlan(v1alpha1.ContainerDefaults{}))
	hard := q.Spec.Hard
	cases := map[corev1.ResourceName]string{
		corev1.ResourceRequestsCPU:           "2",
		corev1.ResourceLimitsCPU:             "2",
		corev1.ResourceRequestsMemory:        "4Gi",
		corev1.ResourceLimitsMemory:          "4Gi",
		corev1.ResourceRequestsStorage:       "20Gi",
		corev1.ResourcePods:                  "15",
		corev1.ResourceServicesLoadBalancers: "0",
		corev1.ResourceServicesNodePorts:     "0",
	}
	for name, want := range cases {
		got, ok := (*hard)[name]
		if !ok || got.Cmp(resource.MustParse(want)) != 0 {
			t.Errorf("%s = %v, want %s", name, got.String(), want)
		}
	}
}

func TestLimitRangeDefaults(t *testing.T) {
	cpu := resource.MustParse("250m")
	cases := []struct {
		name       string
		defaults   v1alpha1.ContainerDefaults
		wantReqCPU string
		wantLimMem string
	}{
		{"plan sets none", v1alpha1.ContainerDefaults{}, "50m", "512Mi"},
		{"plan sets request cpu", v1alpha1.ContainerDefaults{Requests: v1alpha1.ComputeResources{CPU: &cpu}}, "250m", "512Mi"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lr := LimitRange(testCoop(), testPlan(tc.defaults))
			item := lr.Spec.Limits[0]
			gotCPU := (*item.DefaultRequest)[corev1.ResourceCPU]
			gotMem := (*item.Default)[corev1.ResourceMemory]
			if gotCPU.Cmp(resource.MustParse(tc.wantReqCPU)) != 0 || gotMem.Cmp(resource.MustParse(tc.wantLimMem)) != 0 {
				t.Errorf("default request cpu %s, limit memory %s; want %s, %s", gotCPU.String(), gotMem.String(), tc.wantReqCPU, tc.wantLimMem)
			}
		})
	}
}

func TestNetworkPoliciesDenyByDefaultAndOpenOnlyWhatIsNeeded(t *testing.T) {
	opts := Options{IngressNamespace: "ingress", DNSNamespace: "kube-system", DatabaseCIDRs: []string{"10.9.0.0/16"}}
	policies := NetworkPolicies(testCoop(), opts)
	byName := map[string]int{}
	for i, p := range policies {
		byName[*p.Name] = i
		if *p.Namespace != "coop-bakers" {
			t.Errorf("%s is in namespace %s", *p.Name, *p.Namespace)
		}
	}
	deny := policies[byName[DenyAllPolicy]].Spec
	if len(deny.Ingress) != 0 || len(deny.Egress) != 0 || !slices.Contains(deny.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("deny-all allows something: %+v", deny)
	}
	// No policy may open the coop to every namespace, except the database
	// rule, which is limited to database-server pods and port 5432.
	for _, p := range policies {
		for _, rule := range p.Spec.Ingress {
			for _, peer := range rule.From {
				if peer.NamespaceSelector != nil && len(peer.NamespaceSelector.MatchLabels) == 0 {
					t.Errorf("%s lets every namespace in", *p.Name)
				}
			}
		}
	}
	ingress := policies[byName[AllowFromIngress]].Spec.Ingress[0].From[0]
	if ingress.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "ingress" {
		t.Errorf("ingress peer = %+v", ingress)
	}
	db := policies[byName[AllowToDatabasePolicy]].Spec.Egress[0]
	if len(db.To) != 2 || *db.To[1].IPBlock.CIDR != "10.9.0.0/16" || db.Ports[0].Port.IntValue() != 5432 {
		t.Errorf("database egress = %+v", db)
	}

	if _, ok := byName[AllowToBackupRunner]; ok {
		t.Errorf("without the operator's namespace, no path to a backup runner is opened")
	}

	// With it, the coop's pods reach their own backup runner, and only it.
	opts.OperatorNamespace = "cooperator-system"
	policies = NetworkPolicies(testCoop(), opts)
	runner := policies[len(policies)-1]
	if *runner.Name != AllowToBackupRunner {
		t.Fatalf("last policy is %s, want %s", *runner.Name, AllowToBackupRunner)
	}
	to := runner.Spec.Egress[0].To[0]
	if to.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "cooperator-system" ||
		to.PodSelector.MatchLabels[BackupRunnerLabel] != "bakers" || runner.Spec.Egress[0].Ports[0].Port.IntValue() != VolumesPort {
		t.Errorf("backup runner egress = %+v", runner.Spec.Egress[0])
	}
}

func TestAdminsCannotChangeWhatIsolatesThem(t *testing.T) {
	protected := []string{"resourcequotas", "limitranges", "networkpolicies", "ingresses", "endpoints", "endpointslices", "roles", "rolebindings"}
	for _, rule := range AdminRules() {
		for _, res := range rule.Resources {
			if !slices.Contains(protected, res) {
				continue
			}
			for _, verb := range rule.Verbs {
				if !slices.Contains([]string{"get", "list", "watch"}, verb) {
					t.Errorf("admins may %s %s", verb, res)
				}
			}
		}
		if slices.Contains(rule.Verbs, "*") || slices.Contains(rule.Resources, "*") {
			t.Errorf("wildcard rule %+v", rule)
		}
	}
}

func TestAdminRoleBindingSubjects(t *testing.T) {
	rb := AdminRoleBinding(testCoop(withAdmins(
		v1alpha1.Subject{Name: "ana"},
		v1alpha1.Subject{Kind: v1alpha1.SubjectKindGroup, Name: "bakers-admins"},
	)))
	if len(rb.Subjects) != 2 || *rb.Subjects[0].Kind != "User" || *rb.Subjects[1].Kind != "Group" {
		t.Errorf("subjects = %+v", rb.Subjects)
	}
	if *rb.RoleRef.Name != AdminRoleName || *rb.RoleRef.Kind != "ClusterRole" {
		t.Errorf("roleRef = %+v", rb.RoleRef)
	}
}

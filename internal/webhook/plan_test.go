package webhook

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

func testPlan(edit func(*v1alpha1.PlanSpec)) *v1alpha1.Plan {
	plan := &v1alpha1.Plan{ObjectMeta: metav1.ObjectMeta{Name: "small"}, Spec: v1alpha1.PlanSpec{
		Quota: v1alpha1.PlanQuota{CPU: resource.MustParse("2"), Memory: resource.MustParse("4Gi"), Storage: resource.MustParse("10Gi"), Pods: 20},
	}}
	if edit != nil {
		edit(&plan.Spec)
	}
	return plan
}

func TestPlanValidation(t *testing.T) {
	for name, tc := range map[string]struct {
		edit         func(*v1alpha1.PlanSpec)
		want, warned string
	}{
		"defaults": {},
		"schedule out of range": {
			edit: func(s *v1alpha1.PlanSpec) { s.Backup.Schedule = "61 * * * *" },
			want: `spec.backup.schedule: Invalid value: "61 * * * *": `,
		},
		"drill schedule of six fields": {
			edit: func(s *v1alpha1.PlanSpec) { s.Backup.Drill.Schedule = "0 0 5 * * 0" },
			want: `spec.backup.drill.schedule: Invalid value: "0 0 5 * * 0"`,
		},
		"descriptor schedule": {edit: func(s *v1alpha1.PlanSpec) { s.Backup.Schedule = "@daily" }},
		"schedule with a time zone": {
			edit: func(s *v1alpha1.PlanSpec) { s.Backup.Schedule = "CRON_TZ=Europe/Paris 0 3 * * *" },
			want: `spec.backup.schedule: Invalid value: "CRON_TZ=Europe/Paris 0 3 * * *": a time zone`,
		},
		"request above the default limit": {
			edit: func(s *v1alpha1.PlanSpec) { s.ContainerDefaults.Requests.Memory = new(resource.MustParse("1Gi")) },
			want: `spec.containerDefaults.requests.memory: Invalid value: "1Gi": must not be more than the default limit, 512Mi`,
		},
		"default limit above the quota": {
			edit: func(s *v1alpha1.PlanSpec) { s.ContainerDefaults.Limits.CPU = new(resource.MustParse("3")) },
			want: `spec.containerDefaults.limits.cpu: Invalid value: "3": must not be more than spec.quota.cpu, 2`,
		},
		"bad selector": {
			edit: func(s *v1alpha1.PlanSpec) {
				s.Database.ServerSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "pool", Operator: "Near"}}}
			},
			want: `spec.database.serverSelector: Invalid value`,
		},
		"dedicated plan beyond its storage": {
			edit: func(s *v1alpha1.PlanSpec) {
				s.Database.Mode = v1alpha1.DatabaseModeDedicated
				s.Database.Dedicated = v1alpha1.DedicatedDatabase{Instances: 3, Storage: new(resource.MustParse("5Gi"))}
			},
			want: `spec.database.dedicated.storage: Invalid value: "5Gi": 3 instances of it need 15Gi, more than spec.quota.storage, 10Gi`,
		},
		"shared plan whose dedicated size does not fit": {
			edit: func(s *v1alpha1.PlanSpec) {
				s.Database.Dedicated = v1alpha1.DedicatedDatabase{Instances: 3, Storage: new(resource.MustParse("5Gi"))}
			},
			warned: "spec.database.dedicated.storage: 3 instances of it need 15Gi",
		},
	} {
		t.Run(name, func(t *testing.T) {
			plan := testPlan(tc.edit)
			w := &PlanWebhook{}
			if err := w.Default(context.Background(), plan); err != nil {
				t.Fatal(err)
			}
			errs, warnings := validatePlan(&plan.Spec)
			got := errs.ToAggregate()
			switch {
			case tc.want == "" && got != nil:
				t.Errorf("want no error, got %v", got)
			case tc.want != "" && (got == nil || !strings.Contains(got.Error(), tc.want)):
				t.Errorf("want an error saying %q, got %v", tc.want, got)
			}
			if all := strings.Join(warnings, "\n"); !strings.Contains(all, tc.warned) || (tc.warned == "" && all != "") {
				t.Errorf("want warnings saying %q, got %q", tc.warned, all)
			}
		})
	}
}

func TestPlanDefaultsAreTheOperatorsOwn(t *testing.T) {
	plan := testPlan(func(s *v1alpha1.PlanSpec) { s.ContainerDefaults.Limits.Memory = new(resource.MustParse("1Gi")) })
	want := plan.Spec.EffectiveContainerDefaults()
	if err := (&PlanWebhook{}).Default(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	d := plan.Spec.ContainerDefaults
	for what, pair := range map[string][2]*resource.Quantity{
		"requests.cpu": {d.Requests.CPU, want.Requests.CPU}, "requests.memory": {d.Requests.Memory, want.Requests.Memory},
		"limits.cpu": {d.Limits.CPU, want.Limits.CPU}, "limits.memory": {d.Limits.Memory, want.Limits.Memory},
	} {
		if pair[0] == nil || pair[0].Cmp(*pair[1]) != 0 {
			t.Errorf("defaulted %s: got %v, want %v", what, pair[0], pair[1])
		}
	}
	if d.Limits.Memory.String() != "1Gi" {
		t.Errorf("the plan's own limit was overwritten: %v", d.Limits.Memory)
	}
}

func TestBlueprintField(t *testing.T) {
	bp := &v1alpha1.Blueprint{Spec: v1alpha1.BlueprintSpec{Resources: []v1alpha1.BlueprintFile{
		{Name: "service.yaml", Content: "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"},
		{Name: "web.yaml", Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"},
	}}}
	for problem, want := range map[string]string{
		"version 1.0: Deployment/app-web: pod security restricted: privileged": "spec.resources[1].content: version 1.0: Deployment web: pod security restricted: privileged",
		`version 1.0: spec.expose.service: no Service "x" in the base`:         `spec.expose.service: version 1.0: no Service "x" in the base`,
		"version 1.0: Ingress/app-web: kind Ingress is not allowed":            "spec.resources: version 1.0: Ingress/app-web: kind Ingress is not allowed",
		"version 2.0: accumulating resources: bad YAML":                        "spec.resources: version 2.0: accumulating resources: bad YAML",
	} {
		path, detail := blueprintField(bp, problem)
		if got := path.String() + ": " + detail; got != want {
			t.Errorf("%q: got %q, want %q", problem, got, want)
		}
	}
}

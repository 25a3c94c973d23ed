package blueprint

import (
	"fmt"
	"sort"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// Violation is one reason a rendered object may not be applied.
type Violation struct {
	// Object is "Kind/name".
	Object string
	// Reason says what is wrong, in words a sysadmin can act on.
	Reason string
}

func (v Violation) String() string { return v.Object + ": " + v.Reason }

// Budget is what the coop's plan allows all of an app's pods together.
type Budget struct {
	CPU, Memory resource.Quantity
	// DefaultCPU and DefaultMemory are the limits a container without its
	// own gets from the namespace's LimitRange.
	DefaultCPU, DefaultMemory resource.Quantity
}

// allowedKinds are what an app may bring. The operator owns exposure
// (Ingress, Route, Gateway, LoadBalancer Services), isolation
// (NetworkPolicy, quota, RBAC) and anything cluster-wide. Render's label
// paths (templateLabelPaths, selectorLabelPaths) cover these kinds.
var allowedKinds = map[string]bool{
	"Deployment": true, "StatefulSet": true, "Job": true, "CronJob": true,
	"Service": true, "ConfigMap": true, "Secret": true, "PersistentVolumeClaim": true, "ServiceAccount": true,
}

var restricted = psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}

// podSecurity is built once: building it inflates every check for every
// Kubernetes version, about 170 KB each time, and Check runs in every pass
// of every coop. An evaluator only reads its checks, so passes share it.
var podSecurity = sync.OnceValues(func() (policy.Evaluator, error) {
	return policy.NewEvaluator(policy.DefaultChecks(), nil)
})

// Check finds what in objs may not run in a coop's namespace: kinds an app
// may not bring, Services that would bypass the ingress, pods that Pod
// Security Admission restricted refuses (privileged, host namespaces,
// hostPath, root, capabilities, seccomp), and limits beyond the budget.
// An empty result means the objects may be applied.
func Check(objs []*unstructured.Unstructured, budget Budget) ([]Violation, error) {
	evaluator, err := podSecurity()
	if err != nil {
		return nil, err
	}
	var out []Violation
	var cpu, memory resource.Quantity
	for _, u := range objs {
		id := u.GetKind() + "/" + u.GetName()
		if !allowedKinds[u.GetKind()] {
			out = append(out, Violation{id, fmt.Sprintf("kind %s is not allowed in a blueprint: the operator owns exposure, isolation and cluster-wide objects", u.GetKind())})
			continue
		}
		if u.GetKind() == "Service" {
			if t, _, _ := unstructured.NestedString(u.Object, "spec", "type"); t != "" && t != string(corev1.ServiceTypeClusterIP) {
				out = append(out, Violation{id, fmt.Sprintf("spec.type %s is not allowed: apps are exposed through the operator's Ingress or HTTPRoute", t)})
			}
			continue
		}
		meta, spec, replicas, err := podTemplate(u)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		if spec == nil {
			continue
		}
		for _, r := range evaluator.EvaluatePod(restricted, meta, spec) {
			if !r.Allowed {
				out = append(out, Violation{id, fmt.Sprintf("pod security restricted: %s (%s)", r.ForbiddenReason, r.ForbiddenDetail)})
			}
		}
		podCPU, podMemory := podLimits(spec, budget)
		for range replicas {
			cpu.Add(podCPU)
			memory.Add(podMemory)
		}
	}
	if cpu.Cmp(budget.CPU) > 0 {
		out = append(out, Violation{"app", fmt.Sprintf("its pods' CPU limits add up to %s, more than the plan's %s", cpu.String(), budget.CPU.String())})
	}
	if memory.Cmp(budget.Memory) > 0 {
		out = append(out, Violation{"app", fmt.Sprintf("its pods' memory limits add up to %s, more than the plan's %s", memory.String(), budget.Memory.String())})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Object < out[j].Object })
	return out, nil
}

// podTemplate is the pod template of a workload, and how many pods of it
// run at once.
func podTemplate(u *unstructured.Unstructured) (*metav1.ObjectMeta, *corev1.PodSpec, int, error) {
	from := func(into runtime.Object) error {
		return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)
	}
	replicas := func(r *int32) int {
		if r == nil {
			return 1
		}
		return int(*r)
	}
	switch u.GetKind() {
	case "Deployment":
		var d appsv1.Deployment
		if err := from(&d); err != nil {
			return nil, nil, 0, err
		}
		return &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec, replicas(d.Spec.Replicas), nil
	case "StatefulSet":
		var s appsv1.StatefulSet
		if err := from(&s); err != nil {
			return nil, nil, 0, err
		}
		return &s.Spec.Template.ObjectMeta, &s.Spec.Template.Spec, replicas(s.Spec.Replicas), nil
	case "Job":
		var j batchv1.Job
		if err := from(&j); err != nil {
			return nil, nil, 0, err
		}
		return &j.Spec.Template.ObjectMeta, &j.Spec.Template.Spec, replicas(j.Spec.Parallelism), nil
	case "CronJob":
		var c batchv1.CronJob
		if err := from(&c); err != nil {
			return nil, nil, 0, err
		}
		t := c.Spec.JobTemplate.Spec.Template
		return &t.ObjectMeta, &t.Spec, replicas(c.Spec.JobTemplate.Spec.Parallelism), nil
	}
	return nil, nil, 0, nil
}

// podLimits adds up a pod's container limits; a container without a limit
// gets the namespace's default. Init containers run before the others, so
// the pod needs the larger of the two.
func podLimits(spec *corev1.PodSpec, budget Budget) (cpu, memory resource.Quantity) {
	sum := func(containers []corev1.Container) (resource.Quantity, resource.Quantity) {
		var c, m resource.Quantity
		for _, ctr := range containers {
			if l, ok := ctr.Resources.Limits[corev1.ResourceCPU]; ok {
				c.Add(l)
			} else {
				c.Add(budget.DefaultCPU)
			}
			if l, ok := ctr.Resources.Limits[corev1.ResourceMemory]; ok {
				m.Add(l)
			} else {
				m.Add(budget.DefaultMemory)
			}
		}
		return c, m
	}
	cpu, memory = sum(spec.Containers)
	for _, init := range spec.InitContainers {
		c, m := sum([]corev1.Container{init})
		if c.Cmp(cpu) > 0 {
			cpu = c
		}
		if m.Cmp(memory) > 0 {
			memory = m
		}
	}
	return cpu, memory
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// tracker records when each tenant was started and when it was first seen
// Ready.
type tracker struct {
	mu      sync.Mutex
	started map[string]time.Time
	ready   map[string]time.Time
}

func newTracker() *tracker {
	return &tracker{started: map[string]time.Time{}, ready: map[string]time.Time{}}
}

func (t *tracker) start(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started[name] = time.Now()
}

func (t *tracker) observe(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.ready[name]; !ok {
		t.ready[name] = time.Now()
	}
}

// waitAll waits until every name is Ready.
func (t *tracker) waitAll(ctx context.Context, names []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		t.mu.Lock()
		missing := 0
		for _, n := range names {
			if _, ok := t.ready[n]; !ok {
				missing++
			}
		}
		t.mu.Unlock()
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d not Ready after %s", missing, len(names), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// run is what one contender did for its tenants.
type run struct {
	// AllReadySeconds is from the first tenant's start to the last one Ready.
	AllReadySeconds float64 `json:"allReadySeconds"`
	// P50Seconds and P99Seconds are of each tenant's start to Ready.
	P50Seconds float64 `json:"p50Seconds"`
	P99Seconds float64 `json:"p99Seconds"`
	// Curve is the number of Ready tenants at each second from the first start.
	Curve []int `json:"readyBySecond"`
	// ServerCPUSeconds is the CPU time of the API server and etcd from the
	// first start until every tenant was Ready.
	ServerCPUSeconds float64 `json:"serverCPUSeconds"`
	// CPUByProcess is the CPU time of each control-plane process and of the
	// bench over the same span (the operator's is its pass's cpuSeconds).
	CPUByProcess map[string]float64 `json:"cpuSecondsByProcess"`
	// APIServerRequests are the API server's requests from every client
	// over the same span, by verb and resource.
	APIServerRequests map[string]float64 `json:"apiServerRequests"`
}

func (t *tracker) result(names []string) run {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first, last time.Time
	var each []float64
	var readyAt []float64
	for _, n := range names {
		s, r := t.started[n], t.ready[n]
		if first.IsZero() || s.Before(first) {
			first = s
		}
		if r.After(last) {
			last = r
		}
		each = append(each, r.Sub(s).Seconds())
	}
	for _, n := range names {
		readyAt = append(readyAt, t.ready[n].Sub(first).Seconds())
	}
	sort.Float64s(each)
	sort.Float64s(readyAt)
	out := run{AllReadySeconds: round(last.Sub(first).Seconds()), P50Seconds: round(quantile(each, 0.5)), P99Seconds: round(quantile(each, 0.99))}
	for sec, i := 0, 0; i < len(readyAt); sec++ {
		for i < len(readyAt) && readyAt[i] <= float64(sec) {
			i++
		}
		out.Curve = append(out.Curve, i)
	}
	return out
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func round(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }

// watchCoops records each Cooperative Ready for its generation.
func watchCoops(ctx context.Context, dyn dynamic.Interface, t *tracker) {
	watch(ctx, dyn, coopsGVR, func(u *unstructured.Unstructured) {
		observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
		if observed == u.GetGeneration() && conditionTrue(u, v1alpha1.ReadyCondition) {
			t.observe(u.GetName())
		}
	})
}

// watchDeployments records each tenant namespace whose Deployment is Available.
func watchDeployments(ctx context.Context, dyn dynamic.Interface, t *tracker) {
	watch(ctx, dyn, deploymentsGVR, func(u *unstructured.Unstructured) {
		if conditionTrue(u, "Available") {
			t.observe(u.GetNamespace())
		}
	})
}

func watch(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, seen func(*unstructured.Unstructured)) {
	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	informer := factory.ForResource(gvr).Informer()
	handle := func(obj any) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			seen(u)
		}
	}
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: handle, UpdateFunc: func(_, o any) { handle(o) }})
	factory.Start(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), informer.HasSynced)
}

func conditionTrue(u *unstructured.Unstructured, typ string) bool {
	conditions, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conditions {
		if m, ok := c.(map[string]any); ok && m["type"] == typ && m["status"] == "True" {
			return true
		}
	}
	return false
}

// pool runs do for every name on workers goroutines, and returns the first error.
func pool(names []string, workers int, do func(name string) error) error {
	ch := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range ch {
				if err := do(n); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%s: %w", n, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, n := range names {
		ch <- n
	}
	close(ch)
	wg.Wait()
	return first
}

// newCoop is a coop with the bench app.
func newCoop(name, plan string) *v1alpha1.Cooperative {
	return &v1alpha1.Cooperative{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.CooperativeSpec{
			DisplayName: "Bench " + name,
			Plan:        plan,
			Admins:      []v1alpha1.Subject{{Kind: v1alpha1.SubjectKindUser, Name: name + "@bench.example"}},
			Apps:        []v1alpha1.CooperativeApp{{Name: "web", Blueprint: "bench-web", Version: "1"}},
		},
	}
}

// createCoops creates the coops as fast as the API server takes them.
func createCoops(ctx context.Context, c client.Client, t *tracker, names []string, plan string) error {
	return pool(names, 16, func(n string) error {
		t.start(n)
		return c.Create(ctx, newCoop(n, plan))
	})
}

// tenantKinds are the kinds the operator may create in a coop's namespace.
var tenantKinds = []schema.GroupVersionResource{
	{Version: "v1", Resource: "resourcequotas"},
	{Version: "v1", Resource: "limitranges"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
	{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
	{Version: "v1", Resource: "secrets"},
	{Version: "v1", Resource: "configmaps"},
	{Version: "v1", Resource: "serviceaccounts"},
	{Version: "v1", Resource: "services"},
	{Version: "v1", Resource: "persistentvolumeclaims"},
	clustersGVR,
	deploymentsGVR,
	{Group: "apps", Version: "v1", Resource: "statefulsets"},
	{Group: "batch", Version: "v1", Resource: "cronjobs"},
	{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"},
}

// captured is one object the operator made for a coop, with the resource
// it is created through.
type captured struct {
	gvr schema.GroupVersionResource
	obj *unstructured.Unstructured
}

// captureStack reads what the operator made for one coop: its namespace and
// every object the operator labels as its own in it, in creation order.
func captureStack(ctx context.Context, dyn dynamic.Interface, coop string) ([]captured, error) {
	namespace := v1alpha1.NamespacePrefix + coop
	ns, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Get(ctx, namespace, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	out := []captured{{gvr: schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, obj: ns}}
	selector := v1alpha1.ManagedByLabel + "=" + v1alpha1.ManagedByValue
	for _, gvr := range tenantKinds {
		list, err := dyn.Resource(gvr).Namespace(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", gvr.Resource, err)
		}
		sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].GetName() < list.Items[j].GetName() })
		for i := range list.Items {
			out = append(out, captured{gvr: gvr, obj: &list.Items[i]})
		}
	}
	// Cluster-wide objects of the coop: its admins' access to its record.
	for _, gvr := range clusterKinds {
		list, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: selector + "," + v1alpha1.CooperativeLabel + "=" + coop})
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", gvr.Resource, err)
		}
		for i := range list.Items {
			out = append(out, captured{gvr: gvr, obj: &list.Items[i]})
		}
	}
	return out, nil
}

// memberRolePrefix starts the names of a coop's ClusterRole and binding.
const memberRolePrefix = "cooperator:cooperative:"

// clusterKinds are the cluster-wide kinds the operator may create for a coop.
var clusterKinds = []schema.GroupVersionResource{
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
}

// describe lists the stack as kind/name.
func describe(stack []captured) []string {
	var out []string
	for _, c := range stack {
		out = append(out, c.obj.GetKind()+"/"+c.obj.GetName())
	}
	return out
}

// forTenant turns the operator's objects of coop into a plain tenant's:
// the namespace and names follow the tenant, what only the API server
// writes is dropped, and managedBy marks them as not the operator's, so
// that its caches never see them.
func forTenant(stack []captured, coop, tenant, managedBy string) ([]captured, error) {
	var out []captured
	for _, c := range stack {
		data, err := json.Marshal(c.obj.Object)
		if err != nil {
			return nil, err
		}
		data = bytes.ReplaceAll(data, []byte(v1alpha1.NamespacePrefix+coop), []byte(tenant))
		data = bytes.ReplaceAll(data, []byte(memberRolePrefix+coop), []byte(memberRolePrefix+tenant))
		// Labels of pod templates too: no pod of the floor may be the operator's.
		data = bytes.ReplaceAll(data, []byte(fmt.Sprintf("%q:%q", v1alpha1.ManagedByLabel, v1alpha1.ManagedByValue)),
			[]byte(fmt.Sprintf("%q:%q", v1alpha1.ManagedByLabel, managedBy)))
		data = bytes.ReplaceAll(data, []byte(fmt.Sprintf("%q:%q", v1alpha1.CooperativeLabel, coop)),
			[]byte(fmt.Sprintf("%q:%q", v1alpha1.CooperativeLabel, tenant)))
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			return nil, err
		}
		for _, f := range []string{"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "ownerReferences"} {
			unstructured.RemoveNestedField(u.Object, "metadata", f)
		}
		unstructured.RemoveNestedField(u.Object, "status")
		if c.obj.GetKind() == "Service" {
			// Allocated by the API server.
			for _, f := range []string{"clusterIP", "clusterIPs"} {
				unstructured.RemoveNestedField(u.Object, "spec", f)
			}
		}
		out = append(out, captured{gvr: c.gvr, obj: u})
	}
	return out, nil
}

// floor creates the same objects as the operator for each tenant with plain
// client-go, without client-side throttling: the namespace first, then the
// rest in the operator's order.
func floor(ctx context.Context, dyn dynamic.Interface, t *tracker, stack []captured, coop string, tenants []string, workers int) error {
	return pool(tenants, workers, func(tenant string) error {
		objs, err := forTenant(stack, coop, tenant, "bench-floor")
		if err != nil {
			return err
		}
		t.start(tenant)
		for _, c := range objs {
			r := dyn.Resource(c.gvr)
			var err error
			if ns := c.obj.GetNamespace(); ns != "" {
				_, err = r.Namespace(ns).Create(ctx, c.obj, metav1.CreateOptions{})
			} else {
				_, err = r.Create(ctx, c.obj, metav1.CreateOptions{})
			}
			if err != nil {
				return fmt.Errorf("creating %s %s: %w", c.obj.GetKind(), c.obj.GetName(), err)
			}
		}
		return nil
	})
}

// helmInstalls runs one `helm install` per tenant, parallel at a time, as a
// sysadmin's script would.
func helmInstalls(ctx context.Context, helm, chart, kubeconfig, releaseNS string, t *tracker, tenants []string, parallel int) error {
	return pool(tenants, parallel, func(tenant string) error {
		t.start(tenant)
		cmd := exec.CommandContext(ctx, helm, "install", tenant, chart, "--namespace", releaseNS,
			"--set", "namespace="+tenant, "--kubeconfig", kubeconfig)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("helm install: %w: %s", err, out)
		}
		return nil
	})
}

// checkChart renders the chart for one tenant and compares its objects'
// kinds and names with the operator's.
func checkChart(helm, chart, name string, stack []captured) error {
	out, err := exec.Command(helm, "template", name, chart, "--set", "namespace="+v1alpha1.NamespacePrefix+name).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("helm template: %w: %s", err, ee.Stderr)
		}
		return err
	}
	var rendered []string
	for _, doc := range strings.Split(string(out), "\n---") {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return err
		}
		if head.Kind != "" {
			rendered = append(rendered, head.Kind+"/"+head.Metadata.Name)
		}
	}
	want := describe(stack)
	sort.Strings(rendered)
	sort.Strings(want)
	if strings.Join(rendered, " ") != strings.Join(want, " ") {
		return fmt.Errorf("the chart renders %v; the operator made %v", rendered, want)
	}
	return nil
}

// writeStack records the operator's objects, for the record and for
// comparing the chart by eye.
func writeStack(path string, stack []captured) error {
	var b bytes.Buffer
	for _, c := range stack {
		data, err := yaml.Marshal(c.obj.Object)
		if err != nil {
			return err
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// clusterRBAC are the cluster-wide kinds of a tenant's stack.
var clusterRBAC = []schema.GroupVersionResource{
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
}

// deleteClusterRBAC deletes the ClusterRoles and ClusterRoleBindings of
// the tenants managedBy made, and waits until they are gone.
func deleteClusterRBAC(ctx context.Context, dyn dynamic.Interface, managedBy string) error {
	selector := metav1.ListOptions{LabelSelector: v1alpha1.ManagedByLabel + "=" + managedBy}
	for _, gvr := range clusterRBAC {
		if err := dyn.Resource(gvr).DeleteCollection(ctx, metav1.DeleteOptions{}, selector); err != nil {
			return fmt.Errorf("deleting %s: %w", gvr.Resource, err)
		}
	}
	return waitGone(ctx, dyn, selector, clusterRBAC...)
}

// deleteServices deletes the Services of the tenants managedBy made, and
// waits until they, and the EndpointSlices that carry their labels, are
// gone. Each Service's cluster IP is allocated by a walk over the addresses
// already taken, so the Services of an earlier contender make a later
// one's cost more.
func deleteServices(ctx context.Context, dyn dynamic.Interface, managedBy string, workers int) error {
	selector := metav1.ListOptions{LabelSelector: v1alpha1.ManagedByLabel + "=" + managedBy}
	services := schema.GroupVersionResource{Version: "v1", Resource: "services"}
	slices := schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}
	list, err := dyn.Resource(services).List(ctx, selector)
	if err != nil {
		return fmt.Errorf("listing Services: %w", err)
	}
	var keys []string
	for _, s := range list.Items {
		keys = append(keys, s.GetNamespace()+"/"+s.GetName())
	}
	err = pool(keys, workers, func(key string) error {
		namespace, name, _ := strings.Cut(key, "/")
		return client.IgnoreNotFound(dyn.Resource(services).Namespace(namespace).Delete(ctx, name, metav1.DeleteOptions{}))
	})
	if err != nil {
		return fmt.Errorf("deleting Service %w", err)
	}
	return waitGone(ctx, dyn, selector, services, slices)
}

// waitGone waits until no object of the kinds matches selector.
func waitGone(ctx context.Context, dyn dynamic.Interface, selector metav1.ListOptions, gvrs ...schema.GroupVersionResource) error {
	err := wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, gvr := range gvrs {
			list, err := dyn.Resource(gvr).List(ctx, selector)
			if err != nil || len(list.Items) > 0 {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to go: %w", selector.LabelSelector, err)
	}
	return nil
}

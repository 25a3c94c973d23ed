package ssa

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/internal/testenv"
)

// staleCache misses every object, as a cache does that has not yet seen
// one just made.
type staleCache struct{ client.Client }

func (s staleCache) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	return apierrors.NewNotFound(schema.GroupResource{}, key.Name)
}

// TestCreatedObjectsDropWhatTheyNoLongerWant runs against a real API server:
// objects are made with POST, and a later apply still removes a field that
// desired no longer sets, which it would not if the create's Update entry
// kept owning it.
func TestCreatedObjectsDropWhatTheyNoLongerWant(t *testing.T) {
	ctx := context.Background()
	env, err := testenv.Start(ctx, testenv.Options{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Stop)
	c, err := client.New(env.Config, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("hashed", func(t *testing.T) {
		apply := func(cl client.Client, labels map[string]string) bool {
			t.Helper()
			sent, err := ApplyHashed(ctx, cl, c, &corev1.Namespace{}, corev1ac.Namespace("created").WithLabels(labels), corev1ac.ExtractNamespace)
			if err != nil {
				t.Fatal(err)
			}
			return sent
		}
		if !apply(c, map[string]string{"keep": "1", "drop": "1"}) {
			t.Fatal("nothing sent for a missing namespace")
		}
		ns := &corev1.Namespace{}
		getCreated(t, c, ns)
		if entries := ownEntries(ns.ManagedFields); len(entries) != 1 || entries[0] != metav1.ManagedFieldsOperationUpdate {
			t.Errorf("the operator's entries are %v, want one Update entry (a create)", entries)
		}
		rv := ns.ResourceVersion
		if apply(c, map[string]string{"keep": "1", "drop": "1"}) {
			t.Error("a write for an unchanged namespace")
		}
		// A cache that has not seen the namespace: the create fails, and the
		// namespace as the API server has it needs nothing more.
		apply(staleCache{c}, map[string]string{"keep": "1", "drop": "1"})
		getCreated(t, c, ns)
		if ns.ResourceVersion != rv {
			t.Errorf("an unchanged namespace was written: resourceVersion %s, was %s", ns.ResourceVersion, rv)
		}

		if !apply(c, map[string]string{"keep": "1"}) {
			t.Fatal("nothing sent for a changed namespace")
		}
		getCreated(t, c, ns)
		if _, ok := ns.Labels["drop"]; ok || ns.Labels["keep"] != "1" {
			t.Errorf("labels %v, want keep and not drop", ns.Labels)
		}
		if entries := ownEntries(ns.ManagedFields); len(entries) != 1 || entries[0] != metav1.ManagedFieldsOperationApply {
			t.Errorf("the operator's entries are %v, want its Apply entry only", entries)
		}

		// A label removed by hand leaves no other manager's entry behind.
		delete(ns.Labels, "keep")
		if err := c.Update(ctx, ns); err != nil {
			t.Fatal(err)
		}
		if !apply(c, map[string]string{"keep": "1"}) {
			t.Error("nothing sent for a namespace whose label was removed by hand")
		}
		getCreated(t, c, ns)
		if ns.Labels["keep"] != "1" {
			t.Errorf("labels %v, want keep put back", ns.Labels)
		}
	})

	t.Run("typed", func(t *testing.T) {
		apply := func(data map[string]string) bool {
			t.Helper()
			desired := corev1ac.Secret("created", "default").WithType(corev1.SecretTypeOpaque).WithStringData(data)
			sent, err := Apply(ctx, c, c, &corev1.Secret{}, desired, corev1ac.ExtractSecret)
			if err != nil {
				t.Fatal(err)
			}
			return sent
		}
		if !apply(map[string]string{"a": "1", "b": "1"}) {
			t.Fatal("nothing sent for a missing Secret")
		}
		if apply(map[string]string{"a": "1", "b": "1"}) {
			t.Error("a write for an unchanged Secret")
		}
		if !apply(map[string]string{"a": "2"}) {
			t.Fatal("nothing sent for a changed Secret")
		}
		live := &corev1.Secret{}
		getCreated(t, c, live)
		if _, ok := live.Data["b"]; ok || string(live.Data["a"]) != "2" {
			t.Errorf("data %v, want a=2 and no b", live.Data)
		}
	})

	t.Run("unstructured", func(t *testing.T) {
		cm := func(data map[string]any) *unstructured.Unstructured {
			u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": map[string]any{"name": "created", "namespace": "default"}, "data": data}}
			return u
		}
		if sent, err := ApplyUnstructured(ctx, c, c, cm(map[string]any{"a": "1", "b": "1"})); err != nil || !sent {
			t.Fatalf("create: sent %v, err %v", sent, err)
		}
		live := &corev1.ConfigMap{}
		getCreated(t, c, live)
		rv := live.ResourceVersion
		if sent, err := ApplyUnstructured(ctx, staleCache{c}, c, cm(map[string]any{"a": "1", "b": "1"})); err != nil {
			t.Fatal(err)
		} else if getCreated(t, c, live); live.ResourceVersion != rv || sent {
			t.Errorf("after a stale read: resourceVersion %s (was %s), sent %v; want unchanged and nothing sent", live.ResourceVersion, rv, sent)
		}
		// Made by someone else: a stale cache costs a create that fails.
		elsewhere := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "default"}, Data: map[string]string{"a": "1"}}
		if err := c.Create(ctx, elsewhere); err != nil {
			t.Fatal(err)
		}
		want := cm(map[string]any{"a": "1"})
		want.SetName("elsewhere")
		if sent, err := ApplyUnstructured(ctx, staleCache{c}, c, want); err != nil || !sent {
			t.Errorf("a stale read of an object made elsewhere: sent %v, err %v; want the failed create counted", sent, err)
		}
		if sent, err := ApplyUnstructured(ctx, c, c, cm(map[string]any{"a": "2"})); err != nil || !sent {
			t.Fatalf("change: sent %v, err %v", sent, err)
		}
		getCreated(t, c, live)
		if _, ok := live.Data["b"]; ok || live.Data["a"] != "2" {
			t.Errorf("data %v, want a=2 and no b", live.Data)
		}
	})
}

// getCreated reads the object named "created" of obj's kind.
func getCreated(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	ns := ""
	if _, ok := obj.(*corev1.Namespace); !ok {
		ns = "default"
	}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "created"}, obj); err != nil {
		t.Fatal(err)
	}
}

// ownEntries lists the operations of FieldOwner's entries on the object
// itself.
func ownEntries(entries []metav1.ManagedFieldsEntry) []metav1.ManagedFieldsOperationType {
	var ops []metav1.ManagedFieldsOperationType
	for _, e := range entries {
		if e.Manager == FieldOwner && e.Subresource == "" {
			ops = append(ops, e.Operation)
		}
	}
	return ops
}

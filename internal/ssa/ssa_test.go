package ssa

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestContains(t *testing.T) {
	live := map[string]any{"spec": map[string]any{"instances": float64(1), "storage": map[string]any{"size": "5Gi"}, "extra": "x"},
		"list": []any{map[string]any{"a": "b", "c": "d"}}}
	cases := []struct {
		name string
		want map[string]any
		ok   bool
	}{
		{"subset", map[string]any{"spec": map[string]any{"instances": int64(1), "storage": map[string]any{"size": "5Gi"}}}, true},
		{"list items subset", map[string]any{"list": []any{map[string]any{"a": "b"}}}, true},
		{"changed value", map[string]any{"spec": map[string]any{"instances": int64(2)}}, false},
		{"missing field", map[string]any{"spec": map[string]any{"storage": map[string]any{"class": "fast"}}}, false},
		{"longer list", map[string]any{"list": []any{"a", "b"}}, false},
	}
	for _, tc := range cases {
		if got := contains(live, tc.want); got != tc.ok {
			t.Errorf("%s: contains = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestStripToWritersKeepsWritersOfTheObjectAndTheCreate(t *testing.T) {
	ns := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{
		{Manager: FieldOwner, Operation: metav1.ManagedFieldsOperationApply, FieldsV1: metav1.NewFieldsV1(`{"f:spec":{}}`)},
		{Manager: FieldOwner, Operation: metav1.ManagedFieldsOperationUpdate, FieldsV1: metav1.NewFieldsV1(`{"f:spec":{}}`)},
		{Manager: "kubectl-edit", Operation: metav1.ManagedFieldsOperationUpdate, FieldsV1: metav1.NewFieldsV1(`{"f:spec":{}}`)},
		{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, Subresource: "status"},
	}}}
	StripToWriters(ns)
	got := ns.ManagedFields
	if len(got) != 2 || got[0].Manager != FieldOwner || got[0].Operation != metav1.ManagedFieldsOperationUpdate ||
		got[1].Manager != "kubectl-edit" || got[0].FieldsV1 != nil || got[1].FieldsV1 != nil {
		t.Errorf("kept %+v, want the operator's Update entry and kubectl-edit's, without their fields", got)
	}
}

func TestHashedChangesWithTheContentOnly(t *testing.T) {
	a := corev1ac.Namespace("coop-a").WithLabels(map[string]string{"x": "1", "y": "2"})
	b := corev1ac.Namespace("coop-a").WithLabels(map[string]string{"y": "2", "x": "1"})
	c := corev1ac.Namespace("coop-a").WithLabels(map[string]string{"x": "1", "y": "3"})
	wa, err := hashed(a)
	if err != nil {
		t.Fatal(err)
	}
	wb, _ := hashed(b)
	wc, _ := hashed(c)
	ha, hb, hc := wa.hash, wb.hash, wc.hash
	if ha != hb || ha == hc {
		t.Errorf("hashes %s %s %s: want the first two equal, the third apart", ha, hb, hc)
	}
	ua, err := wa.unstructured()
	if err != nil {
		t.Fatal(err)
	}
	if ua.GetAnnotations()[AppliedAnnotation] != ha || ua.GetLabels()["y"] != "2" || ua.GetKind() != "Namespace" {
		t.Errorf("applied object %v, want the desired one with its hash", ua.Object)
	}
	if wa.meta.Annotations[AppliedAnnotation] != ha || wa.meta.Labels["y"] != "2" || wa.meta.Name != "coop-a" || wa.meta.Kind != "Namespace" {
		t.Errorf("metadata %+v, want the desired one's with its hash", wa.meta)
	}
	if a.Annotations != nil {
		t.Errorf("desired was changed: %v", a.Annotations)
	}
}

// toCreate is what getOrCreate would send for desired, and its hash.
func toCreate(t *testing.T, desired ApplyConfiguration) (client.Object, string) {
	t.Helper()
	w, err := hashed(desired)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := w.creation(clientgoscheme.Scheme).object()
	if err != nil {
		t.Fatal(err)
	}
	return obj, w.hash
}

func TestCreationIsTypedWhenTheSchemeKnowsTheKind(t *testing.T) {
	obj, hash := toCreate(t, corev1ac.ConfigMap("settings", "coop-a").WithData(map[string]string{"k": "v"}))
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		t.Fatalf("created %T, want *v1.ConfigMap", obj)
	}
	if cm.Name != "settings" || cm.Namespace != "coop-a" || cm.Data["k"] != "v" || cm.Annotations[AppliedAnnotation] != hash {
		t.Errorf("created %+v, want the desired ConfigMap with its hash", cm)
	}

	foreign := &unstructuredApply{u: &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
		"metadata": map[string]any{"name": "database", "namespace": "coop-a"},
		"spec":     map[string]any{"instances": int64(1)},
	}}}
	unknown, err := hashed(foreign)
	if err != nil {
		t.Fatal(err)
	}
	if unknown.meta.Kind != "Cluster" || unknown.meta.Name != "database" || unknown.meta.Namespace != "coop-a" {
		t.Errorf("metadata %+v, want the Cluster's", unknown.meta)
	}
	obj, err = unknown.creation(clientgoscheme.Scheme).object()
	if err != nil {
		t.Fatal(err)
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		t.Fatalf("created %T, want unstructured", obj)
	}
	if n, _, _ := unstructured.NestedInt64(u.Object, "spec", "instances"); n != 1 || u.GetAnnotations()[AppliedAnnotation] != unknown.hash {
		t.Errorf("created %v, want the desired Cluster with its hash", u.Object)
	}
}

func TestMetadataOfAnApplyConfigurationIsItsEncodedMetadata(t *testing.T) {
	desired := corev1ac.ConfigMap("settings", "coop-a").WithLabels(map[string]string{"l": "1"}).
		WithAnnotations(map[string]string{"a": "2"}).WithData(map[string]string{"k": "v"})
	var read, decoded metav1.PartialObjectMetadata
	if !metadataOf(desired, &read) {
		t.Fatal("metadataOf read nothing of a client-go apply configuration")
	}
	data, err := json.Marshal(desired)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &decoded); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(read, decoded) {
		t.Errorf("metadataOf read %+v, the encoded object has %+v", read, decoded)
	}
	if metadataOf(&unstructuredApply{u: &unstructured.Unstructured{}}, &read) {
		t.Error("metadataOf read an apply configuration without embedded metadata")
	}
}

func TestCreationKeepsAFieldTheTypeLacks(t *testing.T) {
	desired := &unstructuredApply{u: &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "settings", "namespace": "coop-a"},
		"data":     map[string]any{"k": "v"},
		"newField": "kept",
	}}}
	obj, _ := toCreate(t, desired)
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		t.Fatalf("created %T, which drops newField; want unstructured", obj)
	}
	if u.Object["newField"] != "kept" {
		t.Errorf("created %v, want newField kept", u.Object)
	}
}

// unstructuredApply is an apply configuration of a kind no scheme knows.
type unstructuredApply struct{ u *unstructured.Unstructured }

func (a *unstructuredApply) IsApplyConfiguration()        {}
func (a *unstructuredApply) GetName() *string             { n := a.u.GetName(); return &n }
func (a *unstructuredApply) GetNamespace() *string        { n := a.u.GetNamespace(); return &n }
func (a *unstructuredApply) MarshalJSON() ([]byte, error) { return a.u.MarshalJSON() }

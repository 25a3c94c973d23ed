package ssa

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
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
	ua, ha, err := hashed(a)
	if err != nil {
		t.Fatal(err)
	}
	_, hb, _ := hashed(b)
	_, hc, _ := hashed(c)
	if ha != hb || ha == hc {
		t.Errorf("hashes %s %s %s: want the first two equal, the third apart", ha, hb, hc)
	}
	if ua.GetAnnotations()[AppliedAnnotation] != ha || ua.GetLabels()["y"] != "2" || ua.GetKind() != "Namespace" {
		t.Errorf("applied object %v, want the desired one with its hash", ua.Object)
	}
	if a.Annotations != nil {
		t.Errorf("desired was changed: %v", a.Annotations)
	}
}

package ssa

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStripForeignManagedFieldsKeepsOnlyOurs(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{
		{Manager: "kubectl"}, {Manager: FieldOwner, Operation: metav1.ManagedFieldsOperationApply}, {Manager: "kube-controller-manager"},
	}}}
	original := ns.ManagedFields
	out, err := StripForeignManagedFields(ns)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Namespace).ManagedFields
	if len(got) != 1 || got[0].Manager != FieldOwner {
		t.Errorf("kept %+v, want only %s", got, FieldOwner)
	}
	if original[0].Manager != "kubectl" {
		t.Errorf("the input's slice was changed in place: %+v", original)
	}
}

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

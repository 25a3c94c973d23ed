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

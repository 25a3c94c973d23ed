package controllers

import (
	"reflect"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// decoded is metadata as decoding makes it: every string its own copy.
func decoded(name, namespace string) *metav1.PartialObjectMetadata {
	own := func(s string) string { return string([]byte(s)) }
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: own(name), Namespace: own(namespace), UID: types.UID(own("uid-" + name)),
		Labels:      map[string]string{own("app.kubernetes.io/managed-by"): own("cooperator"), own("cooperator.dev/cooperative"): own("bakers")},
		Annotations: map[string]string{own("cooperator.dev/applied"): own("hash-of-" + name)},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: own("cooperator.dev/v1alpha1"), Kind: own("Cooperative"),
			Name: own("bakers"), UID: types.UID(own("coop-uid"))}},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: own("cooperator"), Operation: metav1.ManagedFieldsOperationUpdate}},
	}}
}

func sameBytes(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

func TestCachedMetadataSharesRepeatedStrings(t *testing.T) {
	a, b := decoded("deny-all", "coop-bakers"), decoded("allow-dns", "coop-bakers")
	want := a.DeepCopy()
	for _, o := range []*metav1.PartialObjectMetadata{a, b} {
		if _, err := compactCached(o); err != nil {
			t.Fatal(err)
		}
	}
	if !equality.Semantic.DeepEqual(a.ObjectMeta, want.ObjectMeta) {
		t.Fatalf("the transform changed the metadata:\n%+v\nwant\n%+v", a.ObjectMeta, want.ObjectMeta)
	}
	checks := map[string][2]string{
		"namespace":         {a.Namespace, b.Namespace},
		"owner name":        {a.OwnerReferences[0].Name, b.OwnerReferences[0].Name},
		"owner uid":         {string(a.OwnerReferences[0].UID), string(b.OwnerReferences[0].UID)},
		"owner kind":        {a.OwnerReferences[0].Kind, b.OwnerReferences[0].Kind},
		"manager":           {a.ManagedFields[0].Manager, b.ManagedFields[0].Manager},
		"label value":       {a.Labels["cooperator.dev/cooperative"], b.Labels["cooperator.dev/cooperative"]},
		"manager and label": {a.ManagedFields[0].Manager, b.Labels["app.kubernetes.io/managed-by"]},
	}
	for what, pair := range checks {
		if !sameBytes(pair[0], pair[1]) {
			t.Errorf("%s %q is held twice", what, pair[0])
		}
	}
	for k := range a.Labels {
		for k2 := range b.Labels {
			if k == k2 && !sameBytes(k, k2) {
				t.Errorf("label key %q is held twice", k)
			}
		}
	}
	if reflect.ValueOf(a.Labels).UnsafePointer() != reflect.ValueOf(b.Labels).UnsafePointer() {
		t.Error("two objects with the same labels hold a map each")
	}
	if sameBytes(a.Annotations["cooperator.dev/applied"], b.Annotations["cooperator.dev/applied"]) {
		t.Error("two different annotation values share bytes")
	}

	// Typed objects too; the cache's deep copies stay independent.
	s := &corev1.Secret{ObjectMeta: decoded("database", "coop-bakers").ObjectMeta}
	s.Labels["cooperator.dev/app"] = "shop"
	if _, err := compactCached(s); err != nil {
		t.Fatal(err)
	}
	if !sameBytes(s.Namespace, a.Namespace) || !sameBytes(s.OwnerReferences[0].APIVersion, a.OwnerReferences[0].APIVersion) {
		t.Error("a typed object's metadata does not share the strings")
	}
	if reflect.ValueOf(s.Labels).UnsafePointer() == reflect.ValueOf(a.Labels).UnsafePointer() || len(a.Labels) != 2 {
		t.Errorf("objects with different labels share a map: %v", a.Labels)
	}
	c := s.DeepCopy()
	c.Labels["cooperator.dev/cooperative"] = "potters"
	if s.Labels["cooperator.dev/cooperative"] != "bakers" {
		t.Error("changing a copy changed the cached object")
	}
}

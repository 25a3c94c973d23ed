package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
)

func TestOwningCooperativeIsTheControllerOfItsGroup(t *testing.T) {
	ref := func(apiVersion, kind, name string, controller bool) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID("u-" + name), Controller: ptr.To(controller)}
	}
	gv := v1alpha1.GroupVersion.String()
	cases := []struct {
		name   string
		owners []metav1.OwnerReference
		want   string
	}{
		{"controlled by a coop", []metav1.OwnerReference{ref(gv, v1alpha1.CooperativeKind, "velo", true)}, "velo"},
		{"another version of the group", []metav1.OwnerReference{ref(v1alpha1.GroupVersion.Group+"/v1", v1alpha1.CooperativeKind, "velo", true)}, "velo"},
		{"the coop beside another owner", []metav1.OwnerReference{ref("v1", "ConfigMap", "x", false), ref(gv, v1alpha1.CooperativeKind, "velo", true)}, "velo"},
		{"owned, not controlled", []metav1.OwnerReference{ref(gv, v1alpha1.CooperativeKind, "velo", false)}, ""},
		{"a kind of the same name in another group", []metav1.OwnerReference{ref("example.org/v1", v1alpha1.CooperativeKind, "velo", true)}, ""},
		{"another kind of the group", []metav1.OwnerReference{ref(gv, "Restore", "velo", true)}, ""},
		{"no owner", nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "database", Namespace: "coop-velo", OwnerReferences: tc.owners}}
			got := owningCooperative(context.Background(), obj)
			switch {
			case tc.want == "" && len(got) != 0:
				t.Fatalf("queued %v, want nothing", got)
			case tc.want != "" && (len(got) != 1 || got[0].NamespacedName != client.ObjectKey{Name: tc.want}):
				t.Fatalf("queued %v, want the cluster-scoped coop %q", got, tc.want)
			}
		})
	}
}

package ssa

import (
	"context"
	"reflect"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ApplyUnstructured applies an object of a kind the operator has no Go
// types for (a CloudNativePG Cluster). It creates a missing object, and
// sends nothing when every field of desired already has its value in the
// live object. Unlike Apply it cannot see a field that desired no longer
// sets; such a field goes at the next apply that changes anything. It
// reports whether it sent a write.
func ApplyUnstructured(ctx context.Context, c client.Client, reader client.Reader, desired *unstructured.Unstructured) (bool, error) {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(desired.GroupVersionKind())
	made, sent, err := getOrCreate(ctx, c, reader, unstructuredCreation(c.Scheme(), desired), live)
	if made || err != nil {
		return sent, err
	}
	if contains(live.Object, desired.Object) {
		return sent, nil
	}
	if slices.ContainsFunc(live.GetManagedFields(), createEntry) {
		if err := upgrade(ctx, c, reader, desired.GroupVersionKind(), client.ObjectKeyFromObject(desired)); err != nil {
			return true, err
		}
	}
	return true, c.Apply(ctx, client.ApplyConfigurationFromUnstructured(desired), client.FieldOwner(FieldOwner), client.ForceOwnership)
}

// contains reports whether every value in want is in have.
func contains(have, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range w {
			if !contains(h[k], v) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return false
		}
		for i := range w {
			if !contains(h[i], w[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(normalize(have), normalize(want))
	}
}

// normalize makes numbers from JSON and from Go comparable.
func normalize(v any) any {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int32:
		return int64(n)
	case float64:
		if n == float64(int64(n)) {
			return int64(n)
		}
	}
	return v
}

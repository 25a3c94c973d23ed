// Package ssa makes objects hold what the operator wants under one field
// owner: it creates missing objects, changes them with server-side apply,
// and sends nothing when the live object already holds what that owner
// applied, so an unchanged coop costs no write requests.
package ssa

import (
	"context"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldOwner is the field manager of everything the operator applies.
const FieldOwner = "cooperator"

// ApplyConfiguration is a typed apply configuration from client-go.
type ApplyConfiguration interface {
	runtime.ApplyConfiguration
	GetName() *string
	GetNamespace() *string
}

// Extractor returns what a field manager owns of a live object, as client-go's
// generated Extract functions do.
type Extractor[O client.Object, A ApplyConfiguration] func(live O, fieldManager string) (A, error)

// Apply makes the object named by desired hold desired, for kinds the cache
// keeps whole. It creates a missing object, and applies when the object's
// AppliedAnnotation differs from the hash of desired. When another field
// manager has written the object, it reads the whole object from reader and
// compares what FieldOwner owns, so a change made by hand is put back. It
// reports whether it sent a write.
func Apply[O client.Object, A ApplyConfiguration](ctx context.Context, c client.Client, reader client.Reader, live O, desired A, extract Extractor[O, A]) (bool, error) {
	return apply(ctx, c, reader, live, live, desired, extract)
}

// ApplyHashed is Apply for kinds the cache keeps as metadata only
// (metav1.PartialObjectMetadata).
func ApplyHashed[O client.Object, A ApplyConfiguration](ctx context.Context, c client.Client, reader client.Reader, live O, desired A, extract Extractor[O, A]) (bool, error) {
	return apply(ctx, c, reader, &metav1.PartialObjectMetadata{}, live, desired, extract)
}

// CreateHashed creates the object named by desired, of a kind the cache
// keeps as metadata only, as ApplyHashed would, unless it exists; then it
// reads it into existing and writes nothing, so that the caller can look at
// an object it may not own before applying. It reports whether it created
// the object. A create that finds the object costs less than a read before
// every create, when nearly every object asked for is new.
func CreateHashed[A ApplyConfiguration](ctx context.Context, c client.Client, reader client.Reader, desired A, existing *metav1.PartialObjectMetadata) (bool, error) {
	want, err := hashed(desired)
	if err != nil {
		return false, err
	}
	existing.SetGroupVersionKind(want.meta.GroupVersionKind())
	made, _, err := getOrCreate(ctx, c, reader, want.creation(c.Scheme()), existing)
	return made, err
}

// apply reads the object from c into cached, which is of the type c's cache
// keeps of the kind, and from reader into live when it must compare
// contents.
func apply[O client.Object, A ApplyConfiguration](ctx context.Context, c client.Client, reader client.Reader, cached client.Object, live O, desired A, extract Extractor[O, A]) (bool, error) {
	want, err := hashed(desired)
	if err != nil {
		return false, err
	}
	if meta, ok := cached.(*metav1.PartialObjectMetadata); ok {
		meta.SetGroupVersionKind(want.meta.GroupVersionKind())
	}
	made, sent, err := getOrCreate(ctx, c, reader, want.creation(c.Scheme()), cached)
	if made || err != nil {
		return sent, err
	}
	key := client.ObjectKeyFromObject(&want.meta)
	switch {
	case cached.GetAnnotations()[AppliedAnnotation] != want.hash:
	// A label removed by hand leaves no trace in managedFields; a missing
	// selector label also keeps the object out of the cache.
	case !subset(cached.GetLabels(), want.meta.Labels):
	case !slices.ContainsFunc(cached.GetManagedFields(), foreignWriter):
		return sent, nil
	default:
		same, err := ownsDesired(ctx, reader, key, live, want, extract)
		if err != nil || same {
			return sent, err
		}
	}
	if slices.ContainsFunc(cached.GetManagedFields(), createEntry) {
		if err := upgrade(ctx, c, reader, want.meta.GroupVersionKind(), key); err != nil {
			return true, err
		}
	}
	u, err := want.unstructured()
	if err != nil {
		return true, err
	}
	return true, c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership)
}

// Describe names an apply configuration for errors and logs: its kind and
// name, never its content.
func Describe(a ApplyConfiguration) string {
	type kinded interface{ GetKind() *string }
	kind := "object"
	if k, ok := a.(kinded); ok && k.GetKind() != nil {
		kind = *k.GetKind()
	}
	return fmt.Sprintf("%s %s", kind, ptr.Deref(a.GetName(), ""))
}

// subset reports whether every entry of want is in have.
func subset(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

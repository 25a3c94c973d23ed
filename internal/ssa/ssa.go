// Package ssa applies desired objects with server-side apply under one field
// owner, and sends nothing when the live object already holds exactly what
// that owner applied, so an unchanged coop costs no write requests.
package ssa

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// Apply makes the object named by desired hold desired. It reads the live
// object (from the cache when c is cached) and applies only when the fields
// FieldOwner owns differ from desired. It reports whether it sent a request.
func Apply[O client.Object, A ApplyConfiguration](ctx context.Context, c client.Client, live O, desired A, extract Extractor[O, A]) (bool, error) {
	key := client.ObjectKey{Name: ptr.Deref(desired.GetName(), ""), Namespace: ptr.Deref(desired.GetNamespace(), "")}
	err := c.Get(ctx, key, live)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return false, err
	default:
		owned, err := extract(live, FieldOwner)
		if err == nil && equality.Semantic.DeepEqual(owned, desired) {
			return false, nil
		}
	}
	if err := c.Apply(ctx, desired, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return true, err
	}
	return true, nil
}

// StripForeignManagedFields is a cache transform that keeps only FieldOwner's
// managedFields entries: Apply needs those to see that nothing changed, and
// the rest would only cost memory.
func StripForeignManagedFields(in any) (any, error) {
	obj, ok := in.(metav1.Object)
	if !ok {
		return in, nil
	}
	entries := obj.GetManagedFields()
	if len(entries) == 0 {
		return in, nil
	}
	kept := entries[:0:0]
	for _, e := range entries {
		if e.Manager == FieldOwner {
			kept = append(kept, e)
		}
	}
	obj.SetManagedFields(kept)
	return in, nil
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

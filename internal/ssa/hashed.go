package ssa

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// AppliedAnnotation holds a hash of what the operator last applied to an
// object that it caches as metadata only: the hash, not the content, tells
// that nothing changed.
const AppliedAnnotation = "cooperator.dev/applied"

// ApplyHashed is Apply for kinds the cache keeps as metadata only
// (metav1.PartialObjectMetadata, with StripToForeignWriters). It applies
// when the object is missing or its AppliedAnnotation differs from the hash
// of desired. When another field manager has written the object, it reads
// the whole object from reader and compares what FieldOwner owns, as Apply
// does, so a change made by hand is put back. It reports whether it sent a
// request.
func ApplyHashed[O client.Object, A ApplyConfiguration](ctx context.Context, c client.Client, reader client.Reader, live O, desired A, extract Extractor[O, A]) (bool, error) {
	want, hash, err := hashed(desired)
	if err != nil {
		return false, err
	}
	key := client.ObjectKey{Name: ptr.Deref(desired.GetName(), ""), Namespace: ptr.Deref(desired.GetNamespace(), "")}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(want.GroupVersionKind())
	err = c.Get(ctx, key, meta)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return false, err
	case meta.Annotations[AppliedAnnotation] != hash:
	case len(meta.ManagedFields) == 0:
		return false, nil
	default:
		same, err := ownsDesired(ctx, reader, key, live, want, extract)
		if err != nil || same {
			return false, err
		}
	}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(want), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return true, err
	}
	return true, nil
}

// hashed is desired as an unstructured object that carries its own hash in
// AppliedAnnotation.
func hashed(desired ApplyConfiguration) (*unstructured.Unstructured, string, error) {
	data, err := json.Marshal(desired)
	if err != nil {
		return nil, "", fmt.Errorf("while encoding %s: %w", Describe(desired), err)
	}
	sum := sha256.Sum256(data)
	hash := base64.RawURLEncoding.EncodeToString(sum[:18])
	want, err := decode(data)
	if err != nil {
		return nil, "", fmt.Errorf("while decoding %s: %w", Describe(desired), err)
	}
	annotations := want.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AppliedAnnotation] = hash
	want.SetAnnotations(annotations)
	return want, hash, nil
}

// ownsDesired reads the whole object past the cache and says whether what
// FieldOwner owns of it is exactly want.
func ownsDesired[O client.Object, A ApplyConfiguration](ctx context.Context, reader client.Reader, key client.ObjectKey, live O, want *unstructured.Unstructured, extract Extractor[O, A]) (bool, error) {
	if err := reader.Get(ctx, key, live); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	owned, err := extract(live, FieldOwner)
	if err != nil {
		return false, nil
	}
	data, err := json.Marshal(owned)
	if err != nil {
		return false, err
	}
	have, err := decode(data)
	if err != nil {
		return false, err
	}
	return equality.Semantic.DeepEqual(have.Object, want.Object), nil
}

// decode reads an encoded apply configuration as unstructured, so that
// desired and owned compare with the same number types.
func decode(data []byte) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	return u, u.UnmarshalJSON(data)
}

// StripToForeignWriters is the cache transform of kinds applied with
// ApplyHashed. Of their managedFields it keeps, without their field sets,
// only the entries of other managers that wrote the object itself (not its
// status): those say that ApplyHashed must look closer.
func StripToForeignWriters(obj metav1.Object) {
	entries := obj.GetManagedFields()
	var kept []metav1.ManagedFieldsEntry
	for _, e := range entries {
		if e.Manager != FieldOwner && e.Subresource == "" {
			kept = append(kept, metav1.ManagedFieldsEntry{Manager: e.Manager, Operation: e.Operation, Time: e.Time})
		}
	}
	obj.SetManagedFields(kept)
}

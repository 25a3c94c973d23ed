package ssa

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// AppliedAnnotation holds a hash of what the operator last created or
// applied: the hash, not the content, tells that nothing changed, so the
// cache needs neither the content of metadata-only kinds nor the operator's
// managedFields.
const AppliedAnnotation = "cooperator.dev/applied"

// foreignWriter reports whether an entry is of a field manager other than
// FieldOwner that wrote the object itself (not its status).
func foreignWriter(e metav1.ManagedFieldsEntry) bool {
	return e.Manager != FieldOwner && e.Subresource == ""
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

// StripToWriters is the cache transform of every kind the ssa package
// writes. Of an object's managedFields it keeps, without their field
// sets and times, the entries of other managers that wrote the object
// itself (not its status), which say that the object must be compared more
// closely, and FieldOwner's Update entry, which says that the object was
// created and needs upgrade before an apply.
func StripToWriters(obj metav1.Object) {
	var kept []metav1.ManagedFieldsEntry
	for _, e := range obj.GetManagedFields() {
		if foreignWriter(e) || createEntry(e) {
			kept = append(kept, metav1.ManagedFieldsEntry{Manager: e.Manager, Operation: e.Operation, Subresource: e.Subresource})
		}
	}
	obj.SetManagedFields(kept)
}

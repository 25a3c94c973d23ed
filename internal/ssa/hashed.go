package ssa

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	sigsjson "sigs.k8s.io/json"
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

// wanted is what the operator wants of one object: its apply configuration
// encoded, the hash of that, and its metadata with the hash in
// AppliedAnnotation. Most passes find the object unchanged and need only the
// metadata; the whole object is decoded when it is created or applied.
type wanted struct {
	data []byte
	hash string
	meta metav1.PartialObjectMetadata
}

// hashed encodes desired and hashes it.
func hashed(desired ApplyConfiguration) (*wanted, error) {
	data, err := json.Marshal(desired)
	if err != nil {
		return nil, fmt.Errorf("while encoding %s: %w", Describe(desired), err)
	}
	sum := sha256.Sum256(data)
	w := &wanted{data: data, hash: base64.RawURLEncoding.EncodeToString(sum[:18])}
	if !metadataOf(desired, &w.meta) {
		if err := json.Unmarshal(data, &w.meta); err != nil {
			return nil, fmt.Errorf("while decoding %s: %w", Describe(desired), err)
		}
	}
	w.meta.SetAnnotations(w.annotations())
	return w, nil
}

// metadataOf copies the type and object metadata of desired into meta, when
// desired embeds them as client-go's apply configurations do: reading them
// costs less than decoding the encoded object again.
func metadataOf(desired ApplyConfiguration, meta *metav1.PartialObjectMetadata) bool {
	v := reflect.ValueOf(desired)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return false
	}
	tf := v.Elem().FieldByName("TypeMetaApplyConfiguration")
	of := v.Elem().FieldByName("ObjectMetaApplyConfiguration")
	if !tf.IsValid() || !of.IsValid() {
		return false
	}
	tm, ok := tf.Interface().(metav1ac.TypeMetaApplyConfiguration)
	if !ok {
		return false
	}
	om, ok := of.Interface().(*metav1ac.ObjectMetaApplyConfiguration)
	if !ok || om == nil {
		return false
	}
	meta.APIVersion, meta.Kind = ptr.Deref(tm.APIVersion, ""), ptr.Deref(tm.Kind, "")
	meta.Name, meta.Namespace = ptr.Deref(om.Name, ""), ptr.Deref(om.Namespace, "")
	meta.Labels, meta.Annotations = om.Labels, om.Annotations
	return true
}

// annotations are the object's annotations with its hash, in a new map.
func (w *wanted) annotations() map[string]string {
	annotations := make(map[string]string, len(w.meta.Annotations)+1)
	maps.Copy(annotations, w.meta.Annotations)
	annotations[AppliedAnnotation] = w.hash
	return annotations
}

// unstructured is the whole object as unstructured.
func (w *wanted) unstructured() (*unstructured.Unstructured, error) {
	u, err := decode(w.data)
	if err != nil {
		return nil, err
	}
	u.SetAnnotations(w.annotations())
	return u, nil
}

// creation is how getOrCreate makes the object: decoded straight into its
// Go type, as unstructuredCreation makes an unstructured object, or else as
// unstructured.
func (w *wanted) creation(scheme *runtime.Scheme) creation {
	return creation{gvk: w.meta.GroupVersionKind(), key: client.ObjectKeyFromObject(&w.meta), object: func() (client.Object, error) {
		if obj, err := scheme.New(w.meta.GroupVersionKind()); err == nil {
			if o, ok := obj.(client.Object); ok {
				strict, err := sigsjson.UnmarshalStrict(w.data, o, sigsjson.DisallowUnknownFields)
				if err == nil && len(strict) == 0 {
					o.SetAnnotations(w.annotations())
					return o, nil
				}
			}
		}
		return w.unstructured()
	}}
}

// ownsDesired reads the whole object past the cache and says whether what
// FieldOwner owns of it is exactly want.
func ownsDesired[O client.Object, A ApplyConfiguration](ctx context.Context, reader client.Reader, key client.ObjectKey, live O, want *wanted, extract Extractor[O, A]) (bool, error) {
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
	u, err := want.unstructured()
	if err != nil {
		return false, err
	}
	return equality.Semantic.DeepEqual(have.Object, u.Object), nil
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

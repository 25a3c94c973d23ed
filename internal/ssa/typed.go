package ssa

import (
	"context"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TypedReads wraps c so that reads into unstructured objects of kinds in c's
// scheme (an app's Deployment, Service or Job) go through the typed cache and
// are converted. The cache then keeps one informer per kind, of typed
// objects, which take a third of the memory of unstructured ones. Kinds
// without Go types (a CloudNativePG Cluster) are read as they are.
func TypedReads(c client.Client) client.Client {
	return &typedReads{Client: c}
}

type typedReads struct {
	client.Client
}

func (c *typedReads) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return c.Client.Get(ctx, key, obj, opts...)
	}
	gvk := u.GroupVersionKind()
	typed, err := c.Scheme().New(gvk)
	if err != nil {
		return c.Client.Get(ctx, key, obj, opts...)
	}
	t := typed.(client.Object)
	// t is converted, which copies it, and then dropped: it may be the
	// cache's own object rather than a copy of it.
	if err := c.Client.Get(ctx, key, t, append(opts[:len(opts):len(opts)], client.UnsafeDisableDeepCopy)...); err != nil {
		return err
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(t)
	if err != nil {
		return err
	}
	u.Object = m
	u.SetGroupVersionKind(gvk)
	return nil
}

func (c *typedReads) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	u, ok := list.(*unstructured.UnstructuredList)
	if !ok {
		return c.Client.List(ctx, list, opts...)
	}
	// controller-runtime takes a list's kind with or without "List".
	itemGVK := u.GroupVersionKind()
	itemGVK.Kind = strings.TrimSuffix(itemGVK.Kind, "List")
	typed, err := c.Scheme().New(itemGVK.GroupVersion().WithKind(itemGVK.Kind + "List"))
	if err != nil {
		return c.Client.List(ctx, list, opts...)
	}
	t := typed.(client.ObjectList)
	// As in Get, each item is converted and dropped.
	if err := c.Client.List(ctx, t, append(opts[:len(opts):len(opts)], client.UnsafeDisableDeepCopy)...); err != nil {
		return err
	}
	items, err := meta.ExtractList(t)
	if err != nil {
		return err
	}
	u.Items = make([]unstructured.Unstructured, 0, len(items))
	for _, item := range items {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(item)
		if err != nil {
			return err
		}
		obj := unstructured.Unstructured{Object: m}
		obj.SetGroupVersionKind(itemGVK)
		u.Items = append(u.Items, obj)
	}
	u.SetResourceVersion(t.GetResourceVersion())
	return nil
}

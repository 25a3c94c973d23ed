package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/testenv"
)

//go:embed manifests.yaml
var manifests []byte

// scheme is the operator's, and CRDs.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	return s
}()

var (
	coopsGVR       = v1alpha1.GroupVersion.WithResource("cooperatives")
	deploymentsGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	clustersGVR    = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"}
)

// installCRDs serves the operator's kinds, from config/crd/bases, and
// CloudNativePG's Cluster, with the smallest schema that keeps every field.
func installCRDs(ctx context.Context, c client.Client, root string) error {
	files, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil {
		return err
	}
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(data, crd); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if err := c.Create(ctx, crd); err != nil {
			return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
		}
		names = append(names, crd.Name)
	}
	cnpg := testenv.CNPGClusterCRD()
	if err := c.Create(ctx, cnpg); err != nil {
		return err
	}
	names = append(names, cnpg.Name)
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		for _, n := range names {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: n}, crd); err != nil {
				return false, err
			}
			established := false
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					established = true
				}
			}
			if !established {
				return false, nil
			}
		}
		return true, nil
	})
}

// applyManifests creates every object of a multi-document YAML.
func applyManifests(ctx context.Context, c client.Client, data []byte) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if len(u.Object) == 0 {
			continue
		}
		// The API server may need a moment to serve kinds just established.
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			err := c.Create(ctx, u)
			return err == nil || apierrors.IsAlreadyExists(err), nil
		})
		if err != nil {
			return fmt.Errorf("creating %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
}

// playCloudNativePG marks every CloudNativePG Cluster Ready as soon as it
// appears: CloudNativePG's pods could not run on fake nodes anyway, and the
// benchmark measures the operator, not PostgreSQL's start.
func playCloudNativePG(ctx context.Context, dyn dynamic.Interface) {
	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	informer := factory.ForResource(clustersGVR).Informer()
	todo := make(chan *unstructured.Unstructured, 100000)
	mark := func(obj any) {
		if u, ok := obj.(*unstructured.Unstructured); ok && !clusterReady(u) {
			todo <- u
		}
	}
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    mark,
		UpdateFunc: func(_, obj any) { mark(obj) },
	})
	var once sync.Once
	for range 8 {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case u := <-todo:
					u = u.DeepCopy()
					_ = unstructured.SetNestedSlice(u.Object, []any{map[string]any{
						"type": "Ready", "status": "True", "reason": "ClusterIsReady", "message": "Cluster is Ready",
						"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
					}}, "status", "conditions")
					_, err := dyn.Resource(clustersGVR).Namespace(u.GetNamespace()).UpdateStatus(ctx, u, metav1.UpdateOptions{})
					if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
						once.Do(func() { fmt.Fprintln(os.Stderr, "bench: marking a Cluster Ready:", err) })
					}
				}
			}
		}()
	}
	factory.Start(ctx.Done())
}

func clusterReady(u *unstructured.Unstructured) bool {
	conditions, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conditions {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// addDatabaseServer registers the real PostgreSQL server with the operator,
// as hack/localcluster does for `make demo`.
func addDatabaseServer(ctx context.Context, c client.Client, pg *testenv.Postgres, max int32) error {
	const password = "bench-admin-password"
	if err := pg.CreateAdmin(ctx, "cooperator", password); err != nil {
		return err
	}
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName("cooperator-system")
	if err := c.Create(ctx, ns); client.IgnoreAlreadyExists(err) != nil {
		return err
	}
	secret := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": "bench-postgres-admin", "namespace": "cooperator-system"},
		"stringData": map[string]any{"username": "cooperator", "password": password},
	}}
	if err := c.Create(ctx, secret); err != nil {
		return err
	}
	server := &v1alpha1.DatabaseServer{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: v1alpha1.DatabaseServerSpec{
			Host: pg.Host, Port: int32(pg.Port), SSLMode: "disable",
			AdminSecretRef: v1alpha1.SecretReference{Name: "bench-postgres-admin", Namespace: "cooperator-system"},
			MaxDatabases:   max,
		},
	}
	return c.Create(ctx, server)
}

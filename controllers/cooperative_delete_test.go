package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/specs"
)

func TestDeletingCoopRemovesItsNamespaceAndAllInIt(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	coop := newCoop("leaving", "leaving-plan")
	create(t, newPlan("leaving-plan"), coop)
	waitReady(t, "leaving")
	// Something the coop made itself, which only the namespace's deletion removes.
	create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "notes", Namespace: "coop-leaving"}})

	if err := adminClient.Delete(ctx, coop); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "namespace coop-leaving to be gone", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Name: "coop-leaving"}, &corev1.Namespace{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-leaving", Name: "notes"}, &corev1.ConfigMap{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("a ConfigMap of the deleted coop: got %v, want NotFound", err)
	}
}

// A dedicated cluster and the apps' claims live in the coop's namespace,
// which the garbage collector takes with the coop. Under Retain the
// namespace stays with them, its Secrets and its isolation, and only the
// workloads go; under Delete the final backup is taken before it goes.
func TestDeletingACoopKeepsItsNamespaceOfDataOrBacksItUpFirst(t *testing.T) {
	ctx := context.Background()
	store := dedicatedRestoreEnv(t, "leaving-cluster")
	keep := newCoop("keep-cluster", "leaving-cluster-plan")
	keep.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "files", Blueprint: "leaving-cluster-files", Version: "1.0"}}
	drop := newCoop("drop-cluster", "leaving-cluster-plan")
	drop.Spec.DeletionPolicy = v1alpha1.DeletionPolicyDelete
	drop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "web", Blueprint: "leaving-cluster-web", Version: "1.0"}}
	create(t, volumeBlueprint(t, "leaving-cluster-files"), keep, drop)
	waitReason(t, "keep-cluster", v1alpha1.ClusterNotReadyReason)
	markClusterReady(t, "coop-keep-cluster")
	waitReason(t, "drop-cluster", v1alpha1.ClusterNotReadyReason)
	playCloudNativePG(t, "coop-drop-cluster")
	keep = waitReady(t, "keep-cluster")
	drop = waitReady(t, "drop-cluster")
	for _, c := range []*v1alpha1.Cooperative{keep, drop} {
		if !slices.Contains(c.Finalizers, v1alpha1.DatabaseFinalizer) {
			t.Fatalf("coop %s has finalizers %v, want %s guarding its cluster", c.Name, c.Finalizers, v1alpha1.DatabaseFinalizer)
		}
	}

	// Retain.
	if err := adminClient.Delete(ctx, keep); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "", "keep-cluster", &v1alpha1.Cooperative{})
	waitFor(t, 90*time.Second, "the coop's workloads to go", func(ctx context.Context) (bool, error) {
		list := &appsv1.DeploymentList{}
		err := adminClient.List(ctx, list, client.InNamespace("coop-keep-cluster"))
		return err == nil && len(list.Items) == 0, err
	})
	ns := &corev1.Namespace{}
	mustGet(t, "", "coop-keep-cluster", ns)
	if !ns.DeletionTimestamp.IsZero() || ns.Labels[v1alpha1.RetainedLabel] != "keep-cluster" {
		t.Fatalf("namespace: deleted at %v, labels %v; want it kept and labelled %s=keep-cluster", ns.DeletionTimestamp, ns.Labels, v1alpha1.RetainedLabel)
	}
	cluster := &unstructured.Unstructured{}
	cluster.SetGroupVersionKind(CNPGCluster)
	kept := map[string]client.Object{
		"Cluster " + specs.ClusterName:                cluster,
		"Secret " + specs.ClusterBootstrapSecretName:  &corev1.Secret{},
		"Secret " + specs.DatabaseSecretName:          &corev1.Secret{},
		"PersistentVolumeClaim files-data":            &corev1.PersistentVolumeClaim{},
		"NetworkPolicy " + specs.AllowDatabaseCluster: &networkingv1.NetworkPolicy{},
		"ResourceQuota " + specs.ResourceQuotaName:    &corev1.ResourceQuota{},
	}
	// The garbage collector has had its chance: the workloads are gone.
	for what, obj := range kept {
		name := what[strings.Index(what, " ")+1:]
		if err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-keep-cluster", Name: name}, obj); err != nil {
			t.Errorf("%s of the retained namespace: %v", what, err)
			continue
		}
		if len(obj.GetOwnerReferences()) != 0 || !obj.GetDeletionTimestamp().IsZero() {
			t.Errorf("%s still has owners %v (deleted at %v)", what, obj.GetOwnerReferences(), obj.GetDeletionTimestamp())
		}
	}
	waitFor(t, 30*time.Second, "an event naming the kept claim", func(ctx context.Context) (bool, error) {
		var events corev1.EventList
		if err := adminClient.List(ctx, &events); err != nil {
			return false, err
		}
		return slices.ContainsFunc(events.Items, func(e corev1.Event) bool {
			return e.Reason == "NamespaceRetained" && e.InvolvedObject.Name == "keep-cluster" && strings.Contains(e.Message, "volume claims files-data")
		}), nil
	})
	// A new coop of the same name is told why it cannot have the namespace.
	create(t, newCoop("keep-cluster", "leaving-cluster-plan"))
	again := waitReason(t, "keep-cluster", v1alpha1.NamespaceOwnedElsewhereReason)
	if c := meta.FindStatusCondition(again.Status.Conditions, v1alpha1.NamespaceReadyCondition); c == nil || !strings.Contains(c.Message, "deletionPolicy Retain") {
		t.Errorf("NamespaceReady = %+v, want it to say the namespace was retained", c)
	}

	// Delete: the final backup first, then the namespace goes.
	if err := adminClient.Delete(ctx, drop); err != nil {
		t.Fatal(err)
	}
	final := specs.BackupName(drop) + "-final"
	if code, out := runHeldJobWith(t, final, toLocalServer); code != 0 {
		t.Fatalf("the final backup of the dedicated database failed: %s", out)
	}
	waitGone(t, "", "drop-cluster", &v1alpha1.Cooperative{})
	if m := latestBackup(t, store, "drop-cluster"); !slices.Equal(m.Databases(), []string{specs.DedicatedDatabase}) {
		t.Errorf("the final backup holds %v, want the cluster's database", m.Databases())
	}
	waitGone(t, "", "coop-drop-cluster", &corev1.Namespace{})
}

// waitGone waits until an object no longer exists.
func waitGone(t *testing.T, namespace, name string, obj client.Object) {
	t.Helper()
	waitFor(t, 2*time.Minute, fmt.Sprintf("%T %s to be gone", obj, name), func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj)
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

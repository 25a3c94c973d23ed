package controllers

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
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

package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/testenv"
)

// waitStore waits until the store's Ready condition has reason, and returns it.
func waitStore(t *testing.T, name, reason string) *metav1.Condition {
	t.Helper()
	var ready *metav1.Condition
	waitFor(t, 2*serverRefresh, "BackupStore "+name+" reason "+reason, func(ctx context.Context) (bool, error) {
		store := &v1alpha1.BackupStore{}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: name}, store); err != nil {
			return false, err
		}
		ready = meta.FindStatusCondition(store.Status.Conditions, v1alpha1.ReadyCondition)
		return ready != nil && ready.Reason == reason && store.Status.ObservedGeneration == store.Generation, nil
	})
	return ready
}

func TestBackupStoresReportWhetherTheirBucketAnswers(t *testing.T) {
	ctx := context.Background()
	s3, err := testenv.StartS3(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3.Remove)
	if err := s3.CreateBucket(ctx, "backups"); err != nil {
		t.Fatal(err)
	}
	startOperator(t)

	keys := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: adminNamespace, Name: "store-keys"},
		StringData: map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": s3.SecretKey},
	}
	store := func(name, bucket, secret string) *v1alpha1.BackupStore {
		return &v1alpha1.BackupStore{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.BackupStoreSpec{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: bucket, Insecure: true, PathStyle: true,
				CredentialsSecretRef: v1alpha1.SecretReference{Namespace: adminNamespace, Name: secret}},
		}
	}
	create(t, keys, store("good", "backups", "store-keys"), store("no-bucket", "missing", "store-keys"), store("no-keys", "backups", "nothing-here"))

	if c := waitStore(t, "good", v1alpha1.ReachableReason); c.Status != metav1.ConditionTrue {
		t.Errorf("good store: %+v", c)
	}
	waitStore(t, "no-bucket", v1alpha1.BucketNotFoundReason)
	waitStore(t, "no-keys", v1alpha1.CredentialsInvalidReason)

	// The server goes away: the store says so, and says so again when it is back.
	s3.Stop()
	waitStore(t, "good", v1alpha1.StoreUnreachableReason)
	if err := s3.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitStore(t, "good", v1alpha1.ReachableReason)
}

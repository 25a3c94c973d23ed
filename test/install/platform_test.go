package install

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// platformValues are a database server, a backup store and a plan kept in
// the release's values.
func platformValues() map[string]any {
	return map[string]any{
		"databaseServers": []any{map[string]any{
			"name":   "pg-values",
			"labels": map[string]any{"region": "north"},
			"spec": map[string]any{"host": "pg-1.db.example.coop", "port": 5432, "sslMode": "require",
				"adminSecretRef": map[string]any{"name": "pg-values-admin"}, "maxDatabases": 300},
		}},
		"backupStores": []any{map[string]any{
			"name": "store-values",
			"spec": map[string]any{"endpoint": "s3.example.coop", "region": "eu-west-1", "bucket": "coop-backups",
				"credentialsSecretRef": map[string]any{"name": "backup-keys", "namespace": "elsewhere"}},
		}},
		"plans": []any{map[string]any{
			"name": "plan-values",
			"spec": map[string]any{"costWeight": 2,
				"quota":  map[string]any{"cpu": "2", "memory": "4Gi", "storage": "20Gi", "pods": 20},
				"backup": map[string]any{"store": "store-values", "schedule": "0 2 * * *"}},
		}},
	}
}

func TestHelmInstallsThePlatformObjectsOfItsValues(t *testing.T) {
	ctx := context.Background()
	const ns = "cooperator-platform"
	restrictedNamespace(t, ns)
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pg-values-admin"},
		StringData: map[string]string{"username": "cooperator", "password": "secret"}}); err != nil {
		t.Fatal(err)
	}
	// Webhooks off: no manager runs on the fake nodes to admit them.
	values := platformValues()
	values["webhook"] = map[string]any{"enabled": false}
	helmInstall(t, "platform", ns, values)

	server := &unstructured.Unstructured{}
	server.SetAPIVersion("cooperator.dev/v1alpha1")
	server.SetKind("DatabaseServer")
	get(t, client.ObjectKey{Name: "pg-values"}, server)
	if got, _, _ := unstructured.NestedString(server.Object, "spec", "adminSecretRef", "namespace"); got != ns {
		t.Errorf("adminSecretRef without a namespace: want the release's, %q, got %q", ns, got)
	}
	if server.GetLabels()["region"] != "north" {
		t.Errorf("want the item's labels kept, got %v", server.GetLabels())
	}
	store := &unstructured.Unstructured{}
	store.SetAPIVersion("cooperator.dev/v1alpha1")
	store.SetKind("BackupStore")
	get(t, client.ObjectKey{Name: "store-values"}, store)
	if got, _, _ := unstructured.NestedString(store.Object, "spec", "credentialsSecretRef", "namespace"); got != "elsewhere" {
		t.Errorf("a namespace given for credentialsSecretRef must stay, got %q", got)
	}
	plan := &unstructured.Unstructured{}
	plan.SetAPIVersion("cooperator.dev/v1alpha1")
	plan.SetKind("Plan")
	get(t, client.ObjectKey{Name: "plan-values"}, plan)
	if got, _, _ := unstructured.NestedString(plan.Object, "spec", "backup", "store"); got != "store-values" {
		t.Errorf("plan's backup store: got %q", got)
	}
}

func TestHelmRefusesAPlatformObjectWithoutName(t *testing.T) {
	_, err := render(t, map[string]any{"backupStores": []any{map[string]any{"spec": map[string]any{"bucket": "b"}}}})
	if err == nil || !strings.Contains(err.Error(), "BackupStore in the values: every item needs a name") {
		t.Errorf("want a refusal naming the BackupStore item, got %v", err)
	}
	_, err = render(t, map[string]any{"plans": []any{map[string]any{"name": "empty"}}})
	if err == nil || !strings.Contains(err.Error(), "Plan empty in the values: spec is required") {
		t.Errorf("want a refusal naming the Plan, got %v", err)
	}
}

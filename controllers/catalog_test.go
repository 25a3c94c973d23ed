package controllers

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/catalog"
	"cooperator.dev/cooperator/internal/testenv"
)

// The catalog the host installs runs on a coop: every app's database with
// its extensions, its Redis, its volumes, its migration and its pods.
func TestCatalogAppsRunOnACoop(t *testing.T) {
	ctx := context.Background()
	pg := startPostgres(t)
	// pg_stat_statements is not trusted: the server's own mechanism offers
	// it, here in template1, so no app role needs to be a superuser.
	admin, err := pg.Superuser(ctx, "template1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		t.Fatal(err)
	}
	_ = admin.Close(ctx)
	if err := addDatabaseServer(ctx, pg, "catalog", "catalog", 10, "pg_trgm", "citext", "hstore", "pgcrypto", "pg_stat_statements"); err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	blueprints, err := catalog.Load(filepath.Join(root, "config", "catalog"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bp := range blueprints {
		create(t, bp)
	}
	plan := planOnPool("catalog-plan", "catalog")
	plan.Spec.Quota = v1alpha1.PlanQuota{CPU: mustQuantity("8"), Memory: mustQuantity("16Gi"), Storage: mustQuantity("100Gi"), Pods: 40}
	plan.Spec.Database.ConnectionLimit = 40
	coop := newCoop("many-apps", "catalog-plan")
	coop.Spec.DeletionPolicy = v1alpha1.DeletionPolicyDelete
	coop.Spec.Apps = []v1alpha1.CooperativeApp{
		{Name: "assembly", Blueprint: "decidim", Version: "0.28"},
		{Name: "files", Blueprint: "nextcloud", Version: "32"},
		{Name: "decide", Blueprint: "loomio", Version: "3.5"},
	}
	startOperator(t)
	for _, bp := range blueprints {
		if c := waitBlueprint(t, bp.Name); c.Status != "True" {
			t.Fatalf("catalog Blueprint %s: %s", bp.Name, c.Message)
		}
	}
	create(t, plan, coop)
	defer func() {
		if t.Failed() {
			t.Logf("last seen status: %+v", coop.Status)
			var events corev1.EventList
			_ = adminClient.List(context.Background(), &events, client.InNamespace("coop-many-apps"))
			for _, e := range events.Items {
				t.Logf("event %s %s: %s", e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	}()
	waitFor(t, 4*time.Minute, "the coop with three catalog apps to be Ready", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Name: "many-apps"}, coop)
		return err == nil && meta.IsStatusConditionTrue(coop.Status.Conditions, v1alpha1.ReadyCondition) &&
			coop.Status.ObservedGeneration == coop.Generation, err
	})

	// Each app has a database of its own, owned by the coop's role, with the
	// extensions its Blueprint needs.
	if got := len(coop.Status.Database.Apps); got != 3 {
		t.Fatalf("status.database.apps = %+v, want three", coop.Status.Database.Apps)
	}
	conn, err := pg.Superuser(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	for _, app := range coop.Status.Database.Apps {
		if owner := databaseOwner(t, pg, app.Name); owner != coop.Status.Database.Role {
			t.Errorf("database %s is owned by %s, want the coop's role %s", app.Name, owner, coop.Status.Database.Role)
		}
		if app.App == "decide" && !slices.Contains(app.Extensions, "citext") {
			t.Errorf("Loomio's database has extensions %v, want citext among them", app.Extensions)
		}
		mustGet(t, "coop-many-apps", app.SecretName, &corev1.Secret{})
	}
	// Nextcloud and Loomio have their Redis; Decidim does not need one.
	for app, want := range map[string]bool{"files": true, "decide": true, "assembly": false} {
		err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-many-apps", Name: app + "-redis"}, &appsv1.StatefulSet{})
		if (err == nil) != want {
			t.Errorf("Redis of %s: %v, want it to exist: %v", app, err, want)
		}
	}
	// Every pod of the coop runs, volumes included.
	var pods corev1.PodList
	if err := adminClient.List(ctx, &pods, client.InNamespace("coop-many-apps")); err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning {
			running++
		}
	}
	if running < 5 {
		t.Errorf("%d pods running in the coop, want the three apps' and their Redis", running)
	}

	// Deleted with deletionPolicy Delete, every app database goes with the coop.
	names := []string{coop.Status.Database.Name}
	for _, app := range coop.Status.Database.Apps {
		names = append(names, app.Name)
	}
	if err := adminClient.Delete(ctx, coop); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the coop's databases to be dropped", func(ctx context.Context) (bool, error) {
		var left int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", names).Scan(&left)
		return err == nil && left == 0, err
	})
}

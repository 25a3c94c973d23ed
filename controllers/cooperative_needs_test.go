package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/testenv"
)

// needsBlueprint is the test web app, one replica, with the needs given.
func needsBlueprint(t *testing.T, name string, needs v1alpha1.BlueprintNeeds) *v1alpha1.Blueprint {
	bp := testBlueprint(t, name, func(f map[string]string) {
		f["web.yaml"] = strings.Replace(f["web.yaml"], "replicas: 2", "replicas: 1", 1)
	})
	bp.Spec.Needs = needs
	return bp
}

// secretData reads a Secret in a coop's namespace.
func secretData(t testing.TB, coop, name string) (map[string]string, *corev1.Secret) {
	t.Helper()
	secret := &corev1.Secret{}
	mustGet(t, "coop-"+coop, name, secret)
	out := map[string]string{}
	for k, v := range secret.Data {
		out[k] = string(v)
	}
	return out, secret
}

// databaseOwner is the owner of a database on pg, or "" when it does not exist.
func databaseOwner(t testing.TB, pg *testenv.Postgres, name string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pg.Superuser(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var owner string
	err = conn.QueryRow(ctx, "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1", name).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return owner
}

func TestEachAppGetsItsOwnDatabase(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	bp := needsBlueprint(t, "web-db", v1alpha1.BlueprintNeeds{Database: true, Extensions: []string{"pg_trgm"}})
	coop := newCoop("two-apps", "two-apps-plan")
	coop.Spec.DeletionPolicy = v1alpha1.DeletionPolicyDelete
	coop.Spec.Apps = []v1alpha1.CooperativeApp{
		{Name: "decidim", Blueprint: "web-db", Version: "1.0"},
		{Name: "loomio-x", Blueprint: "web-db", Version: "1.0"},
	}
	create(t, bp, newPlan("two-apps-plan"), coop, newCoop("two-apps-other", "two-apps-plan"))
	coop = waitReady(t, "two-apps")
	waitReady(t, "two-apps-other")

	const role = "coop_two_apps"
	want := map[string]string{"decidim": "coop_two_apps_decidim", "loomio-x": "coop_two_apps_loomio_x"}
	got := map[string]v1alpha1.AppDatabaseStatus{}
	for _, e := range coop.Status.Database.Apps {
		got[e.App] = e
	}
	for app, db := range want {
		e := got[app]
		if e.Name != db || e.SecretName != app+"-database" || !slices.Equal(e.Extensions, []string{"pg_trgm"}) {
			t.Errorf("status.database.apps entry of %s = %+v, want database %s", app, e, db)
		}
		if owner := databaseOwner(t, mainPostgres, db); owner != role {
			t.Errorf("database %s is owned by %q, want the coop's role %s", db, owner, role)
		}
	}
	if len(coop.Status.Database.Apps) != 2 {
		t.Errorf("status.database.apps = %+v, want two entries", coop.Status.Database.Apps)
	}

	// Each app's Secret reaches its own database with the coop's
	// credentials; the two apps' tables of the same name do not meet.
	coopCreds := databaseSecret(t, "two-apps")
	for app, db := range want {
		creds, secret := secretData(t, "two-apps", app+"-database")
		for _, key := range []string{"host", "port", "dbname", "user", "password", "uri"} {
			if creds[key] == "" {
				t.Errorf("Secret %s lacks %s", secret.Name, key)
			}
		}
		if creds["dbname"] != db || creds["user"] != role || creds["password"] != coopCreds["password"] || creds["host"] != coopCreds["host"] {
			t.Errorf("Secret %s: dbname %s, user %s, same password as the coop's: %t", secret.Name, creds["dbname"], creds["user"], creds["password"] == coopCreds["password"])
		}
		if secret.Labels[specs.AppLabel] != app {
			t.Errorf("Secret %s labels = %v, want the app label %s", secret.Name, secret.Labels, app)
		}
		assertControlledBy(t, secret, coop)
		conn, err := pgx.Connect(ctx, creds["uri"])
		if err != nil {
			t.Fatalf("connecting with %s's uri: %v", app, err)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE schema_migrations (version text)"); err != nil {
			t.Errorf("app %s cannot create a table in its database: %v", app, err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO schema_migrations VALUES ($1)", app); err != nil {
			t.Errorf("app %s cannot write to its database: %v", app, err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'").Scan(&n); err != nil || n != 1 {
			t.Errorf("pg_trgm in %s: %d (%v)", db, n, err)
		}
		_ = conn.Close(ctx)
	}
	for app, db := range want {
		conn, err := connectAs(ctx, mainPostgres, coopCreds, db)
		if err != nil {
			t.Fatal(err)
		}
		var versions []string
		rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
		if err == nil {
			versions, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil || !slices.Equal(versions, []string{app}) {
			t.Errorf("schema_migrations of %s = %v (%v), want only %s's row", db, versions, err, app)
		}
		_ = conn.Close(ctx)
	}
	// Another coop's role cannot connect to them.
	other := databaseSecret(t, "two-apps-other")
	if conn, err := connectAs(ctx, mainPostgres, other, want["decidim"]); err == nil {
		_ = conn.Close(ctx)
		t.Errorf("another coop's credentials connected to %s", want["decidim"])
	} else if !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("connecting as another coop: %v, want permission denied", err)
	}
	// The password is in the Secrets only.
	raw, err := json.Marshal(coop.Status)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), coopCreds["password"]) {
		t.Errorf("the password appears in the coop's status")
	}

	// A new password reaches every app's Secret.
	update(t, "two-apps", func(c *v1alpha1.Cooperative) {
		metav1.SetMetaDataAnnotation(&c.ObjectMeta, v1alpha1.RotateDatabasePasswordAnnotation, "2026-11-30")
	})
	waitFor(t, 30*time.Second, "the rotation to reach the apps' Secrets", func(ctx context.Context) (bool, error) {
		c := &v1alpha1.Cooperative{}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: "two-apps"}, c); err != nil {
			return false, err
		}
		if c.Status.Database == nil || c.Status.Database.PasswordRotation != "2026-11-30" {
			return false, nil
		}
		fresh := databaseSecret(t, "two-apps")["password"]
		for app := range want {
			if creds, _ := secretData(t, "two-apps", app+"-database"); creds["password"] != fresh {
				return false, nil
			}
		}
		return fresh != coopCreds["password"], nil
	})
	for app := range want {
		creds, _ := secretData(t, "two-apps", app+"-database")
		if conn, err := pgx.Connect(ctx, creds["uri"]); err != nil {
			t.Errorf("app %s's Secret does not work after the rotation: %v", app, err)
		} else {
			_ = conn.Close(ctx)
		}
	}

	// A removed app keeps its database, but not its entry or its Secret.
	update(t, "two-apps", func(c *v1alpha1.Cooperative) { c.Spec.Apps = c.Spec.Apps[:1] })
	waitFor(t, 60*time.Second, "the removed app's entry and Secret to go", func(ctx context.Context) (bool, error) {
		c := &v1alpha1.Cooperative{}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: "two-apps"}, c); err != nil {
			return false, err
		}
		err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-two-apps", Name: "loomio-x-database"}, &corev1.Secret{})
		return apierrors.IsNotFound(err) && c.Status.ObservedGeneration == c.Generation &&
			len(c.Status.Database.Apps) == 1 && c.Status.Database.Apps[0].App == "decidim", client.IgnoreNotFound(err)
	})
	if owner := databaseOwner(t, mainPostgres, want["loomio-x"]); owner != role {
		t.Errorf("the removed app's database: owner %q, want it kept and owned by %s", owner, role)
	}

	// deletionPolicy Delete drops every app's database with the coop's,
	// the removed app's too.
	if err := adminClient.Delete(ctx, coop); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "coop two-apps to be gone", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Name: "two-apps"}, &v1alpha1.Cooperative{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	for _, db := range []string{role, want["decidim"], want["loomio-x"]} {
		if n := countDatabases(t, mainPostgres, db); n != 0 {
			t.Errorf("database %s is still on the server after deletion with policy Delete", db)
		}
	}
}

func TestRetainedCoopKeepsItsAppsDatabases(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	coop := newCoop("keep-apps", "keep-apps-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "forum", Blueprint: "web-db-keep", Version: "1.0"}}
	create(t, needsBlueprint(t, "web-db-keep", v1alpha1.BlueprintNeeds{Database: true}), newPlan("keep-apps-plan"), coop)
	waitReady(t, "keep-apps")
	if err := adminClient.Delete(ctx, coop); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "coop keep-apps to be gone", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Name: "keep-apps"}, &v1alpha1.Cooperative{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if owner := databaseOwner(t, mainPostgres, "coop_keep_apps_forum"); owner != "coop_keep_apps" {
		t.Errorf("Retain: the app's database has owner %q, want it kept with the coop's role", owner)
	}
	var events corev1.EventList
	if err := adminClient.List(ctx, &events); err != nil {
		t.Fatal(err)
	}
	said := slices.ContainsFunc(events.Items, func(e corev1.Event) bool {
		return e.Reason == "DatabaseRetained" && e.InvolvedObject.Name == "keep-apps" && strings.Contains(e.Message, "coop_keep_apps_forum")
	})
	if !said {
		t.Errorf("no DatabaseRetained event names the app's database")
	}
}

func TestAppNeedingAnExtensionTheServerLacksIsRefused(t *testing.T) {
	startOperator(t)
	coop := newCoop("no-postgis", "no-postgis-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "maps", Blueprint: "web-postgis", Version: "1.0"}}
	create(t, needsBlueprint(t, "web-postgis", v1alpha1.BlueprintNeeds{Database: true, Extensions: []string{"postgis"}}),
		newPlan("no-postgis-plan"), coop)
	coop = waitReason(t, "no-postgis", v1alpha1.ExtensionUnavailableReason)
	c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.AppsReadyCondition)
	if c == nil || !strings.Contains(c.Message, "maps") || !strings.Contains(c.Message, "postgis") {
		t.Errorf("AppsReady = %+v, want a message naming the app and postgis", c)
	}
	if !meta.IsStatusConditionTrue(coop.Status.Conditions, v1alpha1.DatabaseReadyCondition) {
		t.Errorf("the coop's own database is not ready: %+v", meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.DatabaseReadyCondition))
	}
	if n := countDatabases(t, mainPostgres, "coop_no_postgis_maps"); n != 0 {
		t.Errorf("a database was made for an app whose extension is not offered")
	}
	if err := adminClient.Get(context.Background(), client.ObjectKey{Namespace: "coop-no-postgis", Name: "maps-web"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused app was applied: %v", err)
	}
}

// redisVolume is the storage a host would provide for an app's Redis,
// bound in advance to its claim.
func redisVolume(name, namespace, claim string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: mustQuantity("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/" + name}},
			ClaimRef:                      &corev1.ObjectReference{Namespace: namespace, Name: claim},
		},
	}
}

func TestAppGetsItsOwnRedis(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	coop := newCoop("cache-coop", "cache-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "board", Blueprint: "web-redis", Version: "1.0"}}
	create(t, needsBlueprint(t, "web-redis", v1alpha1.BlueprintNeeds{Redis: true}), newPlan("cache-plan"),
		redisVolume("cache-coop-board-redis", "coop-cache-coop", "board-redis-data"), coop)
	coop = waitReady(t, "cache-coop")

	creds, secret := secretData(t, "cache-coop", "board-redis")
	password := creds["password"]
	if len(password) < 40 || creds["host"] != "board-redis" || creds["port"] != "6379" ||
		creds["url"] != "redis://:"+password+"@board-redis:6379/0" || secret.Labels[specs.AppLabel] != "board" {
		t.Errorf("Redis Secret: host %s, port %s, password of %d characters, labels %v", creds["host"], creds["port"], len(password), secret.Labels)
	}
	sts := &appsv1.StatefulSet{}
	mustGet(t, "coop-cache-coop", "board-redis", sts)
	assertControlledBy(t, sts, coop)
	c := sts.Spec.Template.Spec.Containers[0]
	if c.Image != "redis:7.2-alpine" || !strings.Contains(strings.Join(c.Args, " "), "--appendonly yes") ||
		c.Env[0].ValueFrom.SecretKeyRef.Name != "board-redis" || *sts.Spec.Template.Spec.SecurityContext.RunAsUser != 999 {
		t.Errorf("Redis StatefulSet: image %s, args %v", c.Image, c.Args)
	}
	svc := &corev1.Service{}
	mustGet(t, "coop-cache-coop", "board-redis", svc)
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.Ports[0].Port != 6379 || svc.Labels[specs.AppLabel] != "board" {
		t.Errorf("Redis Service: type %s, port %d", svc.Spec.Type, svc.Spec.Ports[0].Port)
	}
	pvc := &corev1.PersistentVolumeClaim{}
	mustGet(t, "coop-cache-coop", "board-redis-data", pvc)
	if pvc.Status.Phase != corev1.ClaimBound {
		t.Errorf("Redis volume is %s, want Bound", pvc.Status.Phase)
	}
	var pods corev1.PodList
	if err := adminClient.List(ctx, &pods, client.InNamespace("coop-cache-coop"), client.MatchingLabels{"app.kubernetes.io/instance": "board-redis"}); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 || pods.Items[0].Status.Phase != corev1.PodRunning {
		t.Errorf("%d Redis pods, want one Running", len(pods.Items))
	}
	// The app itself runs too.
	d := &appsv1.Deployment{}
	mustGet(t, "coop-cache-coop", "board-web", d)
	if d.Status.AvailableReplicas != 1 {
		t.Errorf("the app has %d available replicas", d.Status.AvailableReplicas)
	}

	// Hibernating scales Redis to zero too, and keeps its password.
	update(t, "cache-coop", func(c *v1alpha1.Cooperative) { c.Spec.Apps[0].Hibernate = true })
	waitFor(t, 60*time.Second, "Redis to hibernate", func(ctx context.Context) (bool, error) {
		s := &appsv1.StatefulSet{}
		if err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-cache-coop", Name: "board-redis"}, s); err != nil {
			return false, err
		}
		return *s.Spec.Replicas == 0 && s.Status.Replicas == 0, nil
	})
	waitReady(t, "cache-coop")
	if again, _ := secretData(t, "cache-coop", "board-redis"); again["password"] != password {
		t.Errorf("the Redis password changed")
	}

	// Removed, the app's Redis goes but for its volume.
	update(t, "cache-coop", func(c *v1alpha1.Cooperative) { c.Spec.Apps = nil })
	waitFor(t, 60*time.Second, "the removed app's Redis to go", func(ctx context.Context) (bool, error) {
		for _, obj := range []client.Object{&appsv1.StatefulSet{}, &corev1.Service{}, &corev1.Secret{}} {
			err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-cache-coop", Name: "board-redis"}, obj)
			if !apierrors.IsNotFound(err) {
				return false, client.IgnoreNotFound(err)
			}
		}
		return true, nil
	})
	mustGet(t, "coop-cache-coop", "board-redis-data", pvc)
}

func TestRedisCountsAgainstThePlansLimits(t *testing.T) {
	startOperator(t)
	// Two replicas of 500m fill a plan of 1 CPU; the app's Redis does not fit.
	plan := newPlan("tight-plan")
	plan.Spec.Quota.CPU = mustQuantity("1")
	bp := testBlueprint(t, "web-redis-tight", nil)
	bp.Spec.Needs.Redis = true
	coop := newCoop("tight", "tight-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "board", Blueprint: "web-redis-tight", Version: "1.0"}}
	create(t, bp, plan, coop)
	coop = waitReason(t, "tight", v1alpha1.AppChecksFailedReason)
	if msg := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.AppsReadyCondition).Message; !strings.Contains(msg, "CPU limits add up to 1100m") {
		t.Errorf("AppsReady message %q, want the app's and its Redis's CPU counted", msg)
	}
	err := adminClient.Get(context.Background(), client.ObjectKey{Namespace: "coop-tight", Name: "board-redis"}, &appsv1.StatefulSet{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("a refused app's Redis was applied: %v", err)
	}
}

func TestReconcilingUnchangedAppNeedsWritesNothing(t *testing.T) {
	stop := startOperator(t)
	bp := needsBlueprint(t, "web-steady-needs", v1alpha1.BlueprintNeeds{Database: true, Extensions: []string{"citext"}, Redis: true})
	coop := newCoop("steady-needs", "steady-needs-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "forum", Blueprint: "web-steady-needs", Version: "1.0"}}
	create(t, bp, newPlan("steady-needs-plan"), redisVolume("steady-needs-forum-redis", "coop-steady-needs", "forum-redis-data"), coop)
	waitReady(t, "steady-needs")
	stop()

	ctx, r, counter, _ := countedReconciler(t)
	ddlBefore, err := mainPostgres.DDLCount("cooperator")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Name: "steady-needs"}}); err != nil {
			t.Fatalf("reconcile %d: %v", i, err)
		}
	}
	if writes := counter.writeRequests(); len(writes) != 0 {
		t.Errorf("reconciling an unchanged coop with an app's database and Redis sent %d writes: %v", len(writes), writes)
	}
	if ddlAfter, err := mainPostgres.DDLCount("cooperator"); err != nil || ddlAfter != ddlBefore {
		t.Errorf("DDL statements logged: %d before, %d after (%v); want none on an unchanged coop", ddlBefore, ddlAfter, err)
	}
}

func TestDatabaseNamesThatMeetAreNeverTakenOver(t *testing.T) {
	startOperator(t)
	bp := needsBlueprint(t, "web-clash", v1alpha1.BlueprintNeeds{Database: true})
	first := newCoop("clash", "clash-plan")
	first.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "x", Blueprint: "web-clash", Version: "1.0"}}
	create(t, bp, newPlan("clash-plan"), first)
	waitReady(t, "clash")

	// Coop clash-x's database would be coop_clash_x: app x of coop clash has it.
	clashX := newCoop("clash-x", "clash-plan")
	clashX.Spec.DeletionPolicy = v1alpha1.DeletionPolicyDelete
	create(t, clashX)
	c := waitReason(t, "clash-x", v1alpha1.DatabaseNameTakenReason)
	if msg := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.DatabaseReadyCondition).Message; !strings.Contains(msg, "coop_clash_x") {
		t.Errorf("DatabaseReady message %q does not name the database", msg)
	}
	// And the other way round: app y of coop clash meets coop clash-y.
	create(t, newCoop("clash-y", "clash-plan"))
	waitReady(t, "clash-y")
	update(t, "clash", func(c *v1alpha1.Cooperative) {
		c.Spec.Apps = append(c.Spec.Apps, v1alpha1.CooperativeApp{Name: "y", Blueprint: "web-clash", Version: "1.0"})
	})
	waitReason(t, "clash", v1alpha1.DatabaseNameTakenReason)
	// Deleting clash-x with policy Delete drops nothing of clash's.
	if err := adminClient.Delete(context.Background(), clashX); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "coop clash-x to be gone", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Name: "clash-x"}, &v1alpha1.Cooperative{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	for db, owner := range map[string]string{"coop_clash_x": "coop_clash", "coop_clash_y": "coop_clash_y"} {
		if got := databaseOwner(t, mainPostgres, db); got != owner {
			t.Errorf("database %s is owned by %q, want %s still", db, got, owner)
		}
	}
}

func TestDedicatedCoopsAppsShareTheClustersDatabase(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	plan := newPlan("dedicated-apps-plan")
	plan.Spec.Database.Mode = v1alpha1.DatabaseModeDedicated
	coop := newCoop("own-db-apps", "dedicated-apps-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "forum", Blueprint: "web-db-dedicated", Version: "1.0"}}
	create(t, needsBlueprint(t, "web-db-dedicated", v1alpha1.BlueprintNeeds{Database: true}), plan, coop)
	coop = waitReason(t, "own-db-apps", v1alpha1.ClusterNotReadyReason)

	// A new app waits for the cluster.
	if c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.AppsReadyCondition); c == nil || c.Reason != v1alpha1.DatabaseNotReadyReason {
		t.Errorf("AppsReady = %+v, want reason %s", c, v1alpha1.DatabaseNotReadyReason)
	}
	if err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-own-db-apps", Name: "forum-web"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("the app was applied before its database was ready: %v", err)
	}
	creds, _ := secretData(t, "own-db-apps", "forum-database")
	coopCreds := databaseSecret(t, "own-db-apps")
	if creds["dbname"] != specs.DedicatedDatabase || creds["host"] != "database-rw.coop-own-db-apps.svc" || creds["uri"] != coopCreds["uri"] {
		t.Errorf("forum-database: dbname %s, host %s; want the cluster's database", creds["dbname"], creds["host"])
	}

	markClusterReady(t, "coop-own-db-apps")
	coop = waitReady(t, "own-db-apps")
	if apps := coop.Status.Database.Apps; len(apps) != 1 || apps[0].App != "forum" || apps[0].Name != specs.DedicatedDatabase || apps[0].SecretName != "forum-database" {
		t.Errorf("status.database.apps = %+v", apps)
	}
	mustGet(t, "coop-own-db-apps", "forum-web", &appsv1.Deployment{})
}

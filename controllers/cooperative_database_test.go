package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/testenv"
)

// databaseSecret reads a coop's database Secret.
func databaseSecret(t testing.TB, coop string) map[string]string {
	t.Helper()
	secret := &corev1.Secret{}
	mustGet(t, "coop-"+coop, specs.DatabaseSecretName, secret)
	out := map[string]string{}
	for k, v := range secret.Data {
		out[k] = string(v)
	}
	return out
}

// connectAs connects with a coop's credentials to a database on pg.
func connectAs(ctx context.Context, pg *testenv.Postgres, creds map[string]string, database string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, pg.URL(creds["user"], creds["password"], database))
}

func startPostgres(t testing.TB) *testenv.Postgres {
	t.Helper()
	pg, err := testenv.StartPostgres(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Remove)
	return pg
}

func waitServerReady(t testing.TB, name string) {
	t.Helper()
	waitFor(t, 30*time.Second, "DatabaseServer "+name+" Ready", func(ctx context.Context) (bool, error) {
		s := &v1alpha1.DatabaseServer{}
		err := adminClient.Get(ctx, client.ObjectKey{Name: name}, s)
		return err == nil && meta.IsStatusConditionTrue(s.Status.Conditions, v1alpha1.ReadyCondition), client.IgnoreNotFound(err)
	})
}

func planOnPool(name, pool string) *v1alpha1.Plan {
	p := newPlan(name)
	p.Spec.Database.ServerSelector.MatchLabels[poolLabel] = pool
	return p
}

func TestDatabasesArePlacedOnTheLeastUsedServerWithRoom(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	second := startPostgres(t)
	if err := addDatabaseServer(ctx, mainPostgres, "place-a", "place", 1); err != nil {
		t.Fatal(err)
	}
	if err := addDatabaseServer(ctx, second, "place-b", "place", 10); err != nil {
		t.Fatal(err)
	}
	waitServerReady(t, "place-a")
	waitServerReady(t, "place-b")
	create(t, planOnPool("place-plan", "place"))
	want := map[string]string{"place-1": "place-a", "place-2": "place-b", "place-3": "place-b"}
	for _, name := range []string{"place-1", "place-2", "place-3"} {
		create(t, newCoop(name, "place-plan"))
		coop := waitReady(t, name)
		if got := coop.Status.Database.Server; got != want[name] {
			t.Errorf("%s placed on %s, want %s", name, got, want[name])
		}
	}
	// Each database exists on the server its status names, and only there.
	for name, server := range want {
		pg := mainPostgres
		if server == "place-b" {
			pg = second
		}
		db := "coop_" + strings.ReplaceAll(name, "-", "_")
		if n := countDatabases(t, pg, db); n != 1 {
			t.Errorf("database %s on %s: %d, want 1", db, server, n)
		}
	}
	if n := countDatabases(t, mainPostgres, "coop_place_2"); n != 0 {
		t.Errorf("coop_place_2 also exists on the full server")
	}
}

func countDatabases(t testing.TB, pg *testenv.Postgres, name string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pg.Superuser(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname LIKE $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCoopCredentialsReachOnlyTheirOwnDatabase(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	create(t, newPlan("iso-plan"), newCoop("iso-a", "iso-plan"), newCoop("iso-b", "iso-plan"))
	a := waitReady(t, "iso-a")
	waitReady(t, "iso-b")

	creds := databaseSecret(t, "iso-a")
	for _, key := range []string{"host", "port", "dbname", "user", "password", "uri"} {
		if creds[key] == "" {
			t.Errorf("database Secret lacks %s", key)
		}
	}
	if creds["dbname"] != "coop_iso_a" || a.Status.Database.Name != "coop_iso_a" || a.Status.Database.Server != mainServer {
		t.Errorf("Secret dbname %s, status %+v", creds["dbname"], a.Status.Database)
	}

	own, err := pgx.Connect(ctx, creds["uri"])
	if err != nil {
		t.Fatalf("connecting with the Secret's uri: %v", err)
	}
	defer func() { _ = own.Close(ctx) }()
	if _, err := own.Exec(ctx, "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)"); err != nil {
		t.Errorf("the coop cannot use its own database: %v", err)
	}
	for what, stmt := range map[string]string{
		"create a role":     "CREATE ROLE intruder",
		"create a database": "CREATE DATABASE another",
	} {
		if _, err := own.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("the coop's role could %s: %v", what, err)
		}
	}
	if conn, err := connectAs(ctx, mainPostgres, creds, "coop_iso_b"); err == nil {
		_ = conn.Close(ctx)
		t.Errorf("coop A's credentials connected to coop B's database")
	} else if !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("connecting to coop B's database: %v, want permission denied", err)
	}

	// The password is nowhere but in the Secret.
	raw, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var events corev1.EventList
	if err := adminClient.List(ctx, &events); err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		raw = append(raw, e.Message...)
	}
	if strings.Contains(string(raw), creds["password"]) {
		t.Errorf("the password appears in the coop's status or an event")
	}
	log, err := mainPostgres.DDLCount("cooperator")
	if err != nil || log == 0 {
		t.Fatalf("no DDL logged: %v", err)
	}
	if data, _ := readFile(mainPostgres.LogPath); strings.Contains(data, creds["password"]) {
		t.Errorf("the password appears in the server's statement log")
	}
}

func TestCoopsConvergeWhenTheServerStopsDuringProvisioning(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	pg := startPostgres(t)
	if err := addDatabaseServer(ctx, pg, "flaky", "flaky", 100); err != nil {
		t.Fatal(err)
	}
	waitServerReady(t, "flaky")
	create(t, planOnPool("flaky-plan", "flaky"))
	const coops = 20
	for i := range coops {
		create(t, newCoop(fmt.Sprintf("flaky-%02d", i), "flaky-plan"))
		if i == coops/2 {
			if err := pg.Stop(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A transient fault: the coop says why, and does not claim its
	// generation observed.
	waitFor(t, 60*time.Second, "flaky-19 to report ServerUnreachable", func(ctx context.Context) (bool, error) {
		c := &v1alpha1.Cooperative{}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: "flaky-19"}, c); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ReadyCondition)
		return cond != nil && cond.Reason == v1alpha1.ServerUnreachableReason, nil
	})
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range coops {
		waitReadyWithin(t, fmt.Sprintf("flaky-%02d", i), 2*time.Minute)
	}

	conn, err := pg.Superuser(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var roles, dbs int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_roles WHERE rolname LIKE 'coop\_flaky\_%'),
		(SELECT count(*) FROM pg_database WHERE datname LIKE 'coop\_flaky\_%')`).Scan(&roles, &dbs); err != nil {
		t.Fatal(err)
	}
	if roles != coops || dbs != coops {
		t.Errorf("server holds %d roles and %d databases, want %d of each", roles, dbs, coops)
	}
	// Every coop's Secret works: none was left with a password the server lacks.
	for i := range coops {
		name := fmt.Sprintf("flaky-%02d", i)
		c, err := pgx.Connect(ctx, databaseSecret(t, name)["uri"])
		if err != nil {
			t.Errorf("%s cannot connect with its Secret: %v", name, err)
			continue
		}
		_ = c.Close(ctx)
	}
}

func TestPasswordRotationOnRequest(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	create(t, newPlan("rotate-plan"), newCoop("rotate", "rotate-plan"))
	waitReady(t, "rotate")
	old := databaseSecret(t, "rotate")

	coop := &v1alpha1.Cooperative{}
	mustGet(t, "", "rotate", coop)
	patch := client.MergeFrom(coop.DeepCopy())
	metav1.SetMetaDataAnnotation(&coop.ObjectMeta, v1alpha1.RotateDatabasePasswordAnnotation, "2026-11-22")
	if err := adminClient.Patch(ctx, coop, patch); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the rotation to be recorded", func(ctx context.Context) (bool, error) {
		c := &v1alpha1.Cooperative{}
		err := adminClient.Get(ctx, client.ObjectKey{Name: "rotate"}, c)
		return err == nil && c.Status.Database != nil && c.Status.Database.PasswordRotation == "2026-11-22", err
	})
	fresh := databaseSecret(t, "rotate")
	if fresh["password"] == old["password"] {
		t.Fatal("the password did not change")
	}
	if c, err := pgx.Connect(ctx, fresh["uri"]); err != nil {
		t.Errorf("the new password does not work: %v", err)
	} else {
		_ = c.Close(ctx)
	}
	if c, err := pgx.Connect(ctx, old["uri"]); err == nil {
		_ = c.Close(ctx)
		t.Errorf("the old password still works")
	}
}

func TestExtensionsAreCreatedOnlyWhenTheServerOffersThem(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	offered := newCoop("ext-ok", "ext-plan")
	offered.Spec.Database.Extensions = []string{"pg_trgm"}
	missing := newCoop("ext-missing", "ext-plan")
	missing.Spec.Database.Extensions = []string{"postgis"}
	create(t, newPlan("ext-plan"), offered, missing)

	coop := waitReady(t, "ext-ok")
	if got := coop.Status.Database.Extensions; len(got) != 1 || got[0] != "pg_trgm" {
		t.Errorf("status extensions = %v", got)
	}
	conn, err := pgx.Connect(ctx, databaseSecret(t, "ext-ok")["uri"])
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'").Scan(&n); err != nil || n != 1 {
		t.Errorf("pg_trgm in the coop's database: %d (%v)", n, err)
	}

	coop = waitReason(t, "ext-missing", v1alpha1.ExtensionUnavailableReason)
	c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.DatabaseReadyCondition)
	if c == nil || !strings.Contains(c.Message, "postgis") {
		t.Errorf("DatabaseReady = %+v, want a message naming postgis", c)
	}
}

func TestWrongAdminCredentialsAreReported(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "pg-wrong", Namespace: adminNamespace},
		StringData: map[string]string{"username": "cooperator", "password": "not-the-password"},
	}
	create(t, secret, databaseServer("wrong", "wrong", mainPostgres, secret.Name, 10))
	waitFor(t, 30*time.Second, "server wrong to report AdminAuthFailed", func(ctx context.Context) (bool, error) {
		s := &v1alpha1.DatabaseServer{}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: "wrong"}, s); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ReadyCondition)
		return c != nil && c.Reason == v1alpha1.AdminAuthFailedReason, nil
	})
	// A coop whose plan allows only that server is not placed.
	create(t, planOnPool("wrong-plan", "wrong"), newCoop("wrong-coop", "wrong-plan"))
	waitReason(t, "wrong-coop", v1alpha1.NoServerCapacityReason)
	_ = ctx
}

func TestDeletionPolicyKeepsOrDropsTheDatabase(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	keep := newCoop("keep-data", "policy-plan")
	drop := newCoop("drop-data", "policy-plan")
	drop.Spec.DeletionPolicy = v1alpha1.DeletionPolicyDelete
	create(t, newPlan("policy-plan"), keep, drop)
	waitReady(t, "keep-data")
	waitReady(t, "drop-data")

	for _, c := range []*v1alpha1.Cooperative{keep, drop} {
		if err := adminClient.Delete(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"keep-data", "drop-data"} {
		waitFor(t, 30*time.Second, "coop "+name+" to be gone", func(ctx context.Context) (bool, error) {
			err := adminClient.Get(ctx, client.ObjectKey{Name: name}, &v1alpha1.Cooperative{})
			return client.IgnoreNotFound(err) == nil && err != nil, nil
		})
	}
	if n := countDatabases(t, mainPostgres, "coop_keep_data"); n != 1 {
		t.Errorf("Retain: %d databases coop_keep_data, want 1", n)
	}
	if n := countDatabases(t, mainPostgres, "coop_drop_data"); n != 0 {
		t.Errorf("Delete: %d databases coop_drop_data, want 0", n)
	}
}

// markClusterReady reports a coop's CloudNativePG cluster Ready, as
// CloudNativePG would; none runs here.
func markClusterReady(t *testing.T, namespace string) {
	t.Helper()
	cluster := &unstructured.Unstructured{}
	cluster.SetGroupVersionKind(CNPGCluster)
	mustGet(t, namespace, specs.ClusterName, cluster)
	if err := unstructured.SetNestedSlice(cluster.Object, []any{map[string]any{
		"type": "Ready", "status": "True", "reason": "ClusterIsReady", "message": "Cluster is Ready",
		"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
	}}, "status", "conditions"); err != nil {
		t.Fatal(err)
	}
	if err := adminClient.Status().Update(context.Background(), cluster); err != nil {
		t.Fatal(err)
	}
}

func TestDedicatedModeRunsACloudNativePGCluster(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	plan := newPlan("dedicated-plan")
	plan.Spec.Database.Mode = v1alpha1.DatabaseModeDedicated
	plan.Spec.Database.Dedicated.Instances = 2
	create(t, plan, newCoop("own-db", "dedicated-plan"))
	waitReason(t, "own-db", v1alpha1.ClusterNotReadyReason)

	cluster := &unstructured.Unstructured{}
	cluster.SetGroupVersionKind(specs.Cluster(&v1alpha1.Cooperative{}, plan).GroupVersionKind())
	mustGet(t, "coop-own-db", specs.ClusterName, cluster)
	if n, _, _ := unstructured.NestedInt64(cluster.Object, "spec", "instances"); n != 2 {
		t.Errorf("cluster instances = %d, want 2 from the plan", n)
	}
	if owner, _, _ := unstructured.NestedString(cluster.Object, "spec", "bootstrap", "initdb", "owner"); owner != specs.DedicatedDatabase {
		t.Errorf("initdb owner = %q", owner)
	}
	markClusterReady(t, "coop-own-db")
	coop := waitReady(t, "own-db")
	if coop.Status.Database.Mode != v1alpha1.DatabaseModeDedicated || coop.Status.Database.Host != "database-rw.coop-own-db.svc" {
		t.Errorf("status.database = %+v", coop.Status.Database)
	}
	creds := databaseSecret(t, "own-db")
	owner := &corev1.Secret{}
	mustGet(t, "coop-own-db", specs.ClusterBootstrapSecretName, owner)
	if creds["password"] == "" || creds["password"] != string(owner.Data["password"]) || creds["dbname"] != "app" {
		t.Errorf("the database Secret does not match the cluster's owner: %v", creds["dbname"])
	}

	// Moving a running coop to Shared mode is refused, and nothing changes.
	mustGet(t, "", "own-db", coop)
	coop.Spec.Database.Mode = v1alpha1.DatabaseModeShared
	if err := adminClient.Update(ctx, coop); err != nil {
		t.Fatal(err)
	}
	coop = waitReason(t, "own-db", v1alpha1.ModeChangeRefusedReason)
	if coop.Status.Database.Mode != v1alpha1.DatabaseModeDedicated || coop.Annotations[DatabaseServerAnnotation] != "" {
		t.Errorf("a refused mode change changed the database: %+v", coop.Status.Database)
	}
}

package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/backup"
	"cooperator.dev/cooperator/internal/specs"
)

// A coop on a dedicated CloudNativePG cluster is backed up and restored in
// place like one on a shared server, through the cluster's read-write
// Service as its own role. No CloudNativePG runs here: the test marks the
// Cluster Ready, gives its database to the real PostgreSQL server, and runs
// the runner's Jobs with the Service's address and TLS rewritten to that
// server's, as the cluster's DNS and certificates would lead them.
func TestDedicatedDatabaseIsBackedUpAndRestoredInPlace(t *testing.T) {
	ctx := context.Background()
	store := dedicatedRestoreEnv(t, "owncluster")
	coop := newCoop("own-cluster", "owncluster-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "web", Blueprint: "owncluster-web", Version: "1.0"}}
	create(t, coop)
	waitReason(t, "own-cluster", v1alpha1.ClusterNotReadyReason)

	owner := playCloudNativePG(t, "coop-own-cluster")
	coop = backupsReason(t, "own-cluster", v1alpha1.BackupsScheduledReason)
	waitReady(t, "own-cluster")

	// The cluster lets in the coop's own runners, and only them.
	policy := &networkingv1.NetworkPolicy{}
	mustGet(t, "coop-own-cluster", specs.AllowDatabaseCluster, policy)
	runners := slices.ContainsFunc(policy.Spec.Ingress, func(rule networkingv1.NetworkPolicyIngressRule) bool {
		return len(rule.From) == 1 && rule.From[0].PodSelector != nil &&
			rule.From[0].PodSelector.MatchLabels[specs.BackupRunnerLabel] == "own-cluster" &&
			rule.From[0].NamespaceSelector != nil && rule.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == adminNamespace
	})
	if !runners {
		t.Errorf("policy %s does not let the coop's runners in: %+v", specs.AllowDatabaseCluster, policy.Spec.Ingress)
	}
	cronJob := &batchv1.CronJob{}
	mustGet(t, adminNamespace, specs.BackupName(coop), cronJob)
	if l := cronJob.Spec.JobTemplate.Spec.Template.Labels[specs.BackupRunnerLabel]; l != "own-cluster" {
		t.Errorf("backup pods carry %s=%q, want the coop's name", specs.BackupRunnerLabel, l)
	}
	args := strings.Join(cronJob.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args, " ")
	for _, want := range []string{"--db-host=database-rw.coop-own-cluster.svc", "--db-port=5432", "--db-user=app", "--db-sslmode=require", "--db-name=app"} {
		if !strings.Contains(args, want) {
			t.Errorf("backup arguments %q lack %s", args, want)
		}
	}

	// Drills restore into a scratch database that CloudNativePG makes from
	// a Database object; they wait for it.
	scratch := &unstructured.Unstructured{}
	scratch.SetGroupVersionKind(CNPGDatabase)
	mustGet(t, "coop-own-cluster", specs.DrillDatabaseObjectName, scratch)
	for field, want := range map[string]string{"name": "app__drill", "owner": "app", "databaseReclaimPolicy": "delete"} {
		if got, _, _ := unstructured.NestedString(scratch.Object, "spec", field); got != want {
			t.Errorf("scratch Database spec.%s = %q, want %q", field, got, want)
		}
	}
	if got, _, _ := unstructured.NestedString(scratch.Object, "spec", "cluster", "name"); got != specs.ClusterName {
		t.Errorf("scratch Database is for cluster %q, want %q", got, specs.ClusterName)
	}
	assertControlledBy(t, scratch, coop)
	restoreVerified(t, "own-cluster", v1alpha1.ScratchDatabasePendingReason)
	drill := &batchv1.CronJob{}
	if err := adminClient.Get(ctx, client.ObjectKey{Namespace: adminNamespace, Name: specs.DrillName(coop)}, drill); !apierrors.IsNotFound(err) {
		t.Errorf("a drill CronJob before its scratch database exists: %v", err)
	}
	playCloudNativePGDatabase(t, scratch)
	waiting := restoreVerified(t, "own-cluster", v1alpha1.NoBackupYetReason)
	pending := meta.FindStatusCondition(waiting.Status.Conditions, v1alpha1.RestoreVerifiedCondition)
	mustGet(t, adminNamespace, specs.DrillName(coop), drill)
	if l := drill.Spec.JobTemplate.Spec.Template.Labels[specs.BackupRunnerLabel]; l != "own-cluster" {
		t.Errorf("drill pods carry %s=%q, want the coop's name", specs.BackupRunnerLabel, l)
	}
	drillArgs := strings.Join(drill.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args, " ")
	for _, want := range []string{"--scratch-db=app__drill", "--db-host=database-rw.coop-own-cluster.svc", "--db-user=app", "--db-sslmode=require"} {
		if !strings.Contains(drillArgs, want) {
			t.Errorf("drill arguments %q lack %s", drillArgs, want)
		}
	}

	run := func(statements ...string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, mainPostgres.URL(specs.DedicatedDatabase, string(owner.Data["password"]), specs.DedicatedDatabase))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close(ctx) }()
		for _, s := range statements {
			if _, err := conn.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
	run("CREATE TABLE orders (item text)", "INSERT INTO orders VALUES ('bike'), ('lamp')")
	code, out, _ := runContainerWith(t, cronJob.Spec.JobTemplate.Spec.Template.Spec, toLocalServer)
	if code != 0 {
		t.Fatalf("the scheduled backup of the dedicated database failed: %s", out)
	}
	m := latestBackup(t, store, "own-cluster")
	if dbs := m.Databases(); !slices.Equal(dbs, []string{specs.DedicatedDatabase}) {
		t.Errorf("backup holds databases %v, want the cluster's one", dbs)
	}
	// The drill restores it into the scratch database as the cluster's
	// owner and records that it passed.
	if code, out, _ := runContainerWith(t, drill.Spec.JobTemplate.Spec.Template.Spec, toLocalServer); code != 0 {
		t.Fatalf("the drill of the dedicated database failed: %s", out)
	}
	c, err := backup.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	if record, err := c.LatestDrill(ctx, "own-cluster"); err != nil || record == nil || !record.OK || record.BackupID != m.ID || record.Tables != 1 {
		t.Errorf("drill record %+v (%v), want backup %s passed with 1 table", record, err, m.ID)
	}

	run("DELETE FROM orders WHERE item = 'lamp'", "INSERT INTO orders VALUES ('mistake')")
	restore := newRestore("own-cluster", "undo-cluster", v1alpha1.RestoreSpec{BackupID: m.ID})
	create(t, restore)
	if code, out := runHeldJob(t, specs.VerifyJobName(restore)); code != 0 {
		t.Fatalf("verify failed: %s", out)
	}
	job := &batchv1.Job{}
	waitFor(t, 60*time.Second, "the restore Job", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Namespace: adminNamespace, Name: specs.RestoreJobName(restore)}, job)
		return err == nil, client.IgnoreNotFound(err)
	})
	if l := job.Spec.Template.Labels[specs.BackupRunnerLabel]; l != "own-cluster" {
		t.Errorf("restore pods carry %s=%q, want the coop's name", specs.BackupRunnerLabel, l)
	}
	if code, out := runHeldJobWith(t, specs.RestoreJobName(restore), toLocalServer); code != 0 {
		t.Fatalf("the restore into the dedicated database failed: %s", out)
	}
	waitRestorePhase(t, restore, v1alpha1.RestoreSucceeded)
	conn, err := pgx.Connect(ctx, mainPostgres.URL(specs.DedicatedDatabase, string(owner.Data["password"]), specs.DedicatedDatabase))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var items string
	if err := conn.QueryRow(ctx, "SELECT string_agg(item, ',' ORDER BY item) FROM orders").Scan(&items); err != nil {
		t.Fatal(err)
	}
	if items != "bike,lamp" {
		t.Errorf("after the restore the orders are %q, want the backup's bike,lamp", items)
	}
	// The coop went through many passes since; a condition that does not
	// change keeps its time, so an unchanged coop costs no status write.
	mustGet(t, "", "own-cluster", coop)
	// The backup was run by hand, so the operator may not have read it yet.
	verified := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.RestoreVerifiedCondition)
	if verified == nil || (verified.Reason != v1alpha1.DrillPendingReason && !verified.LastTransitionTime.Equal(&pending.LastTransitionTime)) {
		t.Errorf("RestoreVerified = %+v, want it unchanged since %s, or DrillPending", verified, pending.LastTransitionTime)
	}
}

// toLocalServer points a runner's database arguments at the test's
// PostgreSQL server, where the cluster's Service and TLS would lead it.
func toLocalServer(args []string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--db-host="):
			a = "--db-host=" + mainPostgres.Host
		case strings.HasPrefix(a, "--db-port="):
			a = fmt.Sprintf("--db-port=%d", mainPostgres.Port)
		case strings.HasPrefix(a, "--db-sslmode="):
			a = "--db-sslmode=disable"
		}
		out = append(out, a)
	}
	return out
}

// playCloudNativePG does CloudNativePG's part for a coop's Cluster: the
// database and its owner, with the password of the owner Secret, on the
// test's PostgreSQL server (one at a time: every cluster's owner is "app"),
// and Ready. It returns the owner Secret.
func playCloudNativePG(t *testing.T, namespace string) *corev1.Secret {
	t.Helper()
	ctx := context.Background()
	owner := &corev1.Secret{}
	mustGet(t, namespace, specs.ClusterBootstrapSecretName, owner)
	admin, err := mainPostgres.Superuser(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close(ctx) }()
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", specs.DedicatedDatabase).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	statements := []string{fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", specs.DedicatedDatabase, owner.Data["password"])}
	if exists {
		statements = []string{fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", specs.DedicatedDatabase, owner.Data["password"])}
	}
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", specs.DedicatedDatabase).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if !exists {
		statements = append(statements, fmt.Sprintf("CREATE DATABASE %s OWNER %s", specs.DedicatedDatabase, specs.DedicatedDatabase))
	}
	for _, s := range statements {
		if _, err := admin.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	markClusterReady(t, namespace)
	return owner
}

// playCloudNativePGDatabase does CloudNativePG's part for a Database
// object: the database, owned as it asks, on the test's PostgreSQL server,
// and status.applied.
func playCloudNativePGDatabase(t *testing.T, db *unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	name, _, _ := unstructured.NestedString(db.Object, "spec", "name")
	owner, _, _ := unstructured.NestedString(db.Object, "spec", "owner")
	admin, err := mainPostgres.Superuser(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close(ctx) }()
	if _, err := admin.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s", name)); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", name, owner)); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(db.Object, true, "status", "applied"); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(db.Object, db.GetGeneration(), "status", "observedGeneration"); err != nil {
		t.Fatal(err)
	}
	if err := adminClient.Status().Update(ctx, db); err != nil {
		t.Fatal(err)
	}
}

// dedicatedRestoreEnv is restoreEnv with its plan, <prefix>-plan, in
// Dedicated mode.
func dedicatedRestoreEnv(t *testing.T, prefix string) backup.Store {
	t.Helper()
	_, store := restoreEnv(t, prefix)
	plan := &v1alpha1.Plan{}
	mustGet(t, "", prefix+"-plan", plan)
	plan.Spec.Database.Mode = v1alpha1.DatabaseModeDedicated
	if err := adminClient.Update(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	return store
}

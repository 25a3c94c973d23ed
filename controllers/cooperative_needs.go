package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/postgres"
	"cooperator.dev/cooperator/internal/secret"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/ssa"
)

// What an app's Blueprint says it needs (spec.needs) is provided in two
// phases. The database phase gives each app that needs a database its own,
// next to the coop's, and the Secret <app>-database: it holds the coop's
// password, so every Secret with that password is written in the one place
// that changes it. The apps phase runs each app's Redis, and holds an app
// back until its database is ready.

// appDatabaseNeed is an app that needs a database, and the extensions it needs.
type appDatabaseNeed struct {
	app        string
	extensions []string
}

// appsNeedingDatabase lists, in spec order, the coop's apps whose Blueprint
// needs a database. An app whose Blueprint does not exist is left to the
// apps phase, which says so.
func (r *CooperativeReconciler) appsNeedingDatabase(ctx context.Context, coop *v1alpha1.Cooperative) ([]appDatabaseNeed, error) {
	var needs []appDatabaseNeed
	for _, app := range coop.Spec.Apps {
		bp := &v1alpha1.Blueprint{}
		if err := r.Get(ctx, client.ObjectKey{Name: app.Blueprint}, bp); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("while getting Blueprint %s: %w", app.Blueprint, err)
		}
		if bp.Spec.Needs.Database {
			needs = append(needs, appDatabaseNeed{app: app.Name, extensions: slices.Compact(slices.Sorted(slices.Values(bp.Spec.Needs.Extensions)))})
		}
	}
	return needs, nil
}

// keptAppDatabases are the entries of status.database.apps whose app is
// still in spec.apps: a removed app keeps its database on the server, but
// not its entry.
func keptAppDatabases(coop *v1alpha1.Cooperative, entries []v1alpha1.AppDatabaseStatus) []v1alpha1.AppDatabaseStatus {
	var kept []v1alpha1.AppDatabaseStatus
	for _, e := range entries {
		if slices.ContainsFunc(coop.Spec.Apps, func(a v1alpha1.CooperativeApp) bool { return a.Name == e.App }) {
			kept = append(kept, e)
		}
	}
	return kept
}

func appDatabaseEntry(st *v1alpha1.DatabaseStatus, app string) *v1alpha1.AppDatabaseStatus {
	if st == nil {
		return nil
	}
	for i := range st.Apps {
		if st.Apps[i].App == app {
			return &st.Apps[i]
		}
	}
	return nil
}

func unavailableExtensions(want, offered []string) []string {
	var missing []string
	for _, e := range want {
		if !slices.Contains(offered, e) {
			missing = append(missing, e)
		}
	}
	return missing
}

// reconcileAppDatabases gives each app that needs a database its own on the
// coop's server, owned by the coop's role, with the extensions it needs, and
// its Secret. Like the coop's, an unchanged app database costs one read-only
// query for all of them and no DDL. An app that needs an extension the
// server does not offer gets no database; the apps phase says why.
func (r *CooperativeReconciler) reconcileAppDatabases(ctx context.Context, s *scope, server *v1alpha1.DatabaseServer, pg *postgres.Server, conn specs.Connection) error {
	coop := s.coop
	st := coop.Status.Database
	needs, err := r.appsNeedingDatabase(ctx, coop)
	if err != nil {
		return err
	}
	role := coop.DatabaseName()
	names := make([]string, 0, len(needs))
	for _, n := range needs {
		names = append(names, postgres.AppDatabaseName(role, n.app))
	}
	observed, err := pg.ObserveAppDatabases(ctx, names)
	if err != nil {
		return databaseFailure(coop, server.Name, "reading the apps' databases", err)
	}
	var entries []v1alpha1.AppDatabaseStatus
	for i, need := range needs {
		if len(unavailableExtensions(need.extensions, server.Spec.Extensions)) > 0 {
			continue
		}
		db := postgres.AppDatabase{Name: names[i], Owner: role}
		known := appDatabaseEntry(st, need.app)
		if o := observed[db.Name]; !o.UpToDate(db) {
			if err := pg.EnsureAppDatabase(ctx, db, o); err != nil {
				if errors.Is(err, postgres.ErrOwnedElsewhere) {
					setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, v1alpha1.DatabaseNameTakenReason,
						fmt.Sprintf("Database %s, for app %s, exists on DatabaseServer %s and belongs to another role; give the app another name", db.Name, need.app, server.Name))
					return reconcile.TerminalError(err)
				}
				return databaseFailure(coop, server.Name, fmt.Sprintf("creating the database of app %s", need.app), err)
			}
			ctrl.LoggerFrom(ctx).Info("Provisioned app database", "server", server.Name, "app", need.app, "database", db.Name)
			// A database made in this pass holds no extension yet.
			known = nil
		}
		if known == nil || !isSubset(need.extensions, known.Extensions) {
			if err := pg.EnsureExtensions(ctx, db.Name, role, need.extensions); err != nil {
				if k := postgres.Classify(err); k == postgres.KindUnreachable || k == postgres.KindAuthFailed {
					return databaseFailure(coop, server.Name, "creating extensions", err)
				}
				ctrl.LoggerFrom(ctx).Error(err, "Creating extensions", "app", need.app, "database", db.Name, "extensions", need.extensions)
				setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, v1alpha1.ExtensionFailedReason,
					fmt.Sprintf("DatabaseServer %s refused to create the extensions %v that app %s needs; an extension that needs a superuser must be provided by the server (for example installed in template1)", server.Name, need.extensions, need.app))
				return reconcile.TerminalError(errExtensionFailed)
			}
		}
		appConn := conn
		appConn.Database = db.Name
		if err := r.applyAppDatabaseSecret(ctx, coop, need.app, appConn); err != nil {
			return err
		}
		entries = append(entries, v1alpha1.AppDatabaseStatus{App: need.app, Name: db.Name,
			SecretName: specs.AppDatabaseSecretName(need.app), Extensions: need.extensions})
	}
	st.Apps = entries
	return nil
}

// reconcileDedicatedAppDatabases gives each app that needs a database a
// Secret to the coop's CloudNativePG cluster: there, apps share the
// cluster's one database. An app is listed once the cluster has been ready
// for it, so a new app waits for the cluster.
func (r *CooperativeReconciler) reconcileDedicatedAppDatabases(ctx context.Context, s *scope, conn specs.Connection, ready bool) error {
	coop := s.coop
	needs, err := r.appsNeedingDatabase(ctx, coop)
	if err != nil {
		return err
	}
	var entries []v1alpha1.AppDatabaseStatus
	for _, need := range needs {
		if err := r.applyAppDatabaseSecret(ctx, coop, need.app, conn); err != nil {
			return err
		}
		if ready || appDatabaseEntry(coop.Status.Database, need.app) != nil {
			entries = append(entries, v1alpha1.AppDatabaseStatus{App: need.app, Name: conn.Database, SecretName: specs.AppDatabaseSecretName(need.app)})
		}
	}
	coop.Status.Database.Apps = entries
	return nil
}

func (r *CooperativeReconciler) applyAppDatabaseSecret(ctx context.Context, coop *v1alpha1.Cooperative, app string, conn specs.Connection) error {
	if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &corev1.Secret{}, specs.AppDatabaseSecret(coop, app, conn), corev1ac.ExtractSecret); err != nil {
		return fmt.Errorf("while applying the database Secret of app %s: %w", app, err)
	}
	return nil
}

// reconcileAppNeeds gives an app, before it is applied, what its Blueprint
// says it needs beyond its own objects: it waits for the app's database,
// and runs the app's Redis.
func (r *CooperativeReconciler) reconcileAppNeeds(ctx context.Context, s *scope, app v1alpha1.CooperativeApp, bp *v1alpha1.Blueprint) (*appProblem, error) {
	if bp.Spec.Needs.Database {
		if problem, err := r.appDatabaseProblem(ctx, s.coop, app.Name, bp); err != nil || problem != nil {
			return problem, err
		}
	}
	if bp.Spec.Needs.Redis {
		return r.reconcileRedis(ctx, s.coop, app)
	}
	return nil, nil
}

// appDatabaseProblem says why an app's database is not there yet, or
// nothing once it is. An app whose database was made before is not held
// back while the coop's database is briefly not ready (a server connection
// being opened, a cluster restarting): it already runs, and keeps serving.
func (r *CooperativeReconciler) appDatabaseProblem(ctx context.Context, coop *v1alpha1.Cooperative, app string, bp *v1alpha1.Blueprint) (*appProblem, error) {
	st := coop.Status.Database
	if appDatabaseEntry(st, app) != nil {
		return nil, nil
	}
	ready := meta.IsStatusConditionTrue(coop.Status.Conditions, v1alpha1.DatabaseReadyCondition)
	if ready && st != nil && st.Mode == v1alpha1.DatabaseModeShared {
		server := &v1alpha1.DatabaseServer{}
		if err := r.Get(ctx, client.ObjectKey{Name: st.Server}, server); err != nil {
			return nil, fmt.Errorf("while getting DatabaseServer %s: %w", st.Server, err)
		}
		if missing := unavailableExtensions(bp.Spec.Needs.Extensions, server.Spec.Extensions); len(missing) > 0 {
			return &appProblem{reason: v1alpha1.ExtensionUnavailableReason, terminal: true, message: fmt.Sprintf(
				"App %s: DatabaseServer %s does not offer the extensions %v it needs; its spec.extensions lists what it offers", app, server.Name, missing)}, nil
		}
	}
	return &appProblem{reason: v1alpha1.DatabaseNotReadyReason, message: fmt.Sprintf("App %s: waiting for its database", app)}, nil
}

// reconcileRedis runs the app's Redis: its password is made once and kept in
// the Secret <app>-redis, which Redis and the app both read. A new app
// waits until its Redis has rolled out; an app that serves already is not
// held back while its Redis restarts.
func (r *CooperativeReconciler) reconcileRedis(ctx context.Context, coop *v1alpha1.Cooperative, app v1alpha1.CooperativeApp) (*appProblem, error) {
	key := client.ObjectKey{Namespace: coop.NamespaceName(), Name: specs.RedisName(app.Name)}
	existing := &corev1.Secret{}
	err := r.Get(ctx, key, existing)
	if apierrors.IsNotFound(err) {
		// The cache may not have seen a Secret made a moment ago; a new
		// password would lock out the Redis already started with the old one.
		err = r.APIReader.Get(ctx, key, existing)
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("while getting the Redis Secret: %w", err)
	}
	password := string(existing.Data["password"])
	if password == "" {
		if password, err = secret.Token(32); err != nil {
			return nil, err
		}
	}
	if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &corev1.Secret{}, specs.RedisSecret(coop, app.Name, password), corev1ac.ExtractSecret); err != nil {
		return nil, fmt.Errorf("while applying the Redis Secret: %w", err)
	}
	objs, err := specs.RedisObjects(coop, app.Name, app.Hibernate)
	if err != nil {
		return nil, err
	}
	for _, obj := range objs {
		if _, err := ssa.ApplyUnstructured(ctx, r.Client, r.APIReader, obj); err != nil {
			return nil, fmt.Errorf("while applying %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	if servingVersion(coop, app.Name) != "" {
		return nil, nil
	}
	waiting, err := r.rolloutWaiting(ctx, objs)
	if err != nil || waiting == "" {
		return nil, err
	}
	return &appProblem{reason: v1alpha1.AppsProgressingReason, message: fmt.Sprintf("App %s: %s", app.Name, waiting)}, nil
}

// budgetedObjects are what an app's limits are checked against the plan
// with: its rendered objects and the Redis the operator runs for it.
func budgetedObjects(coop *v1alpha1.Cooperative, app string, bp *v1alpha1.Blueprint, objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	if !bp.Spec.Needs.Redis {
		return objs, nil
	}
	redis, err := specs.RedisObjects(coop, app, false)
	if err != nil {
		return nil, err
	}
	return append(slices.Clip(objs), redis...), nil
}

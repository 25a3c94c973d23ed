package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/postgres"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/ssa"
)

// +kubebuilder:rbac:groups=cooperator.dev,resources=cooperatives,verbs=patch;update
// +kubebuilder:rbac:groups=cooperator.dev,resources=databaseservers,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create;update;patch
// +kubebuilder:rbac:groups=postgresql.cnpg.io,resources=clusters,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=postgresql.cnpg.io,resources=databases,verbs=get;list;watch;create;update;patch

// DatabaseServerAnnotation records the shared server a coop's database was
// placed on. It is written with the finalizer, before anything is created
// on the server, so that a crash cannot place the coop twice.
const DatabaseServerAnnotation = "cooperator.dev/database-server"

// passwordPendingAnnotation marks a database Secret whose password the server
// may not have yet: the password is written to the Secret first, so that a
// crash can never leave the server with a password nobody has.
const passwordPendingAnnotation = "cooperator.dev/password-pending"

// passwordRotationAnnotation records, on the database Secret, the rotation
// its password answers: a pass that still sees the coop's status from
// before the rotation must not rotate the password a second time.
const passwordRotationAnnotation = "cooperator.dev/password-rotation"

// coopRolePrefix starts the name of every coop's role (see
// v1alpha1.Cooperative.DatabaseName).
const coopRolePrefix = "coop_"

// waitForServer is how soon a coop looks again for a server connection that
// the DatabaseServer controller has not opened yet.
const waitForServer = 2 * time.Second

var (
	errModeChange          = errors.New("database mode change refused")
	errServerNotFound      = errors.New("database server not found")
	errNoServerCapacity    = errors.New("no database server with capacity")
	errExtensionMissing    = errors.New("extension not offered")
	errExtensionFailed     = errors.New("extension creation failed")
	errCNPGMissing         = errors.New("CloudNativePG is not installed")
	errDatabaseUnavailable = errors.New("database server failed")
)

// placer keeps the placements made but not yet seen in the cache, so that
// coops placed at the same moment do not overfill a server.
type placer struct {
	mu      sync.Mutex
	pending map[string]string // coop -> server
}

// reconcileDatabase gives the coop a database, on a shared server or in a
// CloudNativePG cluster of its own, and the Secret apps read it from.
func (r *CooperativeReconciler) reconcileDatabase(ctx context.Context, s *scope) (ctrl.Result, error) {
	coop := s.coop
	mode := coop.EffectiveDatabaseMode(s.plan)
	if st := coop.Status.Database; st != nil && st.Mode != "" && st.Mode != mode {
		setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, v1alpha1.ModeChangeRefusedReason,
			fmt.Sprintf("The database was created in %s mode; moving it to %s mode is not implemented. Set spec.database.mode to %s, or back up, recreate and restore the coop", st.Mode, mode, st.Mode))
		return ctrl.Result{}, reconcile.TerminalError(errModeChange)
	}
	if mode == v1alpha1.DatabaseModeDedicated {
		return r.reconcileDedicatedDatabase(ctx, s)
	}
	return r.reconcileSharedDatabase(ctx, s)
}

func (r *CooperativeReconciler) reconcileSharedDatabase(ctx context.Context, s *scope) (ctrl.Result, error) {
	coop := s.coop
	server, err := r.placeDatabase(ctx, s)
	if err != nil {
		return ctrl.Result{}, err
	}
	st := &v1alpha1.DatabaseStatus{
		Mode: v1alpha1.DatabaseModeShared, Server: server.Name,
		Host: server.Spec.Host, Port: server.Spec.Port,
		Name: coop.DatabaseName(), Role: coop.DatabaseName(), SecretName: specs.DatabaseSecretName,
	}
	if old := coop.Status.Database; old != nil {
		st.Extensions, st.PasswordRotation = old.Extensions, old.PasswordRotation
		st.Apps = keptAppDatabases(coop, old.Apps)
	}
	coop.Status.Database = st

	pg, ok := r.Servers.Lookup(server.Name)
	if !ok {
		setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, v1alpha1.ServerUnreachableReason,
			fmt.Sprintf("Waiting for the operator to connect to DatabaseServer %s", server.Name))
		return ctrl.Result{RequeueAfter: waitForServer}, nil
	}
	db := postgres.Database{Name: coop.DatabaseName(), ConnectionLimit: s.plan.Spec.Database.ConnectionLimit}
	if db.ConnectionLimit == 0 {
		db.ConnectionLimit = 20
	}
	observed, err := pg.Observe(ctx, db)
	if err != nil {
		return ctrl.Result{}, databaseFailure(coop, server.Name, "reading the database", err)
	}
	if observed.DatabaseExists && observed.Owner != db.Name && strings.HasPrefix(observed.Owner, coopRolePrefix) {
		// An app's database of another coop can bear this coop's name; its
		// data is never taken over.
		setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, v1alpha1.DatabaseNameTakenReason,
			fmt.Sprintf("Database %s exists on DatabaseServer %s and belongs to another coop's role", db.Name, server.Name))
		return ctrl.Result{}, reconcile.TerminalError(postgres.ErrOwnedElsewhere)
	}

	conn := specs.Connection{Host: st.Host, Port: st.Port, Database: db.Name, User: db.Name, SSLMode: server.Spec.SSLMode}
	secret := &corev1.Secret{}
	err = r.Get(ctx, client.ObjectKey{Namespace: coop.NamespaceName(), Name: specs.DatabaseSecretName}, secret)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("while getting the database Secret: %w", err)
	}
	conn.Password = string(secret.Data["password"])
	pending := secret.Annotations[passwordPendingAnnotation] == "true"
	rotation := coop.Annotations[v1alpha1.RotateDatabasePasswordAnnotation]
	if done := secret.Annotations[passwordRotationAnnotation]; done != "" && done == rotation {
		st.PasswordRotation = done
	}
	rotate := rotation != "" && rotation != st.PasswordRotation

	switch {
	case !observed.RoleExists:
		// A new role takes the Secret's password if there is one: written
		// first, it survives a crash between the two steps.
		if conn.Password == "" {
			if conn.Password, err = postgres.NewPassword(); err != nil {
				return ctrl.Result{}, err
			}
		}
		if err := r.applyDatabaseSecret(ctx, coop, conn, false, st.PasswordRotation); err != nil {
			return ctrl.Result{}, err
		}
	case conn.Password == "" || rotate || pending:
		if !pending {
			if conn.Password, err = postgres.NewPassword(); err != nil {
				return ctrl.Result{}, err
			}
			answers := st.PasswordRotation
			if rotate {
				answers = rotation
			}
			if err := r.applyDatabaseSecret(ctx, coop, conn, true, answers); err != nil {
				return ctrl.Result{}, err
			}
		}
		if err := pg.SetPassword(ctx, db, conn.Password); err != nil {
			return ctrl.Result{}, databaseFailure(coop, server.Name, "setting the password", err)
		}
		ctrl.LoggerFrom(ctx).Info("Set a new database password", "database", db.Name)
		if rotate {
			st.PasswordRotation = rotation
		}
	}
	if !observed.UpToDate(db) {
		if err := pg.Ensure(ctx, db, observed, conn.Password); err != nil {
			return ctrl.Result{}, databaseFailure(coop, server.Name, "creating the role and database", err)
		}
		ctrl.LoggerFrom(ctx).Info("Provisioned database", "server", server.Name, "database", db.Name)
	}

	if err := r.ensureExtensions(ctx, coop, server, pg, db); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.applyDatabaseSecret(ctx, coop, conn, false, st.PasswordRotation); err != nil {
		return ctrl.Result{}, err
	}
	s.connection = &conn
	if err := r.reconcileAppDatabases(ctx, s, server, pg, conn); err != nil {
		return ctrl.Result{}, err
	}
	setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionTrue, v1alpha1.DatabaseProvisionedReason,
		fmt.Sprintf("Database %s on DatabaseServer %s", db.Name, server.Name))
	return ctrl.Result{}, nil
}

func (r *CooperativeReconciler) applyDatabaseSecret(ctx context.Context, coop *v1alpha1.Cooperative, conn specs.Connection, pending bool, rotation string) error {
	desired := specs.DatabaseSecret(coop, conn)
	if pending {
		desired.WithAnnotations(map[string]string{passwordPendingAnnotation: "true"})
	}
	if rotation != "" {
		desired.WithAnnotations(map[string]string{passwordRotationAnnotation: rotation})
	}
	sent, err := ssa.Apply(ctx, r.Client, r.APIReader, &corev1.Secret{}, desired, corev1ac.ExtractSecret)
	if err != nil {
		return fmt.Errorf("while applying the database Secret: %w", err)
	}
	if !sent {
		return nil
	}
	// The next pass takes the password from the cached Secret; were it
	// older than this write, that pass would write the old password back
	// over the one the server has.
	key := client.ObjectKey{Namespace: coop.NamespaceName(), Name: specs.DatabaseSecretName}
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		cached := &corev1.Secret{}
		if err := r.Get(ctx, key, cached); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return string(cached.Data["password"]) == conn.Password && (cached.Annotations[passwordPendingAnnotation] == "true") == pending, nil
	})
	if err != nil {
		return fmt.Errorf("while waiting for the database Secret in the cache: %w", err)
	}
	return nil
}

// ensureExtensions creates the extensions the coop needs, if its server
// offers them. The status remembers what was created, so a steady coop does
// not connect to its database.
func (r *CooperativeReconciler) ensureExtensions(ctx context.Context, coop *v1alpha1.Cooperative, server *v1alpha1.DatabaseServer, pg *postgres.Server, db postgres.Database) error {
	want := slices.Sorted(slices.Values(coop.Spec.Database.Extensions))
	want = slices.Compact(want)
	st := coop.Status.Database
	var unavailable []string
	for _, e := range want {
		if !slices.Contains(server.Spec.Extensions, e) {
			unavailable = append(unavailable, e)
		}
	}
	if len(unavailable) > 0 {
		setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, v1alpha1.ExtensionUnavailableReason,
			fmt.Sprintf("DatabaseServer %s does not offer the extensions %v; its spec.extensions lists what it offers", server.Name, unavailable))
		return reconcile.TerminalError(errExtensionMissing)
	}
	if isSubset(want, st.Extensions) {
		return nil
	}
	if err := pg.EnsureExtensions(ctx, db.Name, db.Name, want); err != nil {
		if k := postgres.Classify(err); k == postgres.KindUnreachable || k == postgres.KindAuthFailed {
			return databaseFailure(coop, server.Name, "creating extensions", err)
		}
		ctrl.LoggerFrom(ctx).Error(err, "Creating extensions", "database", db.Name, "extensions", want)
		setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, v1alpha1.ExtensionFailedReason,
			fmt.Sprintf("DatabaseServer %s refused to create the extensions %v; an extension that needs a superuser must be provided by the server (for example installed in template1)", server.Name, want))
		return reconcile.TerminalError(errExtensionFailed)
	}
	st.Extensions = want
	return nil
}

func isSubset(want, have []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// databaseFailure sets DatabaseReady from a server error. The error text goes
// to the log, not the condition: it may change from try to try.
func databaseFailure(coop *v1alpha1.Cooperative, server, doing string, err error) error {
	reason, message := v1alpha1.DatabaseErrorReason, fmt.Sprintf("DatabaseServer %s refused %s; retrying", server, doing)
	switch postgres.Classify(err) {
	case postgres.KindUnreachable:
		reason, message = v1alpha1.ServerUnreachableReason, fmt.Sprintf("DatabaseServer %s does not answer; retrying", server)
	case postgres.KindAuthFailed:
		reason, message = v1alpha1.AdminAuthFailedReason, fmt.Sprintf("DatabaseServer %s refused the admin credentials; check its adminSecretRef", server)
	case postgres.KindPermissionDenied:
		reason, message = v1alpha1.PermissionDeniedReason, fmt.Sprintf("The admin role of DatabaseServer %s lacks a privilege for %s; it needs CREATEROLE and CREATEDB", server, doing)
	}
	setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, reason, message)
	return fmt.Errorf("%w: %s on %s: %w", errDatabaseUnavailable, doing, server, err)
}

// placeDatabase returns the coop's server: the one it was placed on, or the
// reachable server its plan allows with room to spare that hosts the fewest
// databases. A new placement is recorded on the coop, with the finalizer,
// before the server is touched.
func (r *CooperativeReconciler) placeDatabase(ctx context.Context, s *scope) (*v1alpha1.DatabaseServer, error) {
	coop := s.coop
	server := &v1alpha1.DatabaseServer{}
	if name := coop.Annotations[DatabaseServerAnnotation]; name != "" {
		r.placer.mu.Lock()
		delete(r.placer.pending, coop.Name)
		r.placer.mu.Unlock()
		if err := r.Get(ctx, client.ObjectKey{Name: name}, server); err != nil {
			if apierrors.IsNotFound(err) {
				setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, v1alpha1.ServerNotFoundReason,
					fmt.Sprintf("DatabaseServer %s, which holds this coop's database, does not exist", name))
				return nil, reconcile.TerminalError(errServerNotFound)
			}
			return nil, fmt.Errorf("while getting DatabaseServer %s: %w", name, err)
		}
		return server, r.ensureFinalizer(ctx, coop, name)
	}

	r.placer.mu.Lock()
	defer r.placer.mu.Unlock()
	chosen, err := r.chooseServer(ctx, s)
	if err != nil || chosen == nil {
		return nil, err
	}
	if r.placer.pending == nil {
		r.placer.pending = map[string]string{}
	}
	r.placer.pending[coop.Name] = chosen.Name
	if err := r.ensureFinalizer(ctx, coop, chosen.Name); err != nil {
		delete(r.placer.pending, coop.Name)
		return nil, err
	}
	ctrl.LoggerFrom(ctx).Info("Placed database", "server", chosen.Name)
	return chosen, nil
}

func (r *CooperativeReconciler) chooseServer(ctx context.Context, s *scope) (*v1alpha1.DatabaseServer, error) {
	coop := s.coop
	var servers v1alpha1.DatabaseServerList
	opts := []client.ListOption{}
	if sel := s.plan.Spec.Database.ServerSelector; sel != nil {
		selector, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return nil, reconcile.TerminalError(fmt.Errorf("plan %s: spec.database.serverSelector: %w", s.plan.Name, err))
		}
		opts = append(opts, client.MatchingLabelsSelector{Selector: selector})
	}
	if err := r.List(ctx, &servers, opts...); err != nil {
		return nil, fmt.Errorf("while listing DatabaseServers: %w", err)
	}
	var best *v1alpha1.DatabaseServer
	bestHosted := 0
	for i := range servers.Items {
		srv := &servers.Items[i]
		if !meta.IsStatusConditionTrue(srv.Status.Conditions, v1alpha1.ReadyCondition) {
			continue
		}
		hosted, err := r.hosted(ctx, srv.Name)
		if err != nil {
			return nil, err
		}
		if hosted >= int(srv.Spec.MaxDatabases) {
			continue
		}
		if best == nil || hosted < bestHosted || (hosted == bestHosted && srv.Name < best.Name) {
			best, bestHosted = srv, hosted
		}
	}
	if best == nil {
		setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, v1alpha1.NoServerCapacityReason,
			fmt.Sprintf("No ready DatabaseServer that plan %s allows has room for another database; add a server or raise maxDatabases", s.plan.Name))
		return nil, reconcile.TerminalError(errNoServerCapacity)
	}
	return best, nil
}

// hosted counts the coops placed on a server, including placements not yet
// in the cache. Caller holds placer.mu.
func (r *CooperativeReconciler) hosted(ctx context.Context, server string) (int, error) {
	var coops v1alpha1.CooperativeList
	if err := r.List(ctx, &coops, client.MatchingFields{serverIndex: server}); err != nil {
		return 0, fmt.Errorf("while counting the databases on %s: %w", server, err)
	}
	names := map[string]bool{}
	for _, c := range coops.Items {
		names[c.Name] = true
	}
	for coop, srv := range r.placer.pending {
		if srv == server {
			names[coop] = true
		}
	}
	return len(names), nil
}

// ensureFinalizer records the coop's server and adds the database finalizer
// in one patch, before anything exists on the server. A dedicated coop,
// with no server to record, passes "".
func (r *CooperativeReconciler) ensureFinalizer(ctx context.Context, coop *v1alpha1.Cooperative, server string) error {
	if controllerutil.ContainsFinalizer(coop, v1alpha1.DatabaseFinalizer) && coop.Annotations[DatabaseServerAnnotation] == server {
		return nil
	}
	before := coop.DeepCopy()
	controllerutil.AddFinalizer(coop, v1alpha1.DatabaseFinalizer)
	if server != "" {
		metav1.SetMetaDataAnnotation(&coop.ObjectMeta, DatabaseServerAnnotation, server)
	}
	// The patch's answer carries the stored status; this pass's is kept,
	// to be written at its end.
	status := coop.Status.DeepCopy()
	if err := r.Patch(ctx, coop, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("while recording the database server: %w", err)
	}
	coop.Status = *status
	return nil
}

// reconcileDedicatedDatabase runs a CloudNativePG cluster in the coop's
// namespace and gives apps the same Secret as in Shared mode.
func (r *CooperativeReconciler) reconcileDedicatedDatabase(ctx context.Context, s *scope) (ctrl.Result, error) {
	coop := s.coop
	if !r.CNPGInstalled {
		setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, v1alpha1.CloudNativePGMissingReason,
			"Dedicated mode needs the CloudNativePG operator (postgresql.cnpg.io/v1 Cluster), which this cluster does not have; install it and restart the operator")
		return ctrl.Result{}, reconcile.TerminalError(errCNPGMissing)
	}
	st := &v1alpha1.DatabaseStatus{
		Mode: v1alpha1.DatabaseModeDedicated, Host: specs.ClusterHost(coop), Port: 5432,
		Name: specs.DedicatedDatabase, Role: specs.DedicatedDatabase, SecretName: specs.DatabaseSecretName,
	}
	if old := coop.Status.Database; old != nil {
		st.Apps = keptAppDatabases(coop, old.Apps)
	}
	coop.Status.Database = st

	owner := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: coop.NamespaceName(), Name: specs.ClusterBootstrapSecretName}, owner)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("while getting the cluster's owner Secret: %w", err)
	}
	// Before the cluster exists, so that deleting the coop cannot take it
	// without its final backup or retention.
	if err := r.ensureFinalizer(ctx, coop, ""); err != nil {
		return ctrl.Result{}, err
	}
	password := string(owner.Data[corev1.BasicAuthPasswordKey])
	if password == "" {
		if password, err = postgres.NewPassword(); err != nil {
			return ctrl.Result{}, err
		}
	}
	conn := specs.Connection{Host: specs.ClusterHost(coop), Port: 5432, Database: specs.DedicatedDatabase,
		User: specs.DedicatedDatabase, Password: password, SSLMode: specs.ClusterSSLMode}
	applies := []func() (string, error){
		applyOne(ctx, r, &corev1.Secret{}, specs.ClusterBootstrapSecret(coop, password), corev1ac.ExtractSecret),
		applyHashed(ctx, r, &networkingv1.NetworkPolicy{}, specs.DatabaseClusterPolicy(coop, r.Options), networkingv1ac.ExtractNetworkPolicy),
		func() (string, error) {
			_, err := ssa.ApplyUnstructured(ctx, r.Client, r.APIReader, specs.Cluster(coop, s.plan))
			return "Cluster " + specs.ClusterName, err
		},
		applyOne(ctx, r, &corev1.Secret{}, specs.DatabaseSecret(coop, conn), corev1ac.ExtractSecret),
	}
	for _, apply := range applies {
		if what, err := apply(); err != nil {
			setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, v1alpha1.NamespaceApplyFailedReason,
				fmt.Sprintf("Applying %s failed; retrying", what))
			return ctrl.Result{}, fmt.Errorf("while applying %s: %w", what, err)
		}
	}
	cluster := &unstructured.Unstructured{}
	cluster.SetGroupVersionKind(specs.Cluster(coop, s.plan).GroupVersionKind())
	if err := r.Get(ctx, client.ObjectKey{Namespace: coop.NamespaceName(), Name: specs.ClusterName}, cluster); err != nil {
		if apierrors.IsNotFound(err) {
			setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, v1alpha1.ClusterNotReadyReason, "Waiting for the CloudNativePG cluster")
			return ctrl.Result{RequeueAfter: waitForServer}, nil
		}
		return ctrl.Result{}, fmt.Errorf("while getting the Cluster: %w", err)
	}
	if err := r.reconcileDedicatedAppDatabases(ctx, s, conn, clusterReady(cluster)); err != nil {
		return ctrl.Result{}, err
	}
	if clusterReady(cluster) {
		s.connection = &conn
		setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionTrue, v1alpha1.DatabaseProvisionedReason,
			"Database app in the coop's own CloudNativePG cluster")
	} else {
		setCondition(coop, v1alpha1.DatabaseReadyCondition, metav1.ConditionFalse, v1alpha1.ClusterNotReadyReason,
			"The coop's CloudNativePG cluster is not ready yet")
	}
	return ctrl.Result{}, nil
}

// clusterReady reads the CloudNativePG Cluster's own Ready condition.
func clusterReady(cluster *unstructured.Unstructured) bool {
	conditions, _, _ := unstructured.NestedSlice(cluster.Object, "status", "conditions")
	for _, c := range conditions {
		m, ok := c.(map[string]any)
		if ok && m["type"] == "Ready" && m["status"] == "True" {
			return true
		}
	}
	return false
}

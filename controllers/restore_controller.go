package controllers

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/backup"
	"cooperator.dev/cooperator/internal/postgres"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/ssa"
)

// RestoreReconciler brings a backup back into the coop whose namespace
// holds a Restore: it verifies the backup, has the coop's apps scaled to
// zero, restores the databases with the runner, and lets the apps come
// back. It never writes the Cooperative: the Cooperative reconciler reads
// the Restore's phase and scales the apps.
type RestoreReconciler struct {
	client.Client
	// APIReader lists pods, which the cache does not hold.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Options   specs.Options
}

// restoreWait is how often a Restore looks again while it waits for pods
// to go, or for a database or store to be ready.
const restoreWait = 2 * time.Second

// restoreProblem is why a Restore cannot go on: for good, or until the
// outside world changes (wait).
type restoreProblem struct {
	reason, message string
	wait            bool
}

func (p *restoreProblem) Error() string { return p.message }

func stopRestore(reason, format string, args ...any) error {
	return &restoreProblem{reason: reason, message: fmt.Sprintf(format, args...)}
}

func waitRestore(reason, format string, args ...any) error {
	return &restoreProblem{reason: reason, message: fmt.Sprintf(format, args...), wait: true}
}

// restorePlan is what a Restore resolved: the coop it writes, the backup
// it reads, and how the runner reaches both.
type restorePlan struct {
	target *v1alpha1.Cooperative
	store  *v1alpha1.BackupStore
	client *backup.Client
	// job is what the runner's Jobs are given.
	job specs.RestoreTarget
	// identity decrypts an encrypted backup: the coop's, read from its
	// Secret, for the restore Job alone.
	identity string
}

// +kubebuilder:rbac:groups=cooperator.dev,resources=restores,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=cooperator.dev,resources=restores/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=cooperator.dev,resources=restores/finalizers,verbs=update
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=list
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;watch

// Reconcile moves a Restore through its phases, one step a pass, and writes
// its status once. Succeeded and Failed are final.
func (r *RestoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	restore := &v1alpha1.Restore{}
	if err := r.Get(ctx, req.NamespacedName, restore); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !restore.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, restore)
	}
	if restore.Status.Phase.IsFinal() {
		// The Jobs stay while the Restore does, for their logs; the copy of
		// the password goes as soon as it is not needed.
		return ctrl.Result{}, r.deleteSecret(ctx, restore)
	}
	if !controllerutil.ContainsFinalizer(restore, v1alpha1.RestoreFinalizer) {
		patch := client.MergeFrom(restore.DeepCopy())
		controllerutil.AddFinalizer(restore, v1alpha1.RestoreFinalizer)
		return ctrl.Result{}, r.Patch(ctx, restore, patch)
	}

	before := restore.DeepCopy()
	defer func() {
		restore.Status.ObservedGeneration = restore.Generation
		if equality.Semantic.DeepEqual(before.Status, restore.Status) {
			return
		}
		if err := r.Status().Patch(ctx, restore, client.MergeFrom(before)); client.IgnoreNotFound(err) != nil {
			retErr = errors.Join(retErr, fmt.Errorf("while writing status: %w", err))
		}
	}()

	var err error
	switch restore.Status.Phase {
	case "", v1alpha1.RestorePending:
		err = r.start(ctx, restore)
	case v1alpha1.RestoreVerifying:
		err = r.verify(ctx, restore)
	case v1alpha1.RestoreScalingDown:
		result, err = r.scaleDown(ctx, restore)
	case v1alpha1.RestoreRestoring:
		err = r.restore(ctx, restore)
	}
	var problem *restoreProblem
	switch {
	case errors.As(err, &problem) && problem.wait:
		setRestorePhase(restore, restore.Status.Phase, v1alpha1.RestoreRunningReason, problem.message)
		return ctrl.Result{RequeueAfter: restoreWait}, nil
	case errors.As(err, &problem):
		r.finish(ctx, restore, problem.reason, problem.message)
		return ctrl.Result{}, nil
	}
	return result, err
}

// setRestorePhase sets the phase, the message and Succeeded: Unknown while
// the Restore runs, True or False once it is final.
func setRestorePhase(restore *v1alpha1.Restore, phase v1alpha1.RestorePhase, reason, message string) {
	if phase == "" {
		phase = v1alpha1.RestorePending
	}
	restore.Status.Phase, restore.Status.Message = phase, message
	status := metav1.ConditionUnknown
	switch phase {
	case v1alpha1.RestoreSucceeded:
		status = metav1.ConditionTrue
	case v1alpha1.RestoreFailed:
		status = metav1.ConditionFalse
	}
	meta.SetStatusCondition(&restore.Status.Conditions, metav1.Condition{Type: v1alpha1.SucceededCondition,
		Status: status, Reason: reason, Message: message, ObservedGeneration: restore.Generation})
}

// finish makes the Restore final and tells its coop: the coop's apps come
// back once the Cooperative reconciler sees the phase.
func (r *RestoreReconciler) finish(ctx context.Context, restore *v1alpha1.Restore, reason, message string) {
	phase, eventType := v1alpha1.RestoreFailed, corev1.EventTypeWarning
	if reason == v1alpha1.RestoredReason {
		phase, eventType = v1alpha1.RestoreSucceeded, corev1.EventTypeNormal
	}
	setRestorePhase(restore, phase, reason, message)
	now := metav1.Now()
	restore.Status.CompletedAt = &now
	var coop runtime.Object
	target := &v1alpha1.Cooperative{}
	if name, ok := coopOfNamespace(restore.Namespace); ok && r.Get(ctx, client.ObjectKey{Name: name}, target) == nil {
		coop = target
		r.Recorder.Eventf(target, restore, eventType, reason, "Restore", "Restore %s: %s", restore.Name, message)
	}
	r.Recorder.Eventf(restore, coop, eventType, reason, "Restore", "%s", message)
	ctrl.LoggerFrom(ctx).Info("Restore ended", "phase", phase, "reason", reason)
}

// start resolves the backup and everything the restore needs, refusing a
// Restore that cannot succeed before anything is run.
func (r *RestoreReconciler) start(ctx context.Context, restore *v1alpha1.Restore) error {
	if err := r.waitTurn(ctx, restore); err != nil {
		return err
	}
	p, err := r.resolve(ctx, restore)
	if err != nil {
		return err
	}
	restore.Status.BackupID = p.job.ID
	restore.Status.Source = fmt.Sprintf("s3://%s/%s/", p.store.Spec.Bucket,
		strings.TrimLeft(path.Join(p.store.Spec.Prefix, p.job.Source, p.job.ID), "/"))
	now := metav1.Now()
	restore.Status.StartedAt = &now
	setRestorePhase(restore, v1alpha1.RestoreVerifying, v1alpha1.RestoreRunningReason,
		fmt.Sprintf("Checking every object of backup %s of %s", p.job.ID, p.job.Source))
	r.Recorder.Eventf(restore, nil, corev1.EventTypeNormal, string(v1alpha1.RestoreVerifying), "Restore", "Checking backup %s of %s", p.job.ID, p.job.Source)
	return nil
}

// waitTurn keeps a coop's Restores one at a time: a Restore starts once
// every Restore of the coop created before it has ended.
func (r *RestoreReconciler) waitTurn(ctx context.Context, restore *v1alpha1.Restore) error {
	list := &v1alpha1.RestoreList{}
	if err := r.List(ctx, list, client.InNamespace(restore.Namespace)); err != nil {
		return fmt.Errorf("while listing the coop's Restores: %w", err)
	}
	for _, other := range list.Items {
		if other.Name == restore.Name || other.Status.Phase.IsFinal() || !other.DeletionTimestamp.IsZero() {
			continue
		}
		before := other.CreationTimestamp.Before(&restore.CreationTimestamp) ||
			(other.CreationTimestamp.Equal(&restore.CreationTimestamp) && other.Name < restore.Name)
		if before || other.Status.Phase != v1alpha1.RestorePending && other.Status.Phase != "" {
			return waitRestore(v1alpha1.RestoreRunningReason, "Waiting for Restore %s of the coop to end", other.Name)
		}
	}
	return nil
}

// verify runs `cooperator verify` and waits for it; nothing of the target
// has been touched yet, so a damaged backup fails the Restore harmlessly.
func (r *RestoreReconciler) verify(ctx context.Context, restore *v1alpha1.Restore) error {
	p, err := r.resolve(ctx, restore)
	if err != nil {
		return err
	}
	job := specs.VerifyJob(restore, p.target, p.job, r.Options)
	state, message, err := r.runJob(ctx, job)
	if err != nil {
		return err
	}
	switch state {
	case jobFailed:
		return stopRestore(v1alpha1.VerifyFailedReason, "%s; nothing was changed", message)
	case jobSucceeded:
		setRestorePhase(restore, v1alpha1.RestoreScalingDown, v1alpha1.RestoreRunningReason,
			fmt.Sprintf("Backup %s is whole; scaling the apps of %s to zero", p.job.ID, p.target.Name))
		return nil
	}
	return nil // the Job's end wakes the Restore
}

// scaleDown waits until the Cooperative reconciler has scaled the target's
// apps to zero and their pods are gone, then starts the restore Job.
func (r *RestoreReconciler) scaleDown(ctx context.Context, restore *v1alpha1.Restore) (ctrl.Result, error) {
	p, err := r.resolve(ctx, restore)
	if err != nil {
		return ctrl.Result{}, err
	}
	if waiting, err := r.appsRunning(ctx, p.target); err != nil || waiting != "" {
		if err == nil {
			restore.Status.Message = "Waiting for the apps to stop: " + waiting
		}
		return ctrl.Result{RequeueAfter: restoreWait}, err
	}
	password, err := r.targetPassword(ctx, p.target)
	if err != nil {
		return ctrl.Result{}, err
	}
	vols, err := r.restoreVolumes(ctx, p)
	if err != nil {
		return ctrl.Result{}, err
	}
	token := ""
	if len(vols) > 0 {
		if token, err = volumeToken(ctx, r.Client, client.ObjectKey{Namespace: r.Options.OperatorNamespace, Name: specs.RestoreName(restore)}); err != nil {
			return ctrl.Result{}, err
		}
	}
	if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &corev1.Secret{},
		specs.RestorePasswordSecret(restore, p.target, r.Options.OperatorNamespace, password, token, p.identity), corev1ac.ExtractSecret); err != nil {
		return ctrl.Result{}, fmt.Errorf("while applying the restore's database Secret: %w", err)
	}
	if err := r.startReceivers(ctx, restore, p, vols, token); err != nil {
		return ctrl.Result{}, err
	}
	if _, _, err := r.runJob(ctx, specs.RestoreJob(restore, p.target, p.job, r.Options)); err != nil {
		return ctrl.Result{}, err
	}
	what := "the databases"
	if n := len(p.job.RemoteVolumes); n > 0 {
		what = fmt.Sprintf("the databases and %d volumes", n)
	}
	setRestorePhase(restore, v1alpha1.RestoreRestoring, v1alpha1.RestoreRunningReason,
		fmt.Sprintf("Restoring backup %s of %s into %s of %s", p.job.ID, p.job.Source, what, p.target.Name))
	return ctrl.Result{}, nil
}

// restore waits for the restore Job. Nothing is resolved again here: once
// the Job runs, only its end may end the Restore and bring the apps back.
func (r *RestoreReconciler) restore(ctx context.Context, restore *v1alpha1.Restore) error {
	job := &batchv1.Job{}
	err := r.Get(ctx, client.ObjectKey{Namespace: r.Options.OperatorNamespace, Name: specs.RestoreJobName(restore)}, job)
	if apierrors.IsNotFound(err) {
		return stopRestore(v1alpha1.RestoreFailedReason,
			"The restore Job %s was deleted before it ended; the databases may be partly restored (each database is restored in one transaction)", specs.RestoreJobName(restore))
	}
	if err != nil {
		return err
	}
	state, message, err := r.jobState(ctx, job)
	if err != nil {
		return err
	}
	switch state {
	case jobFailed:
		return stopRestore(v1alpha1.RestoreFailedReason, "%s", message)
	case jobSucceeded:
		r.finish(ctx, restore, v1alpha1.RestoredReason, fmt.Sprintf("Backup %s of %s is restored into the databases of coop %s",
			restore.Status.BackupID, sourceOf(restore), strings.TrimPrefix(restore.Namespace, v1alpha1.NamespacePrefix)))
	}
	return nil
}

func sourceOf(restore *v1alpha1.Restore) string {
	if restore.Spec.Source != "" {
		return restore.Spec.Source
	}
	name, _ := coopOfNamespace(restore.Namespace)
	return name
}

// coopOfNamespace is the name of the coop a namespace would belong to.
func coopOfNamespace(namespace string) (string, bool) {
	name, ok := strings.CutPrefix(namespace, v1alpha1.NamespacePrefix)
	return name, ok && name != ""
}

// resolve finds the target and source coops, the source's store, the
// backup and where each of its databases goes. Problems that a person must
// fix stop the Restore; a database or store not ready yet is waited for.
func (r *RestoreReconciler) resolve(ctx context.Context, restore *v1alpha1.Restore) (*restorePlan, error) {
	target, err := r.targetOf(ctx, restore)
	if err != nil {
		return nil, err
	}
	p := &restorePlan{target: target}
	db := target.Status.Database
	dedicated := db != nil && db.Mode == v1alpha1.DatabaseModeDedicated
	if db == nil || (db.Server == "" && !dedicated) || !meta.IsStatusConditionTrue(target.Status.Conditions, v1alpha1.DatabaseReadyCondition) {
		return nil, waitRestore(v1alpha1.RestoreRunningReason, "Waiting for the database of coop %s to be ready", target.Name)
	}

	source := target
	if restore.Spec.Source != "" && restore.Spec.Source != target.Name {
		source = &v1alpha1.Cooperative{}
		if err := r.Get(ctx, client.ObjectKey{Name: restore.Spec.Source}, source); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, stopRestore(v1alpha1.SourceNotFoundReason, "spec.source: Cooperative %s does not exist", restore.Spec.Source)
			}
			return nil, err
		}
		if !slices.Contains(source.Spec.Backup.ClonesTo, target.Name) {
			return nil, stopRestore(v1alpha1.CloneNotAllowedReason,
				"Cooperative %s does not allow clones into %s: its spec.backup.clonesTo must list %s", source.Name, target.Name, target.Name)
		}
	}
	if p.store, err = r.storeOf(ctx, source); err != nil {
		return nil, err
	}
	cfg, err := storeConfig(ctx, r.APIReader, p.store)
	if err != nil {
		return nil, waitRestore(v1alpha1.BackupStoreNotReadyReason, "The keys of BackupStore %s cannot be read", p.store.Name)
	}
	if p.client, err = backup.Open(cfg); err != nil {
		return nil, stopRestore(v1alpha1.BackupStoreNotReadyReason, "BackupStore %s: %v", p.store.Name, err)
	}

	id := restore.Status.BackupID
	if id == "" {
		id = restore.Spec.BackupID
	}
	if id == "" {
		ids, err := p.client.List(ctx, source.Name)
		if err != nil {
			return nil, fmt.Errorf("while listing the backups of %s: %w", source.Name, err)
		}
		if len(ids) == 0 {
			return nil, stopRestore(v1alpha1.BackupNotFoundReason, "BackupStore %s holds no backup of coop %s", p.store.Name, source.Name)
		}
		id = ids[len(ids)-1]
	}
	m, err := p.client.Manifest(ctx, source.Name, id)
	if err != nil {
		// A missing manifest is the store saying the backup does not exist.
		if ids, lerr := p.client.List(ctx, source.Name); lerr == nil && !slices.Contains(ids, id) {
			return nil, stopRestore(v1alpha1.BackupNotFoundReason, "spec.backupID: BackupStore %s holds no backup %s of coop %s", p.store.Name, id, source.Name)
		}
		return nil, stopRestore(v1alpha1.BackupNotFoundReason, "Backup %s of coop %s cannot be read: %v", id, source.Name, err)
	}
	rename, err := databaseMap(m, source, target)
	if err != nil {
		return nil, err
	}
	if m.Encrypted {
		name := restore.Spec.IdentitySecret
		if name == "" {
			return nil, stopRestore(v1alpha1.IdentityNeededReason,
				"spec.identitySecret: backup %s of %s is encrypted to the coop's keys: name a Secret in this namespace holding its age identity under the key %q", id, source.Name, specs.IdentityKey)
		}
		identity, problem, err := readKey(ctx, r.APIReader, restore.Namespace, name, specs.IdentityKey, func(text string) error {
			_, err := backup.ParseIdentities(text)
			return err
		})
		if err != nil {
			return nil, err
		}
		if problem != "" {
			return nil, stopRestore(v1alpha1.IdentityNeededReason, "spec.identitySecret: %s", problem)
		}
		p.identity = identity
	}

	sslMode := specs.ClusterSSLMode
	if !dedicated {
		server := &v1alpha1.DatabaseServer{}
		if err := r.Get(ctx, client.ObjectKey{Name: db.Server}, server); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, waitRestore(v1alpha1.RestoreRunningReason, "DatabaseServer %s of coop %s does not exist", db.Server, target.Name)
			}
			return nil, err
		}
		sslMode = server.Spec.SSLMode
	}
	p.job = specs.RestoreTarget{
		Source: source.Name, ID: id, Store: p.store.Spec, StoreSecret: p.store.Spec.CredentialsSecretRef.Name,
		Host: db.Host, Port: db.Port, User: db.Role, SSLMode: sslMode, Rename: rename,
		Encrypted: p.identity != "",
	}
	return p, nil
}

// targetOf is the coop that owns the Restore's namespace.
func (r *RestoreReconciler) targetOf(ctx context.Context, restore *v1alpha1.Restore) (*v1alpha1.Cooperative, error) {
	noCoop := stopRestore(v1alpha1.NoCooperativeReason,
		"Namespace %s belongs to no Cooperative: create the Restore in the namespace of the coop to restore into (coop-<name>)", restore.Namespace)
	name, ok := coopOfNamespace(restore.Namespace)
	if !ok {
		return nil, noCoop
	}
	target := &v1alpha1.Cooperative{}
	if err := r.Get(ctx, client.ObjectKey{Name: name}, target); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, noCoop
		}
		return nil, err
	}
	// A namespace of the coop's name that the coop does not own is not its.
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := r.Get(ctx, client.ObjectKey{Name: restore.Namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, noCoop
		}
		return nil, err
	}
	if owner := metav1.GetControllerOf(ns); owner == nil || owner.UID != target.UID {
		return nil, noCoop
	}
	if !target.DeletionTimestamp.IsZero() {
		return nil, stopRestore(v1alpha1.NoCooperativeReason, "Coop %s is being deleted", target.Name)
	}
	return target, nil
}

// storeOf is the source coop's BackupStore, checked as its backups are:
// it exists, answers, and keeps its keys where the runner's Jobs run.
func (r *RestoreReconciler) storeOf(ctx context.Context, source *v1alpha1.Cooperative) (*v1alpha1.BackupStore, error) {
	plan := &v1alpha1.Plan{}
	if err := r.Get(ctx, client.ObjectKey{Name: source.Spec.Plan}, plan); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, stopRestore(v1alpha1.PlanNotFoundReason, "Plan %s of coop %s does not exist", source.Spec.Plan, source.Name)
		}
		return nil, err
	}
	name := source.EffectiveBackupStore(plan)
	if name == "" {
		return nil, stopRestore(v1alpha1.BackupStoreNotFoundReason, "Coop %s and its plan %s name no backup store: it has no backups", source.Name, plan.Name)
	}
	store := &v1alpha1.BackupStore{}
	if err := r.Get(ctx, client.ObjectKey{Name: name}, store); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, stopRestore(v1alpha1.BackupStoreNotFoundReason, "BackupStore %s of coop %s does not exist", name, source.Name)
		}
		return nil, err
	}
	switch ns := r.Options.OperatorNamespace; {
	case ns == "":
		return nil, stopRestore(v1alpha1.BackupStoreNotReadyReason, "The operator was not told its namespace (--namespace), where restores run")
	case r.Options.RunnerImage == "":
		return nil, stopRestore(v1alpha1.BackupStoreNotReadyReason, "The operator was not told the runner's image (--runner-image)")
	case store.Spec.CredentialsSecretRef.Namespace != ns:
		return nil, stopRestore(v1alpha1.BackupStoreNotReadyReason, "BackupStore %s keeps its keys in namespace %s; restores run in %s, where the keys must be",
			name, store.Spec.CredentialsSecretRef.Namespace, ns)
	}
	if !meta.IsStatusConditionTrue(store.Status.Conditions, v1alpha1.ReadyCondition) {
		return nil, waitRestore(v1alpha1.BackupStoreNotReadyReason, "Waiting for BackupStore %s to answer", name)
	}
	return store, nil
}

// databaseMap sends each database of the backup into the target's database
// of the same app: the source coop's own database into the target's own,
// each app's into the target's app of that name. A database of an app the
// target does not run refuses the Restore, naming the app.
func databaseMap(m *backup.Manifest, source, target *v1alpha1.Cooperative) ([][2]string, error) {
	db := target.Status.Database
	sourceDedicated := source.Status.Database != nil && source.Status.Database.Mode == v1alpha1.DatabaseModeDedicated
	if dedicated := db.Mode == v1alpha1.DatabaseModeDedicated; dedicated != sourceDedicated {
		return nil, stopRestore(v1alpha1.RestoreUnsupportedReason,
			"Coop %s has a %s database and coop %s a %s one: a restore between a shared server and a dedicated cluster is not supported",
			source.Name, modeName(sourceDedicated), target.Name, modeName(dedicated))
	}
	sourceDB := source.DatabaseName()
	if sourceDedicated {
		// One database, of the same name in every dedicated cluster.
		sourceDB = specs.DedicatedDatabase
	}
	into := map[string]string{sourceDB: db.Name}
	for _, app := range db.Apps {
		into[postgres.AppDatabaseName(sourceDB, app.App)] = app.Name
	}
	var out [][2]string
	for _, name := range m.Databases() {
		to, ok := into[name]
		if !ok {
			app := strings.TrimPrefix(name, sourceDB+"_")
			if source.Status.Database != nil {
				for _, a := range source.Status.Database.Apps {
					if a.Name == name {
						app = a.App
					}
				}
			}
			return nil, stopRestore(v1alpha1.AppNotRunReason,
				"Backup %s holds database %s of app %s, which coop %s does not run: add the app to its spec.apps first", m.ID, name, app, target.Name)
		}
		out = append(out, [2]string{name, to})
	}
	return out, nil
}

func modeName(dedicated bool) string {
	if dedicated {
		return "dedicated"
	}
	return "shared"
}

// appsRunning names a workload of the target's apps that is not scaled to
// zero yet, or a pod of theirs that still runs; "" once all are down.
func (r *RestoreReconciler) appsRunning(ctx context.Context, target *v1alpha1.Cooperative) (string, error) {
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		list := &unstructured.UnstructuredList{}
		gvk := workload(kind).GroupVersionKind()
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(kind + "List"))
		if err := r.List(ctx, list, client.InNamespace(target.NamespaceName()), client.HasLabels{specs.AppLabel}); err != nil {
			return "", fmt.Errorf("while listing %ss: %w", kind, err)
		}
		for i := range list.Items {
			u := &list.Items[i]
			replicas, found, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
			current, _, _ := unstructured.NestedInt64(u.Object, "status", "replicas")
			if !found || replicas != 0 || current != 0 {
				return fmt.Sprintf("%s %s", kind, u.GetName()), nil
			}
		}
	}
	pods := &corev1.PodList{}
	if err := r.APIReader.List(ctx, pods, client.InNamespace(target.NamespaceName()), client.HasLabels{specs.AppLabel}); err != nil {
		return "", fmt.Errorf("while listing the apps' pods: %w", err)
	}
	for _, pod := range pods.Items {
		if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed && !isJobPod(&pod) {
			return "pod " + pod.Name, nil
		}
	}
	return "", nil
}

func isJobPod(pod *corev1.Pod) bool {
	owner := metav1.GetControllerOf(pod)
	return owner != nil && owner.Kind == "Job"
}

// targetPassword is the target coop's database password, from its database
// Secret, once the server has it.
func (r *RestoreReconciler) targetPassword(ctx context.Context, target *v1alpha1.Cooperative) (string, error) {
	secret := &corev1.Secret{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: target.NamespaceName(), Name: specs.DatabaseSecretName}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return "", waitRestore(v1alpha1.RestoreRunningReason, "Waiting for the database Secret of coop %s", target.Name)
		}
		return "", err
	}
	password := string(secret.Data["password"])
	if password == "" || secret.Annotations[passwordPendingAnnotation] == "true" {
		return "", waitRestore(v1alpha1.RestoreRunningReason, "Waiting for the database password of coop %s to be set", target.Name)
	}
	return password, nil
}

type jobState int

const (
	jobRunning jobState = iota
	jobSucceeded
	jobFailed
)

// runJob applies a Job once and reads how it stands. A Job that exists is
// not applied again: its template cannot change, and the Restore has moved
// on from what it was made of.
func (r *RestoreReconciler) runJob(ctx context.Context, desired *batchv1ac.JobApplyConfiguration) (jobState, string, error) {
	live := &batchv1.Job{}
	err := r.Get(ctx, client.ObjectKey{Namespace: *desired.Namespace, Name: *desired.Name}, live)
	if apierrors.IsNotFound(err) {
		if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &batchv1.Job{}, desired, batchv1ac.ExtractJob); err != nil {
			return jobRunning, "", fmt.Errorf("while applying Job %s: %w", *desired.Name, err)
		}
		return jobRunning, "", nil
	}
	if err != nil {
		return jobRunning, "", err
	}
	return r.jobState(ctx, live)
}

// jobState reads a Job's end, and for a failed one the runner's own error:
// the termination message of its pod.
func (r *RestoreReconciler) jobState(ctx context.Context, job *batchv1.Job) (jobState, string, error) {
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return jobSucceeded, "", nil
		case batchv1.JobFailed:
			message, err := r.terminationMessage(ctx, job)
			if err != nil {
				return jobFailed, "", err
			}
			if message == "" {
				message = fmt.Sprintf("Job %s failed (%s): see its logs", job.Name, c.Reason)
			}
			return jobFailed, message, nil
		}
	}
	return jobRunning, "", nil
}

func (r *RestoreReconciler) terminationMessage(ctx context.Context, job *batchv1.Job) (string, error) {
	pods := &corev1.PodList{}
	if err := r.APIReader.List(ctx, pods, client.InNamespace(job.Namespace), client.MatchingLabels{batchv1.JobNameLabel: job.Name}); err != nil {
		return "", fmt.Errorf("while listing the pods of Job %s: %w", job.Name, err)
	}
	for _, pod := range pods.Items {
		for _, cs := range pod.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 && strings.TrimSpace(t.Message) != "" {
				return runnerError(t.Message), nil
			}
		}
	}
	return "", nil
}

// runnerError is the last line of a termination message, which is the
// runner's error, or, from its log, the line it printed last.
func runnerError(message string) string {
	lines := strings.Split(strings.TrimSpace(message), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	return strings.TrimPrefix(last, "cooperator: ")
}

// finalize removes what the Restore made in the operator's namespace, then
// lets the Restore go.
func (r *RestoreReconciler) finalize(ctx context.Context, restore *v1alpha1.Restore) error {
	if !controllerutil.ContainsFinalizer(restore, v1alpha1.RestoreFinalizer) {
		return nil
	}
	for _, name := range []string{specs.VerifyJobName(restore), specs.RestoreJobName(restore)} {
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: r.Options.OperatorNamespace, Name: name}}
		if err := r.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("while deleting Job %s: %w", name, err)
		}
	}
	if r.Options.OperatorNamespace != "" {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: r.Options.OperatorNamespace, Name: specs.RestoreName(restore)}}
		if err := r.Delete(ctx, svc); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("while deleting the restore's Service: %w", err)
		}
	}
	if err := r.deleteSecret(ctx, restore); err != nil {
		return err
	}
	patch := client.MergeFrom(restore.DeepCopy())
	controllerutil.RemoveFinalizer(restore, v1alpha1.RestoreFinalizer)
	return client.IgnoreNotFound(r.Patch(ctx, restore, patch))
}

func (r *RestoreReconciler) deleteSecret(ctx context.Context, restore *v1alpha1.Restore) error {
	if r.Options.OperatorNamespace == "" {
		return nil
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Options.OperatorNamespace, Name: specs.RestoreName(restore)}}
	if err := r.Delete(ctx, secret); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("while deleting the restore's database Secret: %w", err)
	}
	return nil
}

// SetupWithManager registers the reconciler. The Jobs are in the
// operator's namespace, beyond owner references: their labels lead back to
// the Restore.
func (r *RestoreReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Restore{}).
		Watches(&batchv1.Job{}, handler.EnqueueRequestsFromMapFunc(restoreOfJob)).
		Named("restore").
		Complete(r)
}

func restoreOfJob(_ context.Context, o client.Object) []ctrl.Request {
	l := o.GetLabels()
	name, coop := l[v1alpha1.RestoreLabel], l[v1alpha1.CooperativeLabel]
	if name == "" || coop == "" {
		return nil
	}
	return []ctrl.Request{{NamespacedName: client.ObjectKey{Namespace: v1alpha1.NamespacePrefix + coop, Name: name}}}
}

// activeRestore is the Restore in the coop's namespace that holds its apps
// at zero, if any.
func activeRestore(ctx context.Context, c client.Reader, coop *v1alpha1.Cooperative) (*v1alpha1.Restore, error) {
	list := &v1alpha1.RestoreList{}
	if err := c.List(ctx, list, client.InNamespace(coop.NamespaceName())); err != nil {
		return nil, fmt.Errorf("while listing the coop's Restores: %w", err)
	}
	for i := range list.Items {
		if list.Items[i].Status.Phase.HoldsApps() {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

// coopOfRestore wakes the coop whose namespace holds a Restore.
func coopOfRestore(_ context.Context, o client.Object) []ctrl.Request {
	name, ok := coopOfNamespace(o.GetNamespace())
	if !ok {
		return nil
	}
	return []ctrl.Request{{NamespacedName: client.ObjectKey{Name: name}}}
}

// restoreHoldChanged passes the Restore events that start or end holding
// a coop's apps at zero.
type restoreHoldChanged struct {
	predicate.Funcs
}

func (restoreHoldChanged) Create(e event.CreateEvent) bool { return holds(e.Object) }
func (restoreHoldChanged) Delete(e event.DeleteEvent) bool { return holds(e.Object) }
func (restoreHoldChanged) Update(e event.UpdateEvent) bool {
	return holds(e.ObjectOld) != holds(e.ObjectNew)
}

func holds(o client.Object) bool {
	r, ok := o.(*v1alpha1.Restore)
	return ok && r.Status.Phase.HoldsApps()
}

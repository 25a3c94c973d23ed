package controllers

import (
	"cmp"
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/backup"
	"cooperator.dev/cooperator/internal/metrics"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/ssa"
)

// +kubebuilder:rbac:groups=batch,resources=cronjobs,verbs=get;list;watch;create;update;patch;delete

// reconcileBackups schedules the coop's backups: a CronJob in the
// operator's namespace runs `cooperator backup` over the coop's databases
// into its backup store. The store's keys stay in the operator's namespace:
// a coop's admins can read every Secret of theirs and exec into every pod.
func (r *CooperativeReconciler) reconcileBackups(ctx context.Context, s *scope) (ctrl.Result, error) {
	coop := s.coop
	name := coop.EffectiveBackupStore(s.plan)
	not := func(reason, format string, args ...any) {
		setCondition(coop, v1alpha1.BackupsReadyCondition, metav1.ConditionFalse, reason, fmt.Sprintf(format, args...))
	}
	if name == "" {
		if err := r.unscheduleBackups(ctx, coop); err != nil {
			return ctrl.Result{}, err
		}
		setCondition(coop, v1alpha1.BackupsReadyCondition, metav1.ConditionTrue, v1alpha1.BackupsNotRequestedReason,
			fmt.Sprintf("Plan %s names no backup store: the coop's data is not backed up", s.plan.Name))
		return ctrl.Result{}, nil
	}
	store := &v1alpha1.BackupStore{}
	if err := r.Get(ctx, client.ObjectKey{Name: name}, store); err != nil {
		if apierrors.IsNotFound(err) {
			// Its creation wakes the coop.
			not(v1alpha1.BackupStoreNotFoundReason, "BackupStore %s does not exist", name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	switch ns := r.Options.OperatorNamespace; {
	case ns == "":
		not(v1alpha1.BackupStoreNotReadyReason, "The operator was not told its namespace (--namespace), where backups run")
		return ctrl.Result{}, nil
	case r.Options.RunnerImage == "":
		not(v1alpha1.BackupStoreNotReadyReason, "The operator was not told the backup runner's image (--runner-image)")
		return ctrl.Result{}, nil
	case store.Spec.CredentialsSecretRef.Namespace != ns:
		not(v1alpha1.BackupStoreNotReadyReason, "BackupStore %s keeps its keys in namespace %s; backups run in %s, where the keys must be",
			name, store.Spec.CredentialsSecretRef.Namespace, ns)
		return ctrl.Result{}, nil
	}
	db := coop.Status.Database
	if s.connection == nil || db == nil {
		not(v1alpha1.ProgressingReason, "Backups start once the coop's database is ready")
		return ctrl.Result{}, nil
	}

	recipients := ""
	if name := coop.Spec.Backup.RecipientsSecret; name != "" {
		var problem string
		var err error
		recipients, problem, err = readKey(ctx, r.APIReader, coop.NamespaceName(), name, specs.RecipientsKey, func(text string) error {
			_, err := backup.ParseRecipients(text)
			return err
		})
		if err != nil {
			return ctrl.Result{}, err
		}
		if problem != "" {
			// The schedule stays as it was: a backup the coop cannot
			// encrypt yet is better than none.
			not(v1alpha1.RecipientsInvalidReason, "spec.backup.recipientsSecret: %s; the coop's backups are not encrypted to its keys", problem)
			return ctrl.Result{RequeueAfter: time.Minute}, nil
		}
	}
	if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &corev1.Secret{},
		specs.BackupPasswordSecret(coop, r.Options.OperatorNamespace, s.connection.Password, recipients), corev1ac.ExtractSecret); err != nil {
		return ctrl.Result{}, fmt.Errorf("while applying the backup's database Secret: %w", err)
	}
	target := specs.BackupTarget{
		Host: s.connection.Host, Port: s.connection.Port, User: s.connection.User, SSLMode: s.connection.SSLMode,
		Databases: []string{db.Name}, Store: store.Spec, StoreSecret: store.Spec.CredentialsSecretRef.Name,
		Schedule: s.plan.Spec.Backup.Schedule, Retention: s.plan.Spec.Backup.Retention,
		Encrypted: recipients != "",
	}
	for _, app := range db.Apps {
		// In a dedicated cluster the apps share the coop's database.
		if !slices.Contains(target.Databases, app.Name) {
			target.Databases = append(target.Databases, app.Name)
		}
	}
	vols, skipped, err := appVolumes(ctx, r.Client, coop)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.scheduleVolumeSenders(ctx, coop, target.Schedule, vols); err != nil {
		return ctrl.Result{}, err
	}
	for _, v := range vols {
		target.RemoteVolumes = append(target.RemoteVolumes, v.Claims...)
	}
	cronJob := specs.BackupCronJob(coop, target, r.Options)
	if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &batchv1.CronJob{}, cronJob, batchv1ac.ExtractCronJob); err != nil {
		return ctrl.Result{}, fmt.Errorf("while applying the backup CronJob: %w", err)
	}
	if !meta.IsStatusConditionTrue(store.Status.Conditions, v1alpha1.ReadyCondition) {
		// Its turning Ready wakes the coop.
		not(v1alpha1.BackupStoreNotReadyReason, "BackupStore %s does not answer; backups would fail", name)
		return ctrl.Result{}, nil
	}
	missing, err := r.observeLastBackup(ctx, coop, store)
	if err != nil {
		return ctrl.Result{}, err
	}
	drills, err := r.reconcileDrills(ctx, s, target, store)
	if err != nil {
		return ctrl.Result{}, err
	}
	if missing != "" {
		not(v1alpha1.BackupMissingReason, "%s", missing)
		return drills, nil
	}
	due, err := metrics.BackupDue(coop, *cronJob.Spec.Schedule)
	if err != nil {
		return ctrl.Result{}, err
	}
	wait := time.Until(due)
	if wait <= 0 {
		since := "the coop was created"
		if last := coop.Status.LastBackup; last != nil {
			since = "backup " + last.ID
		}
		msg := fmt.Sprintf("No backup since %s; one was due by %s", since, due.UTC().Format(time.RFC3339))
		if c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.BackupsReadyCondition); c == nil || c.Message != msg {
			r.Recorder.Eventf(coop, nil, corev1.EventTypeWarning, v1alpha1.BackupStaleReason, "Backup", "%s", msg)
		}
		// A backup Job that succeeds wakes the coop.
		not(v1alpha1.BackupStaleReason, "%s", msg)
		return drills, nil
	}
	what := "the coop's databases"
	if n := len(target.RemoteVolumes); n > 0 {
		what = fmt.Sprintf("the coop's databases and %d volumes", n)
	}
	msg := fmt.Sprintf("Backups of %s run at %q (UTC) to BackupStore %s", what, *cronJob.Spec.Schedule, name)
	if len(skipped) > 0 {
		msg += fmt.Sprintf("; volumes %s are not backed up: a volume's name must be a DNS label", strings.Join(skipped, ", "))
	}
	setCondition(coop, v1alpha1.BackupsReadyCondition, metav1.ConditionTrue, v1alpha1.BackupsScheduledReason, msg)
	// Look again when the next backup is due, or sooner while a drill runs.
	return ctrl.Result{RequeueAfter: min(wait, cmp.Or(drills.RequeueAfter, wait))}, nil
}

// observeLastBackup reads the coop's newest backup from the store once
// after each backup Job that succeeded, into status.lastBackup. A Job that
// succeeded with no backup in the store is told: a backup without a
// manifest does not exist.
func (r *CooperativeReconciler) observeLastBackup(ctx context.Context, coop *v1alpha1.Cooperative, store *v1alpha1.BackupStore) (missing string, err error) {
	live := &batchv1.CronJob{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: r.Options.OperatorNamespace, Name: specs.BackupName(coop)}, live); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	done := live.Status.LastSuccessfulTime
	last := coop.Status.LastBackup
	if done == nil || (last != nil && !last.CheckedAt.Before(done)) {
		return "", nil
	}
	missing = fmt.Sprintf("A backup Job succeeded at %s, but BackupStore %s holds no backup of the coop", done.UTC().Format(time.RFC3339), store.Name)
	if c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.BackupsReadyCondition); c != nil && c.Message == missing {
		return missing, nil // told already
	}
	cfg, err := storeConfig(ctx, r.APIReader, store)
	if err != nil {
		return "", fmt.Errorf("while reading the keys of BackupStore %s: %w", store.Name, err)
	}
	c, err := backup.Open(cfg)
	if err != nil {
		return "", err
	}
	ids, err := c.List(ctx, coop.Name)
	if err != nil {
		return "", fmt.Errorf("while listing the coop's backups: %w", err)
	}
	if len(ids) == 0 {
		r.Recorder.Eventf(coop, nil, corev1.EventTypeWarning, v1alpha1.BackupMissingReason, "Backup", "%s", missing)
		return missing, nil
	}
	m, err := c.Manifest(ctx, coop.Name, ids[len(ids)-1])
	if err != nil {
		return "", fmt.Errorf("while reading the newest backup's manifest: %w", err)
	}
	record := &v1alpha1.BackupRecord{ID: m.ID, Time: metav1.NewTime(m.Time), CheckedAt: *done,
		Location: fmt.Sprintf("s3://%s/%s/", store.Spec.Bucket, strings.TrimLeft(path.Join(store.Spec.Prefix, coop.Name, m.ID), "/"))}
	for _, o := range m.Objects {
		record.Size += o.Size
	}
	coop.Status.LastBackup = record
	return "", nil
}

// unscheduleBackups removes the backup and drill CronJobs and the Secret
// of a coop whose plan no longer asks for backups. Backups already taken
// stay.
func (r *CooperativeReconciler) unscheduleBackups(ctx context.Context, coop *v1alpha1.Cooperative) error {
	if err := r.unscheduleDrills(ctx, coop, "The operator takes no backups of the coop, so it has none to drill"); err != nil {
		return err
	}
	key := metav1.ObjectMeta{Namespace: r.Options.OperatorNamespace, Name: specs.BackupName(coop)}
	if key.Namespace == "" {
		return nil
	}
	if err := r.deleteIfPresent(ctx, &batchv1.CronJob{ObjectMeta: key}); err != nil {
		return err
	}
	if err := r.removeVolumeSenders(ctx, coop, nil); err != nil {
		return err
	}
	return r.deleteIfPresent(ctx, &corev1.Secret{ObjectMeta: key})
}

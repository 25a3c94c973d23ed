package v1alpha1

// Condition types of a Cooperative. Ready summarises the others; Reconciling
// and Stalled follow kstatus so that tools such as kubectl wait and Flux read
// a coop's state without knowing this API.
const (
	// ReadyCondition is True when every part of the coop is ready.
	ReadyCondition = "Ready"
	// ReconcilingCondition is True while the operator is still working towards the spec.
	ReconcilingCondition = "Reconciling"
	// StalledCondition is True when the operator cannot progress without a change by a person.
	StalledCondition = "Stalled"
	// NamespaceReadyCondition is True when the namespace and its quota,
	// limits, network policies and access are applied.
	NamespaceReadyCondition = "NamespaceReady"
	// DatabaseReadyCondition is True when the coop's database and its Secret are ready.
	DatabaseReadyCondition = "DatabaseReady"
	// AppsReadyCondition is True when every app of the coop is rolled out, or hibernates.
	AppsReadyCondition = "AppsReady"
	// DomainsReadyCondition is True when every custom domain is held and verified.
	DomainsReadyCondition = "DomainsReady"
	// BackupsReadyCondition is True when the coop's backups are scheduled to
	// a store that answers, or when its plan asks for none (the message says so).
	BackupsReadyCondition = "BackupsReady"
	// RestoreVerifiedCondition is True when the coop's newest restore drill
	// restored its backup and found the recorded row counts, or when no
	// drills are asked for (the reason says so). It is not part of Ready.
	RestoreVerifiedCondition = "RestoreVerified"
)

// Reasons of the Cooperative conditions.
const (
	// ReadyReason: every part is ready.
	ReadyReason = "Ready"
	// ProgressingReason: the operator is applying the spec.
	ProgressingReason = "Progressing"
	// PlanNotFoundReason: spec.plan names no Plan; nothing is created until it exists.
	PlanNotFoundReason = "PlanNotFound"
	// NamespaceAppliedReason: the namespace and its policies are applied.
	NamespaceAppliedReason = "Applied"
	// NamespaceApplyFailedReason: the API server refused part of the namespace.
	NamespaceApplyFailedReason = "ApplyFailed"
	// NamespaceTerminatingReason: an earlier namespace of the same name is still being deleted.
	NamespaceTerminatingReason = "NamespaceTerminating"
	// NamespaceOwnedElsewhereReason: a namespace of that name exists and is not this coop's.
	NamespaceOwnedElsewhereReason = "NamespaceOwnedElsewhere"
	// ReconcileErrorReason: a pass failed before any part could say why; it is retried with backoff.
	ReconcileErrorReason = "ReconcileError"
	// DatabaseProvisionedReason: the role, database and Secret are in place.
	DatabaseProvisionedReason = "Provisioned"
	// ReachableReason: a DatabaseServer answers its admin role.
	ReachableReason = "Reachable"
	// ServerUnreachableReason: the database server does not answer; retried with backoff.
	ServerUnreachableReason = "ServerUnreachable"
	// AdminAuthFailedReason: the server refused the admin role's credentials.
	AdminAuthFailedReason = "AdminAuthFailed"
	// AdminSecretInvalidReason: the admin Secret is missing or lacks username or password.
	AdminSecretInvalidReason = "AdminSecretInvalid"
	// PermissionDeniedReason: the admin role lacks a privilege it needs (CREATEROLE, CREATEDB).
	PermissionDeniedReason = "PermissionDenied"
	// NoServerCapacityReason: no reachable server that the plan allows has room for another database.
	NoServerCapacityReason = "NoServerCapacity"
	// ServerNotFoundReason: the server recorded in status.database.server no longer exists.
	ServerNotFoundReason = "ServerNotFound"
	// ExtensionUnavailableReason: an extension the coop needs is not offered by its server.
	ExtensionUnavailableReason = "ExtensionUnavailable"
	// ExtensionFailedReason: the server refused to create an offered extension.
	ExtensionFailedReason = "ExtensionFailed"
	// ModeChangeRefusedReason: spec.database.mode differs from the mode the database was created in.
	ModeChangeRefusedReason = "ModeChangeRefused"
	// ClusterNotReadyReason: the coop's CloudNativePG cluster is not ready yet.
	ClusterNotReadyReason = "ClusterNotReady"
	// CloudNativePGMissingReason: Dedicated mode needs the CloudNativePG operator, which is not installed.
	CloudNativePGMissingReason = "CloudNativePGMissing"
	// DatabaseErrorReason: the server refused a statement for another reason; retried with backoff.
	DatabaseErrorReason = "DatabaseError"

	// AppsAvailableReason: every app is rolled out, or hibernates.
	AppsAvailableReason = "Available"
	// AppsProgressingReason: an app is rolling out.
	AppsProgressingReason = "RollingOut"
	// BlueprintNotFoundReason: an app names a Blueprint that does not exist.
	BlueprintNotFoundReason = "BlueprintNotFound"
	// BlueprintNotReadyReason: an app's Blueprint fails its own checks.
	BlueprintNotReadyReason = "BlueprintNotReady"
	// VersionNotOfferedReason: an app asks for a version its Blueprint does not offer.
	VersionNotOfferedReason = "VersionNotOffered"
	// AppChecksFailedReason: an app's rendered objects fail the checks for this coop, such as its plan's limits.
	AppChecksFailedReason = "ChecksFailed"
	// MigratingReason: an app's migration Job for its new version runs; the old version serves.
	MigratingReason = "Migrating"
	// MigrationFailedReason: an app's migration Job failed; the old version keeps serving.
	MigrationFailedReason = "MigrationFailed"
	// TooManyAppsReason: the coop runs more apps than its plan's maxApps.
	TooManyAppsReason = "TooManyApps"

	// DomainsVerifiedReason: every custom domain is held and its TXT record verified.
	DomainsVerifiedReason = "Verified"
	// DomainConflictReason: another coop, or another app of this coop, holds
	// a hostname this coop asks for; nothing of the holder changes.
	DomainConflictReason = "DomainConflict"
	// DomainUnverifiedReason: a custom domain's TXT record is missing or holds another token.
	DomainUnverifiedReason = "DomainUnverified"
	// DomainInvalidReason: a custom domain is under the platform's base
	// domain but not under the coop's own part of it, or not a hostname.
	DomainInvalidReason = "DomainInvalid"
	// DNSUnavailableReason: the resolver did not answer; retried.
	DNSUnavailableReason = "DNSUnavailable"

	// BlueprintValidReason: every version of a Blueprint renders and passes the checks.
	BlueprintValidReason = "Valid"
	// BlueprintChecksFailedReason: a version of a Blueprint fails to render or fails a check.
	BlueprintChecksFailedReason = "ChecksFailed"

	// BackupsScheduledReason: the coop's backup CronJob is in place and its store answers.
	BackupsScheduledReason = "Scheduled"
	// BackupsNotRequestedReason: neither the coop nor its plan names a backup store.
	BackupsNotRequestedReason = "NotRequested"
	// FinalBackupFailedReason: the backup taken before a coop's databases are dropped failed; they are kept.
	FinalBackupFailedReason = "FinalBackupFailed"
	// BackupStaleReason: no backup came by the second run of the plan's schedule (plus an hour) after the coop's last backup, or after it was created.
	BackupStaleReason = "BackupStale"
	// BackupMissingReason: a backup Job succeeded, but no backup with a manifest is in the store.
	BackupMissingReason = "BackupMissing"
	// BackupStoreNotFoundReason: the coop's or its plan's backup store does not exist.
	BackupStoreNotFoundReason = "BackupStoreNotFound"
	// BackupStoreNotReadyReason: the backup store does not answer; backups would fail.
	BackupStoreNotReadyReason = "BackupStoreNotReady"
	// CredentialsInvalidReason: a BackupStore's credentials Secret is missing or lacks a key.
	CredentialsInvalidReason = "CredentialsInvalid"
	// BucketNotFoundReason: a BackupStore's bucket does not exist.
	BucketNotFoundReason = "BucketNotFound"
	// StoreUnreachableReason: a BackupStore's endpoint does not answer, or refuses its keys; retried.
	StoreUnreachableReason = "StoreUnreachable"
	// RecipientsInvalidReason: the Secret named by spec.backup.recipientsSecret is missing, or holds no valid age recipient.
	RecipientsInvalidReason = "RecipientsInvalid"

	// RestoreVerifiedReason: the newest drill restored the backup it names and found the recorded row counts.
	RestoreVerifiedReason = "Verified"
	// ChecksumsVerifiedReason: the coop's backups are encrypted to its own keys: the newest drill found every object whole, and could not restore it.
	ChecksumsVerifiedReason = "ChecksumsVerified"
	// DrillFailedReason: the newest drill found the backup damaged, could not restore it, or found other row counts.
	DrillFailedReason = "DrillFailed"
	// NoBackupYetReason: the coop has no backup to drill yet.
	NoBackupYetReason = "NoBackupYet"
	// DrillPendingReason: the coop has a backup, and its first drill has not run yet.
	DrillPendingReason = "DrillPending"
	// DrillsNotRequestedReason: the coop is not backed up, or its plan turns drills off.
	DrillsNotRequestedReason = "NotRequested"
	// DrillUnsupportedReason: the coop's database is dedicated, and the
	// CloudNativePG installed has no Database kind to make the drills'
	// scratch database with.
	DrillUnsupportedReason = "Unsupported"
	// ScratchDatabasePendingReason: CloudNativePG has not made the drills'
	// scratch database in the coop's dedicated cluster yet.
	ScratchDatabasePendingReason = "ScratchDatabasePending"

	// DeletingReason: the coop is being deleted.
	DeletingReason = "Deleting"
)

// Reasons for what a coop's apps need from it: their databases.
const (
	// DatabaseNotReadyReason: an app needs a database that is not ready yet.
	DatabaseNotReadyReason = "DatabaseNotReady"
	// DatabaseNameTakenReason: a database the coop or one of its apps needs
	// exists on the server and belongs to another coop's role.
	DatabaseNameTakenReason = "DatabaseNameTaken"
)

// The condition of a Restore, and its reasons. Succeeded is Unknown while
// the Restore runs; the reason is its phase.
const (
	// SucceededCondition is True once a Restore has restored its backup,
	// False once it failed.
	SucceededCondition = "Succeeded"

	// RestoreRunningReason: the Restore is resolving, verifying, scaling down or restoring.
	RestoreRunningReason = "Running"
	// RestoredReason: the backup's databases are restored.
	RestoredReason = "Restored"
	// NoCooperativeReason: the Restore's namespace belongs to no coop.
	NoCooperativeReason = "NoCooperative"
	// SourceNotFoundReason: spec.source names no Cooperative.
	SourceNotFoundReason = "SourceNotFound"
	// CloneNotAllowedReason: the source coop's spec.backup.clonesTo does not list the target.
	CloneNotAllowedReason = "CloneNotAllowed"
	// IdentityNeededReason: the backup is encrypted, and spec.identitySecret names no Secret with a valid identity.
	IdentityNeededReason = "IdentityNeeded"
	// RestoreUnsupportedReason: the backup is of a shared server's databases and the target's is a dedicated cluster, or the other way round.
	RestoreUnsupportedReason = "Unsupported"
	// BackupNotFoundReason: the store holds no backup of that id, or none at all.
	BackupNotFoundReason = "BackupNotFound"
	// AppNotRunReason: the backup holds the database of an app the target coop does not run.
	AppNotRunReason = "AppNotRun"
	// VerifyFailedReason: a stored object of the backup is corrupt or missing; nothing was touched.
	VerifyFailedReason = "VerifyFailed"
	// RestoreFailedReason: the restore Job failed; its message says what was left as it was.
	RestoreFailedReason = "RestoreFailed"

	// AppsRestoringReason: a Restore of the coop runs; its apps are scaled to zero until it ends.
	AppsRestoringReason = "Restoring"
)

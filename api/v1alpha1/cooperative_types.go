package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeletionPolicy says what happens to a coop's data outside its namespace
// (its database, its backups) when the Cooperative is deleted.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

const (
	// DeletionPolicyRetain keeps the coop's data so that it can leave with it.
	DeletionPolicyRetain DeletionPolicy = "Retain"
	// DeletionPolicyDelete removes the coop's data with it.
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// SubjectKind is the kind of a coop admin.
// +kubebuilder:validation:Enum=User;Group
type SubjectKind string

const (
	// SubjectKindUser is one person, as the cluster's authentication names them.
	SubjectKindUser SubjectKind = "User"
	// SubjectKindGroup is a group, as the cluster's authentication names it.
	SubjectKindGroup SubjectKind = "Group"
)

// Subject is a user or group who runs a coop.
type Subject struct {
	// kind is User or Group.
	// +kubebuilder:default=User
	// +optional
	Kind SubjectKind `json:"kind,omitempty"`

	// name is the user or group name that the cluster authenticates.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
}

// Contact is how the host reaches a coop.
type Contact struct {
	// email is where the host writes to about this coop.
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:Pattern=`^[^@\s]+@[^@\s]+$`
	// +optional
	Email string `json:"email,omitempty"`
}

// CooperativeSpec is one member cooperative: who runs it and what it gets.
type CooperativeSpec struct {
	// displayName is the coop's name as people write it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.trim().size() > 0",message="must not be blank"
	// +required
	DisplayName string `json:"displayName"`

	// plan is the name of the Plan this coop is on.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Plan string `json:"plan"`

	// admins are the users and groups who run this coop's apps and data.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Admins []Subject `json:"admins,omitempty"`

	// contact is how the host reaches the coop.
	// +optional
	Contact Contact `json:"contact,omitempty"`

	// database is where the coop's PostgreSQL database lives.
	// +optional
	Database CooperativeDatabase `json:"database,omitempty"`

	// apps are the catalog apps the coop runs.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=20
	// +optional
	Apps []CooperativeApp `json:"apps,omitempty"`

	// backup is where and how the coop's data is backed up. Default: its plan's.
	// +optional
	Backup CooperativeBackup `json:"backup,omitempty"`

	// deletionPolicy says whether the coop's databases are kept (Retain) or
	// dropped (Delete, after a final backup when the coop has backups) when
	// this Cooperative is deleted. Its backups are kept either way.
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// CooperativeBackup is where a coop's backups go.
type CooperativeBackup struct {
	// store is the BackupStore the coop backs up to, instead of its plan's.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Store string `json:"store,omitempty"`

	// clonesTo are the coops allowed to restore this coop's backups into
	// themselves, as clones of it (a Restore in their namespace naming this
	// coop as its source). Empty: none; a coop's own Restores need no entry.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=58
	// +listType=set
	// +optional
	ClonesTo []string `json:"clonesTo,omitempty"`

	// recipientsSecret names a Secret in the coop's namespace whose key
	// "recipients" holds age recipients (age1...), one a line: every object
	// of the coop's backups is encrypted to them. The coop keeps the
	// matching identities; without one, nobody, the host included, can read
	// its backups, and drills can check only their checksums. Its admins
	// may write the Secret named backup-recipients.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +optional
	RecipientsSecret string `json:"recipientsSecret,omitempty"`
}

// CooperativeApp is one catalog app a coop runs.
type CooperativeApp struct {
	// name of the app in the coop: it prefixes the app's objects and is the
	// first label of its default hostname, <name>.<coop>.<base domain>.
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=20
	// +required
	Name string `json:"name"`

	// blueprint is the name of the catalog's Blueprint.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Blueprint string `json:"blueprint"`

	// version is one of the Blueprint's versions.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +required
	Version string `json:"version"`

	// domains are the coop's own hostnames for the app, besides the default
	// one. Each is served once the coop proves it controls it with a TXT
	// record; hostnames under <coop>.<base domain> are the coop's already.
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:XValidation:rule="!self.contains('*')",message="wildcards are not allowed: list each hostname"
	// +kubebuilder:validation:items:XValidation:rule="!self.matches('^[0-9.]+$') && !self.contains(':')",message="IP addresses are not allowed: use a hostname"
	// +kubebuilder:validation:items:XValidation:rule="self == self.lowerAscii()",message="must be lower case"
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?[.])+[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')",message="must be a hostname of two labels or more, each of at most 63 letters, digits and '-'"
	// +listType=set
	// +optional
	Domains []string `json:"domains,omitempty"`

	// hibernate scales the app to zero and keeps its data.
	// +optional
	Hibernate bool `json:"hibernate,omitempty"`
}

// AppStatus is what the operator observed of one app.
type AppStatus struct {
	// name of the app.
	Name string `json:"name"`

	// version serving.
	// +optional
	Version string `json:"version,omitempty"`

	// urls the app answers on.
	// +optional
	URLs []string `json:"urls,omitempty"`

	// domains are the app's custom domains and what the coop must publish
	// to verify them.
	// +optional
	Domains []AppDomainStatus `json:"domains,omitempty"`

	// ready is true when every workload of the app is available, or the
	// app hibernates.
	Ready bool `json:"ready"`

	// message says why the app is not ready.
	// +optional
	Message string `json:"message,omitempty"`
}

// AppDomainStatus is one custom domain of an app.
type AppDomainStatus struct {
	// name is the hostname.
	Name string `json:"name"`

	// verified is true while the TXT record holds the token and no other coop holds the name.
	Verified bool `json:"verified"`

	// txtRecord is the name of the TXT record to publish.
	// +optional
	TXTRecord string `json:"txtRecord,omitempty"`

	// txtValue is the value to publish in it.
	// +optional
	TXTValue string `json:"txtValue,omitempty"`

	// message says why the domain is not verified.
	// +optional
	Message string `json:"message,omitempty"`
}

// BackupRecord is one backup of a coop, as its manifest says.
type BackupRecord struct {
	// id of the backup: the UTC time it was taken, as yyyymmddThhmmssZ.
	ID string `json:"id"`

	// time the backup was taken.
	Time metav1.Time `json:"time"`

	// size in bytes of the stored objects.
	Size int64 `json:"size"`

	// location of the backup: s3://<bucket>/<prefix>/<coop>/<id>/.
	Location string `json:"location"`

	// checkedAt is when the backup Job that the operator last read the store
	// after finished.
	CheckedAt metav1.Time `json:"checkedAt"`
}

// DrillResult is how a restore drill ended.
// +kubebuilder:validation:Enum=Verified;Failed;ChecksumsVerified
type DrillResult string

const (
	// DrillVerified means every database of the backup restored and every table
	// had the row count its manifest recorded.
	DrillVerified DrillResult = "Verified"
	// DrillFailed means the backup did not restore, or its row counts differ.
	DrillFailed DrillResult = "Failed"
	// DrillChecksumsVerified means the backup is encrypted to the coop's own
	// keys, so the drill could only check that every object is whole.
	DrillChecksumsVerified DrillResult = "ChecksumsVerified"
)

// DrillRecord is one restore drill of a coop, as its runner recorded it.
type DrillRecord struct {
	// backupID is the backup the drill restored; empty when it found none.
	// +optional
	BackupID string `json:"backupID,omitempty"`

	// time the drill ran.
	Time metav1.Time `json:"time"`

	// result is Verified, Failed, or ChecksumsVerified for a backup
	// encrypted to the coop's own keys.
	Result DrillResult `json:"result"`

	// message says what the drill found.
	// +optional
	Message string `json:"message,omitempty"`

	// tables is how many tables had their row counts checked.
	// +optional
	Tables int32 `json:"tables,omitempty"`

	// checkedAt is when the drill Job that the operator last read the store
	// after finished.
	CheckedAt metav1.Time `json:"checkedAt"`
}

// CooperativeDatabase is what a coop asks of its database.
type CooperativeDatabase struct {
	// mode is Shared (a database on a shared server) or Dedicated (a
	// CloudNativePG cluster in the coop's namespace). Default: the plan's.
	// A running coop cannot change it: moving data between modes is not
	// implemented, and the change is refused with DatabaseReady=False.
	// +optional
	Mode DatabaseMode `json:"mode,omitempty"`

	// extensions the coop's database needs, for example pg_trgm or postgis.
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	// +optional
	Extensions []string `json:"extensions,omitempty"`
}

// DatabaseStatus says where a coop's data lives.
type DatabaseStatus struct {
	// mode the database was created in.
	// +optional
	Mode DatabaseMode `json:"mode,omitempty"`

	// server is the DatabaseServer that holds a shared database; once set it
	// does not change.
	// +optional
	Server string `json:"server,omitempty"`

	// host and port apps connect to.
	// +optional
	Host string `json:"host,omitempty"`
	// +optional
	Port int32 `json:"port,omitempty"`

	// name of the database.
	// +optional
	Name string `json:"name,omitempty"`

	// role that owns the database.
	// +optional
	Role string `json:"role,omitempty"`

	// secretName is the Secret in the coop's namespace with host, port,
	// dbname, user, password and uri.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// extensions created in the database.
	// +listType=set
	// +optional
	Extensions []string `json:"extensions,omitempty"`

	// passwordRotation is the last value of the rotate-password annotation
	// that was carried out.
	// +optional
	PasswordRotation string `json:"passwordRotation,omitempty"`

	// retained is set when the coop was deleted and its database kept.
	// +optional
	Retained bool `json:"retained,omitempty"`

	// apps are the databases of the coop's apps that need one: each app has
	// a database of its own on the same server, owned by the coop's role.
	// +listType=map
	// +listMapKey=app
	// +optional
	Apps []AppDatabaseStatus `json:"apps,omitempty"`
}

// AppDatabaseStatus says where one app's data lives.
type AppDatabaseStatus struct {
	// app is the name of the app in spec.apps.
	App string `json:"app"`

	// name of the app's database.
	Name string `json:"name"`

	// secretName is the Secret in the coop's namespace that the app reads
	// its connection from.
	SecretName string `json:"secretName"`

	// extensions created in the app's database.
	// +listType=set
	// +optional
	Extensions []string `json:"extensions,omitempty"`
}

// CooperativeStatus is what the operator observed of a coop.
type CooperativeStatus struct {
	// observedGeneration is the generation of the spec that the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// namespace is the coop's namespace.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// initialization records milestones that are reached once and never
	// undone.
	// +optional
	Initialization *CooperativeInitialization `json:"initialization,omitempty"`

	// database says where the coop's data lives.
	// +optional
	Database *DatabaseStatus `json:"database,omitempty"`

	// apps is what the operator observed of each app.
	// +listType=map
	// +listMapKey=name
	// +optional
	Apps []AppStatus `json:"apps,omitempty"`

	// lastBackup is the coop's newest backup with a manifest in its store.
	// +optional
	LastBackup *BackupRecord `json:"lastBackup,omitempty"`

	// lastVerifiedRestore is the coop's newest restore drill: which backup
	// it restored into a scratch database, and whether every table had the
	// row count its manifest recorded.
	// +optional
	LastVerifiedRestore *DrillRecord `json:"lastVerifiedRestore,omitempty"`

	// conditions are Ready, a summary, and one condition per part of the coop.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// CooperativeInitialization records milestones that are reached once.
type CooperativeInitialization struct {
	// provisioned is true once the coop has been Ready; it stays true when
	// the coop later stops being Ready.
	// +optional
	Provisioned bool `json:"provisioned,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=coop;coops,categories=cooperator
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 58",message="metadata.name: must be at most 58 characters, so that the namespace coop-<name> is a valid name"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name: must be lower-case letters, digits and '-' (no dots), starting and ending with a letter or digit, so that the namespace coop-<name> is a valid name"
// +kubebuilder:printcolumn:name="Plan",type=string,JSONPath=`.spec.plan`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Database",type=string,JSONPath=`.status.database.name`,priority=1
// +kubebuilder:printcolumn:name="Server",type=string,JSONPath=`.status.database.server`,priority=1

// Cooperative is one member cooperative hosted on this cluster: its namespace,
// quota, isolation and access, and later its database, apps, domains and backups.
type Cooperative struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the coop asks for.
	// +required
	Spec CooperativeSpec `json:"spec"`

	// status is what the operator observed.
	// +optional
	Status CooperativeStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// CooperativeList is a list of Cooperatives.
type CooperativeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Cooperative `json:"items"`
}

func init() {
	knownTypes = append(knownTypes, &Cooperative{}, &CooperativeList{})
}

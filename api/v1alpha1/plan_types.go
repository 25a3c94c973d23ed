package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DatabaseMode says where a cooperative's PostgreSQL database lives.
// +kubebuilder:validation:Enum=Shared;Dedicated
type DatabaseMode string

const (
	// DatabaseModeShared puts the database on a shared DatabaseServer.
	DatabaseModeShared DatabaseMode = "Shared"
	// DatabaseModeDedicated runs a CloudNativePG cluster in the coop's namespace.
	DatabaseModeDedicated DatabaseMode = "Dedicated"
)

// PlanSpec is what a member cooperative on this plan gets, and its share of the cost.
type PlanSpec struct {
	// description is a short text shown to member coops choosing a plan.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Description string `json:"description,omitempty"`

	// quota caps what all of a coop's workloads may use together.
	// +required
	Quota PlanQuota `json:"quota"`

	// containerDefaults are the requests and limits given to containers that set none.
	// +optional
	ContainerDefaults ContainerDefaults `json:"containerDefaults,omitempty"`

	// maxApps is how many catalog apps a coop on this plan may run.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=3
	// +optional
	MaxApps int32 `json:"maxApps,omitempty"`

	// database holds the database defaults of coops on this plan.
	// +optional
	Database PlanDatabase `json:"database,omitempty"`

	// backup holds the backup defaults of coops on this plan.
	// +kubebuilder:default={}
	// +optional
	Backup PlanBackup `json:"backup,omitempty"`

	// costWeight is this plan's share of the shared costs, relative to other
	// plans: a coop on a plan of weight 2 pays twice what one on weight 1 pays.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	CostWeight int32 `json:"costWeight,omitempty"`
}

// PlanQuota is the ResourceQuota of a coop's namespace.
type PlanQuota struct {
	// cpu is the total CPU the coop's containers may request and be limited to.
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('0'))",message="must not be negative"
	// +required
	CPU resource.Quantity `json:"cpu"`

	// memory is the total memory the coop's containers may request and be limited to.
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('0'))",message="must not be negative"
	// +required
	Memory resource.Quantity `json:"memory"`

	// storage is the total size of the coop's persistent volume claims.
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('0'))",message="must not be negative"
	// +required
	Storage resource.Quantity `json:"storage"`

	// pods is how many pods the coop may run at once.
	// +kubebuilder:validation:Minimum=0
	// +required
	Pods int32 `json:"pods"`
}

// ContainerDefaults become the coop namespace's LimitRange.
type ContainerDefaults struct {
	// requests are given to containers that request nothing.
	// +optional
	Requests ComputeResources `json:"requests,omitempty"`

	// limits are given to containers that set no limit.
	// +optional
	Limits ComputeResources `json:"limits,omitempty"`
}

// ComputeResources is an amount of CPU and memory.
// +kubebuilder:validation:XValidation:rule="!has(self.cpu) || !quantity(string(self.cpu)).isLessThan(quantity('0'))",message="cpu must not be negative"
// +kubebuilder:validation:XValidation:rule="!has(self.memory) || !quantity(string(self.memory)).isLessThan(quantity('0'))",message="memory must not be negative"
type ComputeResources struct {
	// cpu in cores, for example 100m.
	// +optional
	CPU *resource.Quantity `json:"cpu,omitempty"`

	// memory in bytes, for example 256Mi.
	// +optional
	Memory *resource.Quantity `json:"memory,omitempty"`
}

// PlanDatabase holds the database defaults of a plan.
type PlanDatabase struct {
	// mode is where coops on this plan keep their database unless they say otherwise.
	// +kubebuilder:default=Shared
	// +optional
	Mode DatabaseMode `json:"mode,omitempty"`

	// connectionLimit caps the connections of a coop's database role.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=20
	// +optional
	ConnectionLimit int32 `json:"connectionLimit,omitempty"`

	// serverSelector limits shared databases to DatabaseServers with these
	// labels. Default: any server.
	// +optional
	ServerSelector *metav1.LabelSelector `json:"serverSelector,omitempty"`

	// dedicated sizes the CloudNativePG cluster of a coop in Dedicated mode.
	// +optional
	Dedicated DedicatedDatabase `json:"dedicated,omitempty"`
}

// DedicatedDatabase sizes a coop's own PostgreSQL cluster.
type DedicatedDatabase struct {
	// instances is the number of PostgreSQL instances: 1 is a single
	// server, more add streaming replicas.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=5
	// +kubebuilder:default=1
	// +optional
	Instances int32 `json:"instances,omitempty"`

	// storage is the volume size of each instance.
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('1Gi'))",message="must be at least 1Gi"
	// +kubebuilder:default="5Gi"
	// +optional
	Storage *resource.Quantity `json:"storage,omitempty"`
}

// PlanBackup holds the backup defaults of a plan.
type PlanBackup struct {
	// store is the BackupStore that coops on this plan back up to, unless a
	// coop names its own. Empty: coops on this plan are not backed up, and
	// their BackupsReady condition says so.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Store string `json:"store,omitempty"`

	// schedule is a cron expression for backups; the operator spreads coops
	// over the hour it names.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:default="0 3 * * *"
	// +optional
	Schedule string `json:"schedule,omitempty"`

	// retention says how many backups are kept.
	// +kubebuilder:default={}
	// +optional
	Retention BackupRetention `json:"retention,omitempty"`

	// drill says when the operator proves the coops' backups: it restores
	// each coop's latest backup into a scratch database and compares every
	// table's row count with the backup's manifest. On by default, weekly,
	// whenever backups run.
	// +kubebuilder:default={}
	// +optional
	Drill BackupDrill `json:"drill,omitempty"`
}

// BackupDrill says when restore drills run.
type BackupDrill struct {
	// enabled runs drills; false turns them off. Default: true.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// schedule is a cron expression for drills, in UTC; the operator
	// spreads coops over the hour it names, as for backups. Default:
	// Sundays at 05:00, two hours after the default backups.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:default="0 5 * * 0"
	// +optional
	Schedule string `json:"schedule,omitempty"`
}

// BackupRetention is how many daily, weekly and monthly backups are kept.
type BackupRetention struct {
	// daily is how many of the most recent daily backups are kept.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=7
	// +optional
	Daily int32 `json:"daily,omitempty"`

	// weekly is how many weekly backups are kept.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=4
	// +optional
	Weekly int32 `json:"weekly,omitempty"`

	// monthly is how many monthly backups are kept.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=6
	// +optional
	Monthly int32 `json:"monthly,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster
// +kubebuilder:printcolumn:name="CPU",type=string,JSONPath=`.spec.quota.cpu`
// +kubebuilder:printcolumn:name="Memory",type=string,JSONPath=`.spec.quota.memory`
// +kubebuilder:printcolumn:name="Storage",type=string,JSONPath=`.spec.quota.storage`
// +kubebuilder:printcolumn:name="Weight",type=integer,JSONPath=`.spec.costWeight`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Plan is what a member cooperative gets from its host, and its share of the costs.
type Plan struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what coops on this plan get.
	// +required
	Spec PlanSpec `json:"spec"`
}

// +kubebuilder:object:root=true

// PlanList is a list of Plans.
type PlanList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Plan `json:"items"`
}

func init() {
	knownTypes = append(knownTypes, &Plan{}, &PlanList{})
}

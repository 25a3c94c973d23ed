package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RestorePhase is where a Restore is in its run.
// +kubebuilder:validation:Enum=Pending;Verifying;ScalingDown;Restoring;Succeeded;Failed
type RestorePhase string

const (
	// RestorePending means the backup, the stores and the coops are being resolved.
	RestorePending RestorePhase = "Pending"
	// RestoreVerifying means every object of the backup is checked against its
	// size and sha256; nothing of the target is touched yet.
	RestoreVerifying RestorePhase = "Verifying"
	// RestoreScalingDown means the target coop's apps are being scaled to zero.
	RestoreScalingDown RestorePhase = "ScalingDown"
	// RestoreRestoring means the backup's databases and volumes are being restored.
	RestoreRestoring RestorePhase = "Restoring"
	// RestoreSucceeded means the backup is restored; final.
	RestoreSucceeded RestorePhase = "Succeeded"
	// RestoreFailed means the restore stopped; final. The message says why.
	RestoreFailed RestorePhase = "Failed"
)

// RestoreSpec says which backup to bring back. The target is always the
// Cooperative whose namespace holds the Restore.
type RestoreSpec struct {
	// backupID is the backup to restore, as yyyymmddThhmmssZ. Empty: the
	// newest backup with a manifest when the Restore starts.
	// +kubebuilder:validation:Pattern=`^[0-9]{8}T[0-9]{6}Z$`
	// +optional
	BackupID string `json:"backupID,omitempty"`

	// source is the name of the Cooperative whose backups are read. Empty:
	// the coop that owns this namespace, a restore in place. Another coop
	// makes this coop a clone of it, which that coop must allow in its
	// spec.backup.clonesTo.
	// +kubebuilder:validation:MaxLength=58
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Source string `json:"source,omitempty"`

	// identitySecret names a Secret in this namespace whose key "identity"
	// holds the age identities (AGE-SECRET-KEY-1...) that decrypt a backup
	// encrypted to the source coop's keys. The operator copies it for the
	// restore Job alone and deletes the copy when the Restore ends.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +optional
	IdentitySecret string `json:"identitySecret,omitempty"`
}

// RestoreStatus is what the operator observed of a Restore.
type RestoreStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase is Pending, Verifying, ScalingDown, Restoring, Succeeded or
	// Failed. Succeeded and Failed are final: a Restore runs once.
	// +optional
	Phase RestorePhase `json:"phase,omitempty"`

	// backupID is the backup being restored, once resolved.
	// +optional
	BackupID string `json:"backupID,omitempty"`

	// source is where the backup is: s3://<bucket>/<prefix>/<coop>/<id>/.
	// +optional
	Source string `json:"source,omitempty"`

	// startedAt is when the backup was resolved and its verification began.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// completedAt is when the Restore reached Succeeded or Failed.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`

	// message says what the Restore is doing, or why it failed.
	// +optional
	Message string `json:"message,omitempty"`

	// conditions hold Succeeded: Unknown while the Restore runs, then True
	// or False.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=rst,categories=cooperator
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="metadata.name: must be at most 63 characters, so that it fits a label"
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Backup",type=string,JSONPath=`.status.backupID`
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.source`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Restore brings a backup back into the coop that owns its namespace: in
// place from the coop's own backups, or as a clone from another coop's.
type Restore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the backup to restore; it cannot change once created.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: a Restore runs once; create another Restore"
	// +required
	Spec RestoreSpec `json:"spec"`

	// status is what the operator observed.
	// +optional
	Status RestoreStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// RestoreList is a list of Restores.
type RestoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Restore `json:"items"`
}

func init() {
	knownTypes = append(knownTypes, &Restore{}, &RestoreList{})
}

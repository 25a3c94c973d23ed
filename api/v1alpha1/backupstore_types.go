package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupStoreSpec is an S3-compatible bucket that holds coops' backups.
type BackupStoreSpec struct {
	// endpoint is the S3 server's host and port, without a scheme, such as
	// s3.fr-par.scw.cloud or minio.storage.svc:9000.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="!self.contains('://')",message="must be host or host:port, without a scheme: set insecure for plain HTTP"
	// +required
	Endpoint string `json:"endpoint"`

	// region of the bucket; empty asks the server.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Region string `json:"region,omitempty"`

	// bucket that holds the backups.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`
	// +required
	Bucket string `json:"bucket"`

	// prefix of every key: backups are kept under <prefix>/<coop>/<backup id>/.
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="!self.contains('..')",message="must not contain '..'"
	// +optional
	Prefix string `json:"prefix,omitempty"`

	// insecure talks plain HTTP to the endpoint, for a server inside the
	// cluster's own network.
	// +optional
	Insecure bool `json:"insecure,omitempty"`

	// pathStyle puts the bucket in the path instead of the host name, as most
	// self-hosted S3 servers need.
	// +optional
	PathStyle bool `json:"pathStyle,omitempty"`

	// credentialsSecretRef names a Secret with the keys accessKeyID and
	// secretAccessKey.
	// +required
	CredentialsSecretRef SecretReference `json:"credentialsSecretRef"`
}

// BackupStoreStatus is what the operator observed of a store.
type BackupStoreStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True while the bucket answers with the keys given.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bstore,categories=cooperator
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.endpoint`
// +kubebuilder:printcolumn:name="Bucket",type=string,JSONPath=`.spec.bucket`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1

// BackupStore is an S3-compatible bucket where coops' backups are kept.
type BackupStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says how to reach the bucket.
	// +required
	Spec BackupStoreSpec `json:"spec"`

	// status is what the operator observed.
	// +optional
	Status BackupStoreStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// BackupStoreList is a list of BackupStores.
type BackupStoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackupStore `json:"items"`
}

func init() {
	knownTypes = append(knownTypes, &BackupStore{}, &BackupStoreList{})
}

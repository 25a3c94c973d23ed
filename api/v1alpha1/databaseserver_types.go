package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretReference names a Secret in a namespace.
type SecretReference struct {
	// name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// namespace of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Namespace string `json:"namespace"`
}

// DatabaseServerSpec is a shared PostgreSQL server that the operator administers.
type DatabaseServerSpec struct {
	// host is the server's DNS name or IP address.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Host string `json:"host"`

	// port is the server's PostgreSQL port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=5432
	// +optional
	Port int32 `json:"port,omitempty"`

	// sslMode is the libpq sslmode of the operator's and the apps' connections.
	// +kubebuilder:validation:Enum=disable;allow;prefer;require;verify-ca;verify-full
	// +kubebuilder:default=prefer
	// +optional
	SSLMode string `json:"sslMode,omitempty"`

	// adminSecretRef names a Secret with the keys username and password of a
	// role with CREATEROLE and CREATEDB. It must not be a superuser: the
	// operator never needs one.
	// +required
	AdminSecretRef SecretReference `json:"adminSecretRef"`

	// maxDatabases is how many coop databases this server may hold.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=100
	// +optional
	MaxDatabases int32 `json:"maxDatabases,omitempty"`

	// extensions are the extensions coops may have in their databases: trusted
	// extensions the coop's role may create, or ones the server's own
	// mechanism provides (installed in template1, or a whitelist extension).
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	Extensions []string `json:"extensions,omitempty"`
}

// DatabaseServerStatus is what the operator observed of a server.
type DatabaseServerStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// serverVersion is the server's PostgreSQL version.
	// +optional
	ServerVersion string `json:"serverVersion,omitempty"`

	// databases is how many coop databases the server holds.
	// +optional
	Databases int32 `json:"databases"`

	// conditions: Ready is True while the server answers the admin role.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=dbserver,categories=cooperator
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.spec.host`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.serverVersion`
// +kubebuilder:printcolumn:name="Databases",type=integer,JSONPath=`.status.databases`
// +kubebuilder:printcolumn:name="Max",type=integer,JSONPath=`.spec.maxDatabases`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1

// DatabaseServer is a shared PostgreSQL server on which coops get a role and a database.
type DatabaseServer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says how to reach and use the server.
	// +required
	Spec DatabaseServerSpec `json:"spec"`

	// status is what the operator observed.
	// +optional
	Status DatabaseServerStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// DatabaseServerList is a list of DatabaseServers.
type DatabaseServerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DatabaseServer `json:"items"`
}

func init() {
	knownTypes = append(knownTypes, &DatabaseServer{}, &DatabaseServerList{})
}

package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BlueprintFile is one file of a blueprint's kustomize base.
type BlueprintFile struct {
	// name is a plain file name, such as deployment.yaml.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._-]*\.ya?ml$`
	// +kubebuilder:validation:MaxLength=128
	// +required
	Name string `json:"name"`

	// content is the file's YAML.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=262144
	// +required
	Content string `json:"content"`
}

// BlueprintImage sets an image of the base for a version.
type BlueprintImage struct {
	// name is the image name as the base writes it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +required
	Name string `json:"name"`

	// newName replaces the image's repository, when set.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	NewName string `json:"newName,omitempty"`

	// tag is the image tag of this version.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +required
	Tag string `json:"tag"`
}

// BlueprintVersion is one version of the app that coops may pick.
type BlueprintVersion struct {
	// version as coops write it in spec.apps[].version.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +required
	Version string `json:"version"`

	// images are the image tags of this version.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +required
	Images []BlueprintImage `json:"images"`
}

// BlueprintNeeds says what the app needs from its coop.
type BlueprintNeeds struct {
	// database: the app needs the coop's PostgreSQL database.
	// +optional
	Database bool `json:"database,omitempty"`

	// extensions the app needs in that database.
	// +listType=set
	// +optional
	Extensions []string `json:"extensions,omitempty"`

	// redis: the app needs a Redis of its own. The operator runs one per app
	// in the coop's namespace, with a password, and gives its address in the
	// Secret the base names "redis" (keys host, port, password, url).
	// +optional
	Redis bool `json:"redis,omitempty"`
}

// BlueprintExpose says which Service and port of the app the operator exposes.
type BlueprintExpose struct {
	// service is the name of a Service in the base.
	// +kubebuilder:validation:MinLength=1
	// +required
	Service string `json:"service"`

	// port is the Service port that serves HTTP.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +required
	Port int32 `json:"port"`
}

// ParameterSource says where a parameter's value comes from.
// +kubebuilder:validation:Enum=Hostname;URL;Value;Generated
type ParameterSource string

// Parameter sources.
const (
	// ParameterHostname is the app's first hostname.
	ParameterHostname ParameterSource = "Hostname"
	// ParameterURL is https:// and the app's first hostname.
	ParameterURL ParameterSource = "URL"
	// ParameterValue is the blueprint's fixed value.
	ParameterValue ParameterSource = "Value"
	// ParameterGenerated is a random secret made once per coop and kept
	// across reconciles, such as a secret key base.
	ParameterGenerated ParameterSource = "Generated"
)

// BlueprintTarget is a field of an object of the base that receives a parameter.
type BlueprintTarget struct {
	// kind of the object, such as Deployment.
	// +required
	Kind string `json:"kind"`

	// name of the object in the base.
	// +required
	Name string `json:"name"`

	// fieldPaths in kustomize replacement syntax, such as
	// spec.template.spec.containers.[name=app].env.[name=HOST].value
	// +kubebuilder:validation:MinItems=1
	// +required
	FieldPaths []string `json:"fieldPaths"`
}

// BlueprintParameter is a value put into the rendered app per coop.
type BlueprintParameter struct {
	// name of the parameter.
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	// +kubebuilder:validation:MaxLength=64
	// +required
	Name string `json:"name"`

	// source of the value.
	// +required
	Source ParameterSource `json:"source"`

	// value, for source Value.
	// +optional
	Value string `json:"value,omitempty"`

	// length in bytes of a Generated secret, before encoding.
	// +kubebuilder:validation:Minimum=16
	// +kubebuilder:validation:Maximum=128
	// +kubebuilder:default=32
	// +optional
	Length int32 `json:"length,omitempty"`

	// targets receive the value. Generated values go to a Secret instead,
	// named <app>-secrets, under the parameter's name.
	// +optional
	Targets []BlueprintTarget `json:"targets,omitempty"`
}

// BlueprintData is a persistent volume claim of the base that holds the app's data.
type BlueprintData struct {
	// claim is the name of a PersistentVolumeClaim in the base.
	// +required
	Claim string `json:"claim"`

	// size of the claim.
	// +required
	Size resource.Quantity `json:"size"`

	// backup says whether the claim is backed up; unset means it is. A
	// pointer, so that false survives a client that omits empty fields.
	// +kubebuilder:default=true
	// +optional
	Backup *bool `json:"backup,omitempty"`
}

// BlueprintMigration is run as a Job before a new version serves.
type BlueprintMigration struct {
	// workload is the Deployment or StatefulSet of the base whose pod
	// template the Job uses.
	// +required
	Workload string `json:"workload"`

	// container of that pod template that runs the command.
	// +required
	Container string `json:"container"`

	// command replaces the container's command.
	// +kubebuilder:validation:MinItems=1
	// +required
	Command []string `json:"command"`
}

// BlueprintSpec is one app of the host's catalog.
type BlueprintSpec struct {
	// displayName of the app.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +required
	DisplayName string `json:"displayName"`

	// description for coops choosing apps.
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	Description string `json:"description,omitempty"`

	// resources are the files of the app's kustomize base.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +required
	Resources []BlueprintFile `json:"resources"`

	// versions coops may pick.
	// +listType=map
	// +listMapKey=version
	// +kubebuilder:validation:MinItems=1
	// +required
	Versions []BlueprintVersion `json:"versions"`

	// needs says what the app needs from its coop.
	// +optional
	Needs BlueprintNeeds `json:"needs,omitempty"`

	// expose names the Service and port the operator exposes.
	// +optional
	Expose *BlueprintExpose `json:"expose,omitempty"`

	// parameters are put into the rendered app per coop.
	// +listType=map
	// +listMapKey=name
	// +optional
	Parameters []BlueprintParameter `json:"parameters,omitempty"`

	// data are the app's persistent volume claims.
	// +listType=map
	// +listMapKey=claim
	// +optional
	Data []BlueprintData `json:"data,omitempty"`

	// migration runs before a new version serves.
	// +optional
	Migration *BlueprintMigration `json:"migration,omitempty"`
}

// BlueprintStatus says whether the blueprint renders and passes the checks.
type BlueprintStatus struct {
	// observedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True when every version renders and passes the
	// checks; otherwise its message lists what fails.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bp,categories=cooperator
// +kubebuilder:printcolumn:name="App",type=string,JSONPath=`.spec.displayName`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`

// Blueprint is one app of the catalog: a kustomize base with its versions,
// needs and parameters, rendered per coop.
type Blueprint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the app.
	// +required
	Spec BlueprintSpec `json:"spec"`

	// status says whether it renders and passes the checks.
	// +optional
	Status BlueprintStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// BlueprintList is a list of Blueprints.
type BlueprintList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Blueprint `json:"items"`
}

func init() {
	knownTypes = append(knownTypes, &Blueprint{}, &BlueprintList{})
}

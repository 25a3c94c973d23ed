package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DomainClaimSpec says which coop's app claims a hostname. The claim's name
// is the hostname: the API server lets only one exist, so only one coop can
// ever hold a hostname, however many ask at once.
type DomainClaimSpec struct {
	// cooperative that holds the hostname.
	// +kubebuilder:validation:MinLength=1
	// +required
	Cooperative string `json:"cooperative"`

	// app of that coop the hostname points to.
	// +kubebuilder:validation:MinLength=1
	// +required
	App string `json:"app"`

	// token the coop publishes as TXT at _cooperator-challenge.<hostname>
	// to show it controls the domain.
	// +kubebuilder:validation:MinLength=16
	// +required
	Token string `json:"token"`
}

// DomainClaimStatus is whether the coop showed it controls the domain.
type DomainClaimStatus struct {
	// verified is true while the TXT record holds the token.
	// +optional
	Verified bool `json:"verified,omitempty"`

	// result of the last check: Verified, Missing or WrongToken.
	// +optional
	Result string `json:"result,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=cooperator
// +kubebuilder:validation:XValidation:rule="self.spec.cooperative == oldSelf.spec.cooperative && self.spec.token == oldSelf.spec.token",message="spec.cooperative and spec.token cannot change: delete the claim to release the hostname"
// +kubebuilder:printcolumn:name="Cooperative",type=string,JSONPath=`.spec.cooperative`
// +kubebuilder:printcolumn:name="App",type=string,JSONPath=`.spec.app`
// +kubebuilder:printcolumn:name="Verified",type=boolean,JSONPath=`.status.verified`
// +kubebuilder:printcolumn:name="Result",type=string,JSONPath=`.status.result`

// DomainClaim holds one custom hostname for one coop. Its name is the hostname.
type DomainClaim struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec names the coop and app, and the token to publish.
	// +required
	Spec DomainClaimSpec `json:"spec"`

	// status says whether the domain is verified.
	// +optional
	Status DomainClaimStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// DomainClaimList is a list of DomainClaims.
type DomainClaimList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DomainClaim `json:"items"`
}

func init() {
	knownTypes = append(knownTypes, &DomainClaim{}, &DomainClaimList{})
}

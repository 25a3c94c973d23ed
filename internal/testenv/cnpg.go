package testenv

import (
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// CNPGClusterCRD serves postgresql.cnpg.io/v1 Cluster, as CloudNativePG's
// own CRD would, with the smallest schema that keeps every field. No
// CloudNativePG operator runs here: tests and the bench mark Clusters Ready
// themselves.
func CNPGClusterCRD() *apiextensionsv1.CustomResourceDefinition {
	return cnpgCRD("Cluster", "clusters")
}

// CNPGDatabaseCRD serves postgresql.cnpg.io/v1 Database (CloudNativePG 1.25
// and later) the same way; tests make the database and mark it applied.
func CNPGDatabaseCRD() *apiextensionsv1.CustomResourceDefinition {
	return cnpgCRD("Database", "databases")
}

func cnpgCRD(kind, plural string) *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: plural + ".postgresql.cnpg.io"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "postgresql.cnpg.io",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: plural, Singular: strings.ToLower(kind), Kind: kind, ListKind: kind + "List"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr.To(true),
				}},
			}},
		},
	}
}

package specs

import (
	"fmt"
	"net"
	"net/url"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// DatabaseSecretName is the Secret in a coop's namespace that tells apps how
// to reach the coop's database, the same in Shared and Dedicated mode.
const DatabaseSecretName = "database"

// Connection is how apps reach a coop's database.
type Connection struct {
	Host     string
	Port     int32
	Database string
	User     string
	Password string
	SSLMode  string
}

// URI is the libpq connection URI.
func (c Connection) URI() string {
	u := url.URL{
		Scheme: "postgresql",
		User:   url.UserPassword(c.User, c.Password),
		Host:   net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))),
		Path:   "/" + c.Database,
	}
	if c.SSLMode != "" {
		u.RawQuery = url.Values{"sslmode": {c.SSLMode}}.Encode()
	}
	return u.String()
}

// DatabaseSecret holds the coop's connection: host, port, dbname, user,
// password and uri. It and the apps' database Secrets are the only places
// the password is kept.
func DatabaseSecret(coop *v1alpha1.Cooperative, c Connection) *corev1ac.SecretApplyConfiguration {
	return connectionSecret(DatabaseSecretName, Labels(coop), coop, c)
}

// AppDatabaseSecretName is the Secret of an app's own database.
func AppDatabaseSecretName(app string) string { return app + "-" + DatabaseSecretName }

// AppDatabaseSecret holds an app's connection to its own database, with the
// coop's credentials, in the same keys as DatabaseSecret. It carries the
// app's label, so it goes when the app is taken out of spec.apps.
func AppDatabaseSecret(coop *v1alpha1.Cooperative, app string, c Connection) *corev1ac.SecretApplyConfiguration {
	return connectionSecret(AppDatabaseSecretName(app), AppLabels(coop, app), coop, c)
}

func connectionSecret(name string, labels map[string]string, coop *v1alpha1.Cooperative, c Connection) *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(name, coop.NamespaceName()).
		WithLabels(labels).
		WithOwnerReferences(OwnerReference(coop)).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{
			"host":     []byte(c.Host),
			"port":     []byte(strconv.Itoa(int(c.Port))),
			"dbname":   []byte(c.Database),
			"user":     []byte(c.User),
			"password": []byte(c.Password),
			"uri":      []byte(c.URI()),
		})
}

// Dedicated mode: a CloudNativePG cluster in the coop's namespace.
const (
	// ClusterName is the name of the coop's CloudNativePG Cluster.
	ClusterName = "database"
	// ClusterBootstrapSecretName holds the owner's credentials that
	// CloudNativePG's initdb bootstrap gives the app role.
	ClusterBootstrapSecretName = "database-owner"
	// DedicatedDatabase is the database and owner role in a dedicated cluster.
	DedicatedDatabase = "app"
	// CNPGClusterLabel is set by CloudNativePG on a cluster's pods.
	CNPGClusterLabel = "cnpg.io/cluster"
	// ClusterSSLMode: CloudNativePG serves TLS with certificates of its own CA.
	ClusterSSLMode = "require"
	// DrillDatabaseObjectName is the CloudNativePG Database object that
	// makes the scratch database drills restore into.
	DrillDatabaseObjectName = "database-drill"
	// DedicatedDrillDatabase is that scratch database: the double "_"
	// keeps it apart from the apps' databases, as on a shared server.
	DedicatedDrillDatabase = DedicatedDatabase + "__drill"
)

// DrillDatabase asks CloudNativePG for the scratch database of the coop's
// drills in its cluster, owned by the role the drill connects as. The
// operator's role may not create databases there; CloudNativePG's
// superuser may. The database goes when the object does.
func DrillDatabase(coop *v1alpha1.Cooperative) *unstructured.Unstructured {
	return child(coop, cnpgKind("Database"), DrillDatabaseObjectName, Labels(coop), map[string]any{
		"cluster":               map[string]any{"name": ClusterName},
		"name":                  DedicatedDrillDatabase,
		"owner":                 DedicatedDatabase,
		"databaseReclaimPolicy": "delete",
	})
}

// ClusterHost is the read-write Service of the coop's cluster.
func ClusterHost(coop *v1alpha1.Cooperative) string {
	return fmt.Sprintf("%s-rw.%s.svc", ClusterName, coop.NamespaceName())
}

// ClusterBootstrapSecret is the basic-auth Secret CloudNativePG reads the
// owner's password from.
func ClusterBootstrapSecret(coop *v1alpha1.Cooperative, password string) *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(ClusterBootstrapSecretName, coop.NamespaceName()).
		WithLabels(Labels(coop)).
		WithOwnerReferences(OwnerReference(coop)).
		WithType(corev1.SecretTypeBasicAuth).
		WithData(map[string][]byte{
			corev1.BasicAuthUsernameKey: []byte(DedicatedDatabase),
			corev1.BasicAuthPasswordKey: []byte(password),
		})
}

// Cluster is the coop's CloudNativePG Cluster, sized by its plan, written as
// unstructured so the operator needs no CloudNativePG Go module.
func Cluster(coop *v1alpha1.Cooperative, plan *v1alpha1.Plan) *unstructured.Unstructured {
	d := plan.Spec.Database.Dedicated
	instances := int64(d.Instances)
	if instances == 0 {
		instances = 1
	}
	size := resource.MustParse("5Gi")
	if d.Storage != nil {
		size = *d.Storage
	}
	return child(coop, cnpgKind("Cluster"), ClusterName, Labels(coop), map[string]any{
		"instances":             instances,
		"enableSuperuserAccess": false,
		"storage":               map[string]any{"size": size.String()},
		"bootstrap": map[string]any{"initdb": map[string]any{
			"database": DedicatedDatabase,
			"owner":    DedicatedDatabase,
			"secret":   map[string]any{"name": ClusterBootstrapSecretName},
		}},
	})
}

// cnpgKind is a kind of CloudNativePG's API.
func cnpgKind(kind string) schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: kind}
}

func toAnyMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

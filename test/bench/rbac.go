package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"cooperator.dev/cooperator/internal/testenv"
)

// The operator's identity in the bench, as config/rbac names it.
const (
	operatorNamespace      = "cooperator-system"
	operatorServiceAccount = "cooperator-manager"
)

// operatorKubeconfig gives the operator the identity it has when installed:
// a ServiceAccount bound to the manager ClusterRole of config/rbac (the
// chart's is the same), with a token of its own. Its requests then go
// through RBAC, and its creates of Roles and bindings through the API
// server's escalation checks, as in a cluster; an admin kubeconfig would
// skip both.
func operatorKubeconfig(ctx context.Context, c client.Client, env *testenv.Env, root, work string) (string, error) {
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	if err != nil {
		return "", err
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(data, role); err != nil {
		return "", fmt.Errorf("config/rbac/role.yaml: %w", err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: operatorServiceAccount, Namespace: operatorNamespace}}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: sa.Namespace}},
	}
	for _, obj := range []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}, sa, role, binding} {
		if err := c.Create(ctx, obj); err != nil {
			return "", fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	// Long enough for the slowest run, Helm's included.
	token := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(24 * 3600))}}
	if err := c.SubResource("token").Create(ctx, sa, token); err != nil {
		return "", fmt.Errorf("a token for the operator: %w", err)
	}
	path := filepath.Join(work, "operator.kubeconfig")
	return path, env.WriteKubeconfig(path, operatorServiceAccount, token.Status.Token)
}

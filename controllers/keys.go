package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/internal/secret"
	"cooperator.dev/cooperator/internal/specs"
)

// readKey reads one key of a Secret a coop's admins wrote, in their
// namespace, and checks it with parse. The operator's cache holds only the
// Secrets it labels, so the API server is asked. problem says, for the
// coop, what is wrong with the Secret; err is the operator's own trouble.
func readKey(ctx context.Context, c client.Reader, namespace, name, key string, parse func(string) error) (value, problem string, err error) {
	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return "", fmt.Sprintf("Secret %s does not exist in namespace %s", name, namespace), nil
		}
		return "", "", err
	}
	data, ok := secret.Data[key]
	if !ok || len(data) == 0 {
		return "", fmt.Sprintf("Secret %s has no key %q", name, key), nil
	}
	if err := parse(string(data)); err != nil {
		return "", fmt.Sprintf("Secret %s, key %q: %v", name, key, err), nil
	}
	return string(data), "", nil
}

// volumeToken is the token kept in the Secret at key, or a new one when
// it has none yet: made once, so senders and receivers keep theirs.
func volumeToken(ctx context.Context, c client.Reader, key client.ObjectKey) (string, error) {
	live := &corev1.Secret{}
	err := c.Get(ctx, key, live)
	switch {
	case err == nil && len(live.Data[specs.VolumeTokenKey]) > 0:
		return string(live.Data[specs.VolumeTokenKey]), nil
	case err != nil && !apierrors.IsNotFound(err):
		return "", err
	}
	return secret.Token(32)
}

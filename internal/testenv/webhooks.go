package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// WebhookConfigurations are the generated webhook configurations of
// config/webhook/manifests.yaml, named <name>-validating and
// <name>-mutating, calling the webhook server at base (https://host:port)
// and trusting caBundle: the operator's webhooks as an install has them,
// served by a process on loopback.
func WebhookConfigurations(name, base string, caBundle []byte) ([]client.Object, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "webhook", "manifests.yaml"))
	if err != nil {
		return nil, err
	}
	point := func(cc *admissionregistrationv1.WebhookClientConfig) {
		cc.URL = new(base + *cc.Service.Path)
		cc.Service = nil
		cc.CABundle = caBundle
	}
	var objs []client.Object
	for _, doc := range strings.Split(string(data), "\n---") {
		doc = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(doc), "---"))
		var kind metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &kind); err != nil {
			return nil, err
		}
		switch kind.Kind {
		case "ValidatingWebhookConfiguration":
			c := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := yaml.UnmarshalStrict([]byte(doc), c); err != nil {
				return nil, err
			}
			c.Name = name + "-validating"
			for i := range c.Webhooks {
				point(&c.Webhooks[i].ClientConfig)
			}
			objs = append(objs, c)
		case "MutatingWebhookConfiguration":
			c := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := yaml.UnmarshalStrict([]byte(doc), c); err != nil {
				return nil, err
			}
			c.Name = name + "-mutating"
			for i := range c.Webhooks {
				point(&c.Webhooks[i].ClientConfig)
			}
			objs = append(objs, c)
		case "":
		default:
			return nil, fmt.Errorf("config/webhook/manifests.yaml: unexpected kind %s", kind.Kind)
		}
	}
	if len(objs) != 2 {
		return nil, fmt.Errorf("config/webhook/manifests.yaml: want a validating and a mutating webhook configuration, got %d", len(objs))
	}
	return objs, nil
}

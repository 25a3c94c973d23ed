package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
)

// Options say what the webhooks need from the operator's flags.
type Options struct {
	// BaseDomain is the platform's domain.
	BaseDomain string
	// Certs, when set, has the operator make and rotate the webhook
	// server's certificate; nil: another party (cert-manager) writes it
	// into the server's certificate folder.
	Certs *Certs
}

// Certs is the self-signed certificate authority and serving certificate
// the operator keeps in a Secret of its namespace. The Secret must exist
// (the chart and config/default create it empty) and be mounted at
// CertDir, where the webhook server reads it.
type Certs struct {
	// Namespace and Secret name the Secret.
	Namespace, Secret string
	// CertDir is the folder the Secret is mounted at.
	CertDir string
	// DNSNames are the names the certificate is for; the first is the one
	// the API server reaches the webhooks by, <service>.<namespace>.svc.
	DNSNames []string
	// Validating and Mutating name the webhook configurations whose
	// caBundle the operator keeps to the authority's certificate.
	Validating, Mutating string
}

// Setup serves every webhook from the manager's webhook server, and adds a
// readiness check that passes once they are served. With Certs, the
// webhooks are served once the certificate is in CertDir and its authority
// in the webhook configurations: until then the server could not start.
func Setup(mgr ctrl.Manager, opts Options) error {
	served := make(chan struct{})
	register := func() error {
		for name, w := range map[string]interface{ SetupWithManager(ctrl.Manager) error }{
			"Cooperative": &CooperativeValidator{Reader: mgr.GetClient(), BaseDomain: opts.BaseDomain},
			"Plan":        &PlanWebhook{Reader: mgr.GetClient()},
			"Blueprint":   &BlueprintValidator{},
			"Restore":     &RestoreValidator{Reader: mgr.GetClient()},
		} {
			if err := w.SetupWithManager(mgr); err != nil {
				return fmt.Errorf("while setting up the %s webhook: %w", name, err)
			}
		}
		close(served)
		return nil
	}
	if err := mgr.AddReadyzCheck("webhooks", func(req *http.Request) error {
		select {
		case <-served:
			return mgr.GetWebhookServer().StartedChecker()(req)
		default:
			return errors.New("the webhook server's certificate is not ready")
		}
	}); err != nil {
		return err
	}
	if opts.Certs == nil {
		return register()
	}
	ready, err := opts.Certs.addRotator(mgr)
	if err != nil {
		return fmt.Errorf("while setting up the webhook certificate rotation: %w", err)
	}
	return mgr.Add(whenReady{ready: ready, run: register})
}

// addRotator has cert-controller keep the Secret and the caBundles; the
// channel closes once both are in place.
func (c *Certs) addRotator(mgr ctrl.Manager) (<-chan struct{}, error) {
	if c.Namespace == "" || c.Secret == "" || c.CertDir == "" || len(c.DNSNames) == 0 || c.Validating == "" || c.Mutating == "" {
		return nil, fmt.Errorf("the Secret's namespace and name, the certificate folder, a DNS name and both webhook configurations are all needed, got %+v", *c)
	}
	ready := make(chan struct{})
	err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: c.Namespace, Name: c.Secret},
		CertDir:        c.CertDir,
		CAName:         "cooperator-webhook-ca",
		CAOrganization: "cooperator.dev",
		DNSName:        c.DNSNames[0],
		ExtraDNSNames:  c.DNSNames[1:],
		IsReady:        ready,
		Webhooks: []rotator.WebhookInfo{
			{Name: c.Validating, Type: rotator.Validating},
			{Name: c.Mutating, Type: rotator.Mutating},
		},
		// Every replica serves webhooks, leader or not.
		RequireLeaderElection: false,
		EnableReadinessCheck:  true,
	})
	return ready, err
}

// whenReady runs once a channel closes, on every replica.
type whenReady struct {
	ready <-chan struct{}
	run   func() error
}

func (w whenReady) Start(ctx context.Context) error {
	select {
	case <-w.ready:
		return w.run()
	case <-ctx.Done():
		return nil
	}
}

func (w whenReady) NeedLeaderElection() bool { return false }

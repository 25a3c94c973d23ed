package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/dns"
	"cooperator.dev/cooperator/internal/secret"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/ssa"
)

// +kubebuilder:rbac:groups=cooperator.dev,resources=domainclaims,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=cooperator.dev,resources=domainclaims/status,verbs=get;update;patch

var errDomainInvalid = errors.New("invalid custom domain")

// reconcileDomains holds each custom domain for the coop with a DomainClaim
// (one per hostname, so two coops can never hold the same), checks the
// coop's TXT record for it, and exposes each app on its platform hostname
// and its verified domains.
func (r *CooperativeReconciler) reconcileDomains(ctx context.Context, s *scope) (ctrl.Result, error) {
	coop := s.coop
	var first *appProblem
	var transient error
	wanted := map[string]bool{}
	custom := false
	note := func(problem *appProblem, err error) {
		transient = errors.Join(transient, err)
		if problem != nil && first == nil {
			first = problem
		}
	}
	for _, e := range s.exposures {
		var platform, verified []string
		for _, host := range e.hosts {
			if !r.Options.Expose.WildcardTLS {
				// <app>.<coop>.<base> carries the coop's and the app's
				// names: no other app can ask for it.
				platform = append(platform, host)
				continue
			}
			// <app>-<coop>.<base> could be made by two coops (app a-b of
			// coop c, app a of coop b-c): held with a claim like any other.
			wanted[host] = true
			st, problem, err := r.holdDomain(ctx, coop, e.app, host, true)
			note(problem, err)
			if st.Verified {
				platform = append(platform, host)
			}
		}
		var domains []v1alpha1.AppDomainStatus
		for _, host := range e.domains {
			host = strings.ToLower(host)
			wanted[host] = true
			custom = true
			own, reserved := specs.PlatformDomain(coop, host, r.Options.BaseDomain)
			if reserved != "" {
				note(&appProblem{reason: v1alpha1.DomainInvalidReason, message: fmt.Sprintf("App %s: %s", e.app, reserved), terminal: true}, nil)
				domains = append(domains, v1alpha1.AppDomainStatus{Name: host, Message: reserved})
				continue
			}
			st, problem, err := r.holdDomain(ctx, coop, e.app, host, own)
			note(problem, err)
			if st.Verified {
				verified = append(verified, host)
			}
			domains = append(domains, st)
		}
		if err := r.expose(ctx, coop, e, platform, verified); err != nil {
			return ctrl.Result{}, err
		}
		for i := range coop.Status.Apps {
			if coop.Status.Apps[i].Name != e.app {
				continue
			}
			coop.Status.Apps[i].Domains = domains
			coop.Status.Apps[i].URLs = nil
			for _, h := range append(platform, verified...) {
				coop.Status.Apps[i].URLs = append(coop.Status.Apps[i].URLs, "https://"+h)
			}
		}
	}
	if err := r.releaseDomains(ctx, coop, wanted); err != nil {
		return ctrl.Result{}, err
	}

	var result ctrl.Result
	if custom && r.DomainRecheck > 0 {
		// A record can be removed at any time; look again.
		result.RequeueAfter = r.DomainRecheck
	}
	switch {
	case first != nil:
		setCondition(coop, v1alpha1.DomainsReadyCondition, metav1.ConditionFalse, first.reason, first.message)
		if first.terminal {
			return ctrl.Result{}, reconcile.TerminalError(errDomainInvalid)
		}
	case !custom:
		setCondition(coop, v1alpha1.DomainsReadyCondition, metav1.ConditionTrue, v1alpha1.DomainsVerifiedReason, "The coop's apps use the platform's hostnames only")
	default:
		setCondition(coop, v1alpha1.DomainsReadyCondition, metav1.ConditionTrue, v1alpha1.DomainsVerifiedReason, "Every custom domain is verified")
	}
	if transient != nil {
		return ctrl.Result{}, transient
	}
	return result, nil
}

// expose routes an app's hostnames to its Service, with an Ingress or an
// HTTPRoute, and asks cert-manager for the certificate its own hostnames
// need. What an app no longer needs is deleted.
func (r *CooperativeReconciler) expose(ctx context.Context, coop *v1alpha1.Cooperative, e exposure, platform, domains []string) error {
	opts := r.Options.Expose
	hosts := append(slices.Clone(platform), domains...)
	if issuer := opts.ClusterIssuer; issuer != "" && r.CertManagerInstalled && opts.Gateway == nil {
		cert := specs.AppCertificate(coop, e.app, specs.CertifiedHosts(platform, domains, opts), issuer)
		if err := r.applyOrDelete(ctx, cert, len(specs.CertifiedHosts(platform, domains, opts)) > 0); err != nil {
			return fmt.Errorf("while applying the Certificate of %s: %w", e.app, err)
		}
	}
	if gw := opts.Gateway; gw != nil {
		route := specs.AppHTTPRoute(coop, e.app, e.service, e.port, hosts, *gw)
		if err := r.applyOrDelete(ctx, route, len(hosts) > 0); err != nil {
			return fmt.Errorf("while applying the HTTPRoute of %s: %w", e.app, err)
		}
		return nil
	}
	if len(hosts) == 0 {
		return r.deleteIfPresent(ctx, &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: coop.NamespaceName(), Name: e.app}})
	}
	ing := specs.AppIngress(coop, e.app, e.service, e.port, platform, domains, opts)
	if _, err := ssa.Apply(ctx, r.Client, r.APIReader, &networkingv1.Ingress{}, ing, networkingv1ac.ExtractIngress); err != nil {
		return fmt.Errorf("while applying the Ingress of %s: %w", e.app, err)
	}
	return nil
}

// applyOrDelete applies obj when it is wanted, and deletes it otherwise.
func (r *CooperativeReconciler) applyOrDelete(ctx context.Context, obj *unstructured.Unstructured, want bool) error {
	if want {
		_, err := ssa.ApplyUnstructured(ctx, r.Client, r.APIReader, obj)
		return err
	}
	return r.deleteIfPresent(ctx, obj)
}

// deleteIfPresent deletes obj if the cache holds it: a steady reconcile
// sends no request.
func (r *CooperativeReconciler) deleteIfPresent(ctx context.Context, obj client.Object) error {
	live, ok := obj.DeepCopyObject().(client.Object)
	if !ok {
		return fmt.Errorf("cannot copy %T", obj)
	}
	if err := r.Get(ctx, client.ObjectKeyFromObject(obj), live); err != nil {
		return client.IgnoreNotFound(err)
	}
	if err := r.Delete(ctx, live); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("while deleting %s: %w", obj.GetName(), err)
	}
	return nil
}

// holdDomain claims host for the coop's app, if no one holds it, and checks
// its TXT record, unless the platform gave the host to the coop (proven).
func (r *CooperativeReconciler) holdDomain(ctx context.Context, coop *v1alpha1.Cooperative, app, host string, proven bool) (v1alpha1.AppDomainStatus, *appProblem, error) {
	st := v1alpha1.AppDomainStatus{Name: host}
	if !proven {
		st.TXTRecord = strings.TrimSuffix(dns.RecordName(host), ".")
	}
	problem := func(reason, msg string, terminal bool) (v1alpha1.AppDomainStatus, *appProblem, error) {
		st.Message = msg
		return st, &appProblem{reason: reason, message: fmt.Sprintf("App %s: %s", app, msg), terminal: terminal}, nil
	}
	if errs := validation.IsDNS1123Subdomain(host); len(errs) > 0 || !strings.Contains(host, ".") {
		return problem(v1alpha1.DomainInvalidReason, fmt.Sprintf("%q is not a hostname", host), true)
	}
	if label, _, _ := strings.Cut(host, "."); len(label) > validation.DNS1123LabelMaxLength {
		// With --wildcard-tls, <app>-<coop> can be too long.
		return problem(v1alpha1.DomainInvalidReason, fmt.Sprintf("%q is not a hostname: its first label is over %d characters", host, validation.DNS1123LabelMaxLength), true)
	}

	claim := &v1alpha1.DomainClaim{}
	err := r.Get(ctx, client.ObjectKey{Name: host}, claim)
	if apierrors.IsNotFound(err) {
		claim, err = r.claim(ctx, coop, app, host)
	}
	if err != nil {
		return st, nil, fmt.Errorf("while claiming %s: %w", host, err)
	}
	switch {
	case claim.Spec.Cooperative != coop.Name:
		return problem(v1alpha1.DomainConflictReason, fmt.Sprintf("%q is already claimed by another cooperative", host), false)
	case claim.Spec.App != app:
		return problem(v1alpha1.DomainConflictReason, fmt.Sprintf("%q is already claimed by app %s of this cooperative", host, claim.Spec.App), false)
	case proven:
		st.Verified = true
		return st, nil, nil
	}
	st.TXTValue = claim.Spec.Token

	result, err := r.DNS.Check(ctx, host, claim.Spec.Token)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Checking a domain's TXT record", "domain", host)
		st.Verified = claim.Status.Verified
		st.Message = "The DNS resolver did not answer; retrying"
		return st, &appProblem{reason: v1alpha1.DNSUnavailableReason, message: fmt.Sprintf("App %s: %s", app, st.Message)},
			fmt.Errorf("while checking %s: %w", host, err)
	}
	if err := r.recordCheck(ctx, claim, result); err != nil {
		return st, nil, err
	}
	if result != dns.Verified {
		what := "there is no TXT record"
		if result == dns.WrongToken {
			what = "the TXT record holds another value"
		}
		return problem(v1alpha1.DomainUnverifiedReason, fmt.Sprintf("%s at %s; publish the value %s there", what, st.TXTRecord, claim.Spec.Token), false)
	}
	st.Verified = true
	return st, nil, nil
}

// claim creates the DomainClaim named host. The API server lets one create
// win; a loser reads the winner's claim.
func (r *CooperativeReconciler) claim(ctx context.Context, coop *v1alpha1.Cooperative, app, host string) (*v1alpha1.DomainClaim, error) {
	token, err := secret.Token(24)
	if err != nil {
		return nil, err
	}
	claim := &v1alpha1.DomainClaim{
		ObjectMeta: metav1.ObjectMeta{Name: host, Labels: specs.Labels(coop)},
		Spec:       v1alpha1.DomainClaimSpec{Cooperative: coop.Name, App: app, Token: "cooperator-" + token},
	}
	if err := ctrl.SetControllerReference(coop, claim, r.Scheme()); err != nil {
		return nil, err
	}
	err = r.Create(ctx, claim)
	if apierrors.IsAlreadyExists(err) {
		claim = &v1alpha1.DomainClaim{}
		err = r.APIReader.Get(ctx, client.ObjectKey{Name: host}, claim)
	}
	return claim, err
}

// recordCheck writes the result on the claim when it changed.
func (r *CooperativeReconciler) recordCheck(ctx context.Context, claim *v1alpha1.DomainClaim, result dns.Result) error {
	verified := result == dns.Verified
	if claim.Status.Verified == verified && claim.Status.Result == result.String() {
		return nil
	}
	before := claim.DeepCopy()
	claim.Status.Verified, claim.Status.Result = verified, result.String()
	if err := r.Status().Patch(ctx, claim, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("while recording the check of %s: %w", claim.Name, err)
	}
	return nil
}

// releaseDomains deletes the coop's claims on hostnames it no longer asks for.
func (r *CooperativeReconciler) releaseDomains(ctx context.Context, coop *v1alpha1.Cooperative, wanted map[string]bool) error {
	var claims v1alpha1.DomainClaimList
	if err := r.List(ctx, &claims, client.MatchingLabels{v1alpha1.CooperativeLabel: coop.Name}); err != nil {
		return fmt.Errorf("while listing the coop's domain claims: %w", err)
	}
	for i := range claims.Items {
		c := &claims.Items[i]
		if wanted[c.Name] || c.Spec.Cooperative != coop.Name {
			continue
		}
		if err := r.Delete(ctx, c); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("while releasing %s: %w", c.Name, err)
		}
		ctrl.LoggerFrom(ctx).Info("Released a custom domain", "domain", c.Name)
	}
	return nil
}

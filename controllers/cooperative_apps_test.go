package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/testenv"
)

func TestAppsRollOutUpgradeAndHibernate(t *testing.T) {
	startOperator(t)
	ctx := context.Background()
	bp := testBlueprint(t, "web-app", nil)
	bp.Spec.Versions = append(bp.Spec.Versions, v1alpha1.BlueprintVersion{Version: "1.1",
		Images: []v1alpha1.BlueprintImage{{Name: "example.org/web", Tag: "1.1.0"}}})
	bp.Spec.Parameters = append(bp.Spec.Parameters, v1alpha1.BlueprintParameter{Name: "secret_key_base", Source: v1alpha1.ParameterGenerated, Length: 32})
	bp.Spec.Migration = &v1alpha1.BlueprintMigration{Workload: "web", Container: "web", Command: []string{"bin/migrate"}}
	coop := newCoop("shop", "apps-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "store", Blueprint: "web-app", Version: "1.0"}}
	create(t, bp, newPlan("apps-plan"), coop)
	coop = waitReady(t, "shop")

	if len(coop.Status.Apps) != 1 || !coop.Status.Apps[0].Ready || coop.Status.Apps[0].URLs[0] != "https://store.shop.coops.test" {
		t.Errorf("status.apps = %+v", coop.Status.Apps)
	}
	// The migration ran, to completion, before the app was applied.
	migration := &batchv1.Job{}
	mustGet(t, "coop-shop", "store-migrate-1-0", migration)
	if migration.Status.Succeeded != 1 || migration.Spec.Template.Spec.Containers[0].Command[0] != "bin/migrate" {
		t.Errorf("migration Job: succeeded %d, command %v", migration.Status.Succeeded, migration.Spec.Template.Spec.Containers[0].Command)
	}
	deployment := &appsv1.Deployment{}
	mustGet(t, "coop-shop", "store-web", deployment)
	if img := deployment.Spec.Template.Spec.Containers[0].Image; img != "example.org/web:1.0.3" {
		t.Errorf("image = %s", img)
	}
	if env := deployment.Spec.Template.Spec.Containers[0].Env[0]; env.Value != "https://store.shop.coops.test" {
		t.Errorf("PUBLIC_URL = %q", env.Value)
	}
	var pods corev1.PodList
	if err := adminClient.List(ctx, &pods, client.InNamespace("coop-shop")); err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning {
			running++
		}
	}
	if running != 2 {
		t.Errorf("%d pods Running, want the 2 replicas", running)
	}
	ing := &networkingv1.Ingress{}
	mustGet(t, "coop-shop", "store", ing)
	if ing.Spec.Rules[0].Host != "store.shop.coops.test" ||
		ing.Spec.TLS[0].SecretName != "store-tls" || ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name != "store-web" {
		t.Errorf("Ingress = %+v", ing.Spec)
	}
	// cert-manager is asked for the certificate the Ingress names.
	cert := &unstructured.Unstructured{}
	cert.SetGroupVersionKind(CertManagerCertificate)
	mustGet(t, "coop-shop", "store", cert)
	names, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	secretName, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	issuer, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
	if len(names) != 1 || names[0] != "store.shop.coops.test" || secretName != "store-tls" || issuer != "letsencrypt" {
		t.Errorf("Certificate: dnsNames %v, secretName %s, issuer %s", names, secretName, issuer)
	}
	secret := &corev1.Secret{}
	mustGet(t, "coop-shop", "store-secrets", secret)
	generated := string(secret.Data["secret_key_base"])
	if len(generated) < 40 {
		t.Errorf("generated secret_key_base has %d characters", len(generated))
	}

	// Upgrade: the new version's image rolls out; the generated secret stays.
	update(t, "shop", func(c *v1alpha1.Cooperative) { c.Spec.Apps[0].Version = "1.1" })
	waitFor(t, 60*time.Second, "version 1.1 to roll out", func(ctx context.Context) (bool, error) {
		d := &appsv1.Deployment{}
		if err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-shop", Name: "store-web"}, d); err != nil {
			return false, err
		}
		c := &v1alpha1.Cooperative{}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: "shop"}, c); err != nil {
			return false, err
		}
		return d.Spec.Template.Spec.Containers[0].Image == "example.org/web:1.1.0" &&
			meta.IsStatusConditionTrue(c.Status.Conditions, v1alpha1.AppsReadyCondition) && c.Status.ObservedGeneration == c.Generation &&
			c.Status.Apps[0].Version == "1.1", nil
	})
	mustGet(t, "coop-shop", "store-migrate-1-1", migration)
	if migration.Spec.Template.Spec.Containers[0].Image != "example.org/web:1.1.0" {
		t.Errorf("the upgrade's migration ran %s, want the new version's image", migration.Spec.Template.Spec.Containers[0].Image)
	}
	mustGet(t, "coop-shop", "store-secrets", secret)
	if string(secret.Data["secret_key_base"]) != generated {
		t.Errorf("the generated secret changed on upgrade")
	}

	// Hibernate: scaled to zero, still Ready, objects kept.
	update(t, "shop", func(c *v1alpha1.Cooperative) { c.Spec.Apps[0].Hibernate = true })
	waitFor(t, 60*time.Second, "the app to hibernate", func(ctx context.Context) (bool, error) {
		d := &appsv1.Deployment{}
		if err := adminClient.Get(ctx, client.ObjectKey{Namespace: "coop-shop", Name: "store-web"}, d); err != nil {
			return false, err
		}
		c := &v1alpha1.Cooperative{}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: "shop"}, c); err != nil {
			return false, err
		}
		return d.Spec.Replicas != nil && *d.Spec.Replicas == 0 && d.Status.Replicas == 0 &&
			meta.IsStatusConditionTrue(c.Status.Conditions, v1alpha1.ReadyCondition) && c.Status.ObservedGeneration == c.Generation &&
			strings.Contains(c.Status.Apps[0].Message, "Hibernating"), nil
	})

	// Taken out of spec.apps, the app's objects go.
	update(t, "shop", func(c *v1alpha1.Cooperative) { c.Spec.Apps = nil })
	waitFor(t, 60*time.Second, "the removed app's objects to go", func(ctx context.Context) (bool, error) {
		var deployments appsv1.DeploymentList
		var ingresses networkingv1.IngressList
		if err := adminClient.List(ctx, &deployments, client.InNamespace("coop-shop")); err != nil {
			return false, err
		}
		if err := adminClient.List(ctx, &ingresses, client.InNamespace("coop-shop")); err != nil {
			return false, err
		}
		return len(deployments.Items) == 0 && len(ingresses.Items) == 0, nil
	})
	coop = waitReady(t, "shop")
	if len(coop.Status.Apps) != 0 {
		t.Errorf("status.apps still lists %+v", coop.Status.Apps)
	}
}

func TestAppsThatDoNotFitAreRefusedWithAReason(t *testing.T) {
	startOperator(t)
	big := testBlueprint(t, "web-big", func(f map[string]string) {
		f["web.yaml"] = strings.Replace(f["web.yaml"], "replicas: 2", "replicas: 9", 1)
	})
	tooBig := newCoop("too-big", "fit-plan")
	tooBig.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "store", Blueprint: "web-big", Version: "1.0"}}
	noVersion := newCoop("no-version", "fit-plan")
	noVersion.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "store", Blueprint: "web-big", Version: "9.9"}}
	noBlueprint := newCoop("no-blueprint", "fit-plan")
	noBlueprint.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "store", Blueprint: "nothing", Version: "1.0"}}
	create(t, big, newPlan("fit-plan"), tooBig, noVersion, noBlueprint)

	c := waitReason(t, "too-big", v1alpha1.AppChecksFailedReason)
	if msg := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ReadyCondition).Message; !strings.Contains(msg, "more than the plan") {
		t.Errorf("message %q", msg)
	}
	waitReason(t, "no-version", v1alpha1.VersionNotOfferedReason)
	waitReason(t, "no-blueprint", v1alpha1.BlueprintNotFoundReason)
	var deployments appsv1.DeploymentList
	if err := adminClient.List(context.Background(), &deployments, client.InNamespace("coop-too-big")); err != nil || len(deployments.Items) != 0 {
		t.Errorf("a refused app created %d Deployments (%v)", len(deployments.Items), err)
	}
}

// update edits a coop as a person would, again if the operator wrote it meanwhile.
func update(t *testing.T, name string, edit func(*v1alpha1.Cooperative)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c := &v1alpha1.Cooperative{}
		if err := adminClient.Get(context.Background(), client.ObjectKey{Name: name}, c); err != nil {
			return err
		}
		edit(c)
		return adminClient.Update(context.Background(), c)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFailedMigrationLeavesTheOldVersionServing(t *testing.T) {
	startOperator(t)
	image, tag, _ := strings.Cut(testenv.FailingImage, ":")
	bp := testBlueprint(t, "web-failing", nil)
	bp.Spec.Versions = append(bp.Spec.Versions, v1alpha1.BlueprintVersion{Version: "2.0",
		Images: []v1alpha1.BlueprintImage{{Name: "example.org/web", NewName: image, Tag: tag}}})
	bp.Spec.Migration = &v1alpha1.BlueprintMigration{Workload: "web", Container: "web", Command: []string{"bin/migrate"}}
	coop := newCoop("failing", "failing-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "store", Blueprint: "web-failing", Version: "1.0"}}
	create(t, bp, newPlan("failing-plan"), coop)
	waitReady(t, "failing")

	update(t, "failing", func(c *v1alpha1.Cooperative) { c.Spec.Apps[0].Version = "2.0" })
	// The Job retries twice, with the Job controller's backoff, before it fails.
	waitFor(t, 3*time.Minute, "the migration to fail", func(ctx context.Context) (bool, error) {
		err := adminClient.Get(ctx, client.ObjectKey{Name: "failing"}, coop)
		c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.ReadyCondition)
		return err == nil && c != nil && c.Reason == v1alpha1.MigrationFailedReason, err
	})
	if !meta.IsStatusConditionTrue(coop.Status.Conditions, v1alpha1.StalledCondition) {
		t.Errorf("a failed migration does not stall the coop: %+v", coop.Status.Conditions)
	}
	if c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.AppsReadyCondition); !strings.Contains(c.Message, "version 1.0 still serves") {
		t.Errorf("AppsReady message = %q, want it to say what still serves", c.Message)
	}
	if st := coop.Status.Apps[0]; st.Version != "1.0" {
		t.Errorf("status.apps[0].version = %s, want the old version", st.Version)
	}
	deployment := &appsv1.Deployment{}
	mustGet(t, "coop-failing", "store-web", deployment)
	if img := deployment.Spec.Template.Spec.Containers[0].Image; img != "example.org/web:1.0.3" {
		t.Errorf("the Deployment runs %s after a failed migration", img)
	}

	// Going back clears the failure.
	update(t, "failing", func(c *v1alpha1.Cooperative) { c.Spec.Apps[0].Version = "1.0" })
	coop = waitReady(t, "failing")
	if meta.IsStatusConditionTrue(coop.Status.Conditions, v1alpha1.StalledCondition) {
		t.Errorf("still stalled after going back: %+v", coop.Status.Conditions)
	}
}

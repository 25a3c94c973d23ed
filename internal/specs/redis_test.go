package specs

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"cooperator.dev/cooperator/api/v1alpha1"
)

func redisStatefulSet(t *testing.T, hibernate bool) *appsv1.StatefulSet {
	t.Helper()
	objs, err := RedisObjects(testCoop(), "loomio", hibernate)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if u.GetKind() == "StatefulSet" {
			sts := &appsv1.StatefulSet{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, sts); err != nil {
				t.Fatal(err)
			}
			return sts
		}
	}
	t.Fatal("no StatefulSet among the Redis objects")
	return nil
}

func TestRedisRunsWithAPasswordAnAppendOnlyFileAndBoundedMemory(t *testing.T) {
	sts := redisStatefulSet(t, false)
	if sts.Name != "loomio-redis" || sts.Namespace != "coop-bakers" || *sts.Spec.Replicas != 1 {
		t.Errorf("StatefulSet %s/%s, replicas %d", sts.Namespace, sts.Name, *sts.Spec.Replicas)
	}
	pod := sts.Spec.Template.Spec
	c := pod.Containers[0]
	if c.Image != "redis:7.2-alpine" {
		t.Errorf("image %s", c.Image)
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--requirepass $(REDIS_PASSWORD)", "--appendonly yes", "--dir /data",
		"--maxmemory 96mb", "--maxmemory-policy noeviction"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	env := c.Env[0]
	if env.Name != "REDIS_PASSWORD" || env.ValueFrom.SecretKeyRef.Name != "loomio-redis" || env.ValueFrom.SecretKeyRef.Key != "password" {
		t.Errorf("password env = %+v", env)
	}
	if got := c.Resources.Limits[corev1.ResourceCPU]; got.Cmp(resource.MustParse("100m")) != 0 {
		t.Errorf("cpu limit %s", got.String())
	}
	if got := c.Resources.Limits[corev1.ResourceMemory]; got.Cmp(resource.MustParse("128Mi")) != 0 {
		t.Errorf("memory limit %s", got.String())
	}
	if *pod.SecurityContext.RunAsUser != 999 || *pod.SecurityContext.FSGroup != 999 {
		t.Errorf("pod security context %+v", pod.SecurityContext)
	}
	if claim := pod.Volumes[0].PersistentVolumeClaim; claim == nil || claim.ClaimName != "loomio-redis-data" ||
		c.VolumeMounts[0].MountPath != "/data" {
		t.Errorf("data volume %+v mounted at %s", pod.Volumes[0], c.VolumeMounts[0].MountPath)
	}
	// Pod Security restricted, as the namespace enforces it.
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	for _, r := range evaluator.EvaluatePod(restricted, &sts.Spec.Template.ObjectMeta, &pod) {
		if !r.Allowed {
			t.Errorf("pod security restricted: %s (%s)", r.ForbiddenReason, r.ForbiddenDetail)
		}
	}
	// The pods carry the app's label, so that removing the app removes them.
	if sts.Labels[AppLabel] != "loomio" || sts.Spec.Template.Labels[AppLabel] != "loomio" {
		t.Errorf("labels %v, pod labels %v", sts.Labels, sts.Spec.Template.Labels)
	}
	if len(sts.OwnerReferences) != 1 || sts.OwnerReferences[0].UID != "uid-1" {
		t.Errorf("owner references %+v", sts.OwnerReferences)
	}
}

func TestHibernatingRedisScalesToZero(t *testing.T) {
	if n := *redisStatefulSet(t, true).Spec.Replicas; n != 0 {
		t.Errorf("replicas while hibernating = %d", n)
	}
}

func TestRedisServiceAndVolume(t *testing.T) {
	coop := testCoop()
	svc := RedisService(coop, "loomio")
	sts := redisStatefulSet(t, false)
	if *svc.Name != "loomio-redis" || *svc.Spec.Type != corev1.ServiceTypeClusterIP || *svc.Spec.Ports[0].Port != 6379 {
		t.Errorf("Service %s: type %s, port %d", *svc.Name, *svc.Spec.Type, *svc.Spec.Ports[0].Port)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("Service selector %v does not pick the Redis pods %v", svc.Spec.Selector, sts.Spec.Template.Labels)
	}
	// Another app's Redis in the same coop is not picked.
	other := RedisStatefulSet(coop, "decidim", 1)
	if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(other.Spec.Template.Labels)) {
		t.Errorf("loomio's Service picks decidim's Redis pods")
	}
	pvc := RedisDataClaim(coop, "loomio")
	size := (*pvc.Spec.Resources.Requests)[corev1.ResourceStorage]
	if *pvc.Name != "loomio-redis-data" || size.Cmp(resource.MustParse("1Gi")) != 0 ||
		!slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOnce) || pvc.Labels[AppLabel] != "loomio" {
		t.Errorf("claim %s of %s, modes %v, labels %v", *pvc.Name, size.String(), pvc.Spec.AccessModes, pvc.Labels)
	}
}

func TestRedisSecret(t *testing.T) {
	s := RedisSecret(testCoop(), "loomio", "pw-123")
	want := map[string]string{
		"host": "loomio-redis", "port": "6379", "password": "pw-123",
		"url": "redis://:pw-123@loomio-redis:6379/0",
	}
	for k, v := range want {
		if got := string(s.Data[k]); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if *s.Name != "loomio-redis" || s.Labels[AppLabel] != "loomio" || s.Labels[v1alpha1.CooperativeLabel] != "bakers" {
		t.Errorf("Secret %s, labels %v", *s.Name, s.Labels)
	}
}

func TestAppDatabaseSecretHasTheCoopsShapeAndTheAppsLabel(t *testing.T) {
	c := Connection{Host: "pg.example", Port: 5432, Database: "coop_bakers_shop", User: "coop_bakers", Password: "pw", SSLMode: "require"}
	s := AppDatabaseSecret(testCoop(), "shop", c)
	coopSecret := DatabaseSecret(testCoop(), c)
	if *s.Name != "shop-database" || s.Labels[AppLabel] != "shop" {
		t.Errorf("Secret %s, labels %v", *s.Name, s.Labels)
	}
	for k := range coopSecret.Data {
		if string(s.Data[k]) != string(coopSecret.Data[k]) {
			t.Errorf("%s = %q, the coop's Secret has %q", k, s.Data[k], coopSecret.Data[k])
		}
	}
	if got := string(s.Data["uri"]); got != "postgresql://coop_bakers:pw@pg.example:5432/coop_bakers_shop?sslmode=require" {
		t.Errorf("uri = %s", got)
	}
}

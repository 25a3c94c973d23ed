package specs

import (
	"encoding/json"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// An app whose Blueprint needs Redis gets one of its own in the coop's
// namespace: a StatefulSet of one pod, its Service, a volume for its
// append-only file, and a Secret with its address and password.
const (
	// RedisImage is the Redis the operator runs.
	RedisImage = "redis:7.2-alpine"
	// RedisPort is the port of Redis and of its Service.
	RedisPort = 6379
	// RedisUser is the uid and gid of the redis user in the image.
	RedisUser = 999
	// RedisMaxMemory is Redis's own memory cap, below the container's limit
	// so that Redis refuses writes instead of being killed.
	RedisMaxMemory = "96mb"
	redisDataPath  = "/data"
	redisComponent = "redis"
)

// Redis's container limits; they count against the plan's budget for the app.
var (
	RedisCPULimit    = resource.MustParse("100m")
	RedisMemoryLimit = resource.MustParse("128Mi")
	RedisStorage     = resource.MustParse("1Gi")
)

// RedisName names an app's Redis StatefulSet, Service and Secret.
func RedisName(app string) string { return app + "-redis" }

// RedisDataClaimName is the volume of an app's Redis.
func RedisDataClaimName(app string) string { return app + "-redis-data" }

// RedisURL is how an app connects to its Redis, database 0.
func RedisURL(app, password string) string {
	return fmt.Sprintf("redis://:%s@%s:%d/0", password, RedisName(app), RedisPort)
}

// RedisSecret holds an app's Redis address and password: host, port,
// password and url. Redis reads its password from it too.
func RedisSecret(coop *v1alpha1.Cooperative, app, password string) *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(RedisName(app), coop.NamespaceName()).
		WithLabels(AppLabels(coop, app)).
		WithOwnerReferences(OwnerReference(coop)).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{
			"host":     []byte(RedisName(app)),
			"port":     []byte(strconv.Itoa(RedisPort)),
			"password": []byte(password),
			"url":      []byte(RedisURL(app, password)),
		})
}

// redisSelector picks the pods of one app's Redis; it never changes, as a
// StatefulSet's selector cannot.
func redisSelector(app string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":     redisComponent,
		"app.kubernetes.io/instance": RedisName(app),
	}
}

// RedisService is the ClusterIP Service apps reach their Redis through.
func RedisService(coop *v1alpha1.Cooperative, app string) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(RedisName(app), coop.NamespaceName()).
		WithLabels(AppLabels(coop, app)).
		WithOwnerReferences(OwnerReference(coop)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(redisSelector(app)).
			WithPorts(corev1ac.ServicePort().WithName("redis").WithPort(RedisPort).
				WithTargetPort(intstr.FromString("redis")).WithProtocol(corev1.ProtocolTCP)))
}

// RedisDataClaim holds Redis's append-only file. Like an app's own volumes,
// it stays when the app is taken out of spec.apps.
func RedisDataClaim(coop *v1alpha1.Cooperative, app string) *corev1ac.PersistentVolumeClaimApplyConfiguration {
	return corev1ac.PersistentVolumeClaim(RedisDataClaimName(app), coop.NamespaceName()).
		WithLabels(AppLabels(coop, app)).
		WithOwnerReferences(OwnerReference(coop)).
		WithSpec(corev1ac.PersistentVolumeClaimSpec().
			WithAccessModes(corev1.ReadWriteOnce).
			WithResources(corev1ac.VolumeResourceRequirements().
				WithRequests(corev1.ResourceList{corev1.ResourceStorage: RedisStorage})))
}

// RedisStatefulSet runs one Redis pod for an app, zero while the app
// hibernates. A StatefulSet stops the old pod before starting a new one, so
// two never write the same append-only file. The pod passes Pod Security
// restricted, and Redis keeps its data in memory within its limit, refusing
// writes rather than evicting keys an app relies on (job queues, sessions).
func RedisStatefulSet(coop *v1alpha1.Cooperative, app string, replicas int32) *appsv1ac.StatefulSetApplyConfiguration {
	podLabels := AppLabels(coop, app)
	for k, v := range redisSelector(app) {
		podLabels[k] = v
	}
	probe := func() *corev1ac.ProbeApplyConfiguration {
		return corev1ac.Probe().WithTCPSocket(corev1ac.TCPSocketAction().WithPort(intstr.FromString("redis"))).
			WithPeriodSeconds(10)
	}
	container := corev1ac.Container().
		WithName("redis").
		WithImage(RedisImage).
		WithCommand("redis-server").
		WithArgs(
			"--port", strconv.Itoa(RedisPort),
			"--requirepass", "$(REDIS_PASSWORD)",
			"--dir", redisDataPath,
			"--appendonly", "yes",
			"--maxmemory", RedisMaxMemory,
			"--maxmemory-policy", "noeviction",
		).
		WithEnv(corev1ac.EnvVar().WithName("REDIS_PASSWORD").WithValueFrom(corev1ac.EnvVarSource().
			WithSecretKeyRef(corev1ac.SecretKeySelector().WithName(RedisName(app)).WithKey("password")))).
		WithPorts(corev1ac.ContainerPort().WithName("redis").WithContainerPort(RedisPort).WithProtocol(corev1.ProtocolTCP)).
		WithResources(corev1ac.ResourceRequirements().
			WithLimits(corev1.ResourceList{corev1.ResourceCPU: RedisCPULimit, corev1.ResourceMemory: RedisMemoryLimit}).
			WithRequests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("25m"), corev1.ResourceMemory: RedisMemoryLimit})).
		WithReadinessProbe(probe()).
		WithLivenessProbe(probe().WithInitialDelaySeconds(10)).
		WithVolumeMounts(corev1ac.VolumeMount().WithName("data").WithMountPath(redisDataPath)).
		WithSecurityContext(corev1ac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithRunAsNonRoot(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")))
	pod := corev1ac.PodSpec().
		WithAutomountServiceAccountToken(false).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(RedisUser).
			WithRunAsGroup(RedisUser).
			WithFSGroup(RedisUser).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithContainers(container).
		WithVolumes(corev1ac.Volume().WithName("data").WithPersistentVolumeClaim(
			corev1ac.PersistentVolumeClaimVolumeSource().WithClaimName(RedisDataClaimName(app))))
	return appsv1ac.StatefulSet(RedisName(app), coop.NamespaceName()).
		WithLabels(AppLabels(coop, app)).
		WithOwnerReferences(OwnerReference(coop)).
		WithSpec(appsv1ac.StatefulSetSpec().
			WithReplicas(replicas).
			WithServiceName(RedisName(app)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(redisSelector(app))).
			WithTemplate(corev1ac.PodTemplateSpec().WithLabels(podLabels).WithSpec(pod)))
}

// RedisObjects are an app's Redis volume, Service and StatefulSet as
// unstructured objects, the form the operator applies and checks app
// objects in. The Secret is separate: its password is made once and kept.
func RedisObjects(coop *v1alpha1.Cooperative, app string, hibernate bool) ([]*unstructured.Unstructured, error) {
	replicas := int32(1)
	if hibernate {
		replicas = 0
	}
	var out []*unstructured.Unstructured
	for _, ac := range []any{RedisDataClaim(coop, app), RedisService(coop, app), RedisStatefulSet(coop, app, replicas)} {
		u, err := toUnstructured(ac)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// toUnstructured turns an apply configuration into an unstructured object
// holding only the fields it sets.
func toUnstructured(ac any) (*unstructured.Unstructured, error) {
	data, err := json.Marshal(ac)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	return u, nil
}

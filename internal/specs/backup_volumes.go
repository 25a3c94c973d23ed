package specs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// A coop's volumes can only be mounted in its namespace, and the store's
// keys must never go there: a sender in the coop's namespace streams the
// volumes to the backup runner, which waits for them on this port.
const (
	// BackupRunnerLabel marks the backup runner's pods with their coop, for
	// the Service that senders reach and the policy that lets them.
	BackupRunnerLabel = "cooperator.dev/backup-of"
	// VolumesPort is where the runner receives volumes.
	VolumesPort = 8080
	// VolumeTokenKey is the key of the token in both Secrets.
	VolumeTokenKey = "token"
	// VolumeTokenSecretName is the sender's Secret in the coop's namespace.
	VolumeTokenSecretName = "cooperator-backup-volumes"
	// RunnerLabel tells a coop's backup runner from its restore runner, as
	// both carry BackupRunnerLabel for the coop's network policy.
	RunnerLabel = "cooperator.dev/runner"
	// AllowToBackupRunner lets a coop's pods reach its own backup runner.
	AllowToBackupRunner = "allow-to-backup-runner"
	// volumesMount is where the sender mounts each volume, by claim name.
	volumesMount = "/volumes"
)

// AppVolumes are the claims of one app to back up, and who may read them.
type AppVolumes struct {
	App    string
	Claims []string
	// Selector picks the pods that mount the claims: the sender prefers
	// their node, where a ReadWriteOnce volume is attached.
	Selector map[string]string
	// RunAsUser, RunAsGroup and FSGroup are those of the app's pods, so the
	// sender reads what the app wrote.
	RunAsUser, RunAsGroup, FSGroup *int64
}

// VolumeTokenSecretOfRunner is the runner's copy of the token, in the
// operator's namespace.
func VolumeTokenSecretOfRunner(coop *v1alpha1.Cooperative) string {
	return BackupName(coop) + "-volumes"
}

// VolumeTokenSecret holds the token that senders present to the runner.
func VolumeTokenSecret(coop *v1alpha1.Cooperative, namespace, name, token string) *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(name, namespace).
		WithLabels(Labels(coop)).
		WithOwnerReferences(OwnerReference(coop)).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{VolumeTokenKey: []byte(token)})
}

// BackupRunnerService lets the senders reach the coop's backup runner.
func BackupRunnerService(coop *v1alpha1.Cooperative, opts Options) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(BackupName(coop), opts.OperatorNamespace).
		WithLabels(Labels(coop)).
		WithOwnerReferences(OwnerReference(coop)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(map[string]string{BackupRunnerLabel: coop.Name, RunnerLabel: "backup"}).
			WithPorts(corev1ac.ServicePort().WithName("volumes").WithPort(VolumesPort).
				WithTargetPort(intstr.FromString("volumes"))))
}

// BackupRunnerURL is the runner's address as the senders reach it.
func BackupRunnerURL(coop *v1alpha1.Cooperative, opts Options) string {
	return fmt.Sprintf("http://%s.%s.svc:%d", BackupName(coop), opts.OperatorNamespace, VolumesPort)
}

// VolumeSenderName names the sender CronJob of an app in the coop's namespace.
func VolumeSenderName(app string) string {
	const prefix, max = "cooperator-backup-", 52
	name := prefix + app
	if len(name) <= max {
		return name
	}
	sum := sha256.Sum256([]byte(app))
	return strings.TrimRight(name[:max-9], "-") + "-" + hex.EncodeToString(sum[:4])
}

// VolumeSenderCronJob runs `cooperator send-volumes` for one app's claims
// on the coop's backup schedule, in the coop's namespace, under Pod
// Security restricted, with every claim mounted read-only.
func VolumeSenderCronJob(coop *v1alpha1.Cooperative, v AppVolumes, schedule string, opts Options) *batchv1ac.CronJobApplyConfiguration {
	args := []string{"send-volumes", "--to=" + BackupRunnerURL(coop, opts)}
	pod := runnerPod(opts, "send-volumes", nil, secretEnv("VOLUME_TOKEN", VolumeTokenSecretName, VolumeTokenKey))
	container := &pod.Containers[0]
	for _, claim := range v.Claims {
		mount := path.Join(volumesMount, claim)
		args = append(args, "--volume="+claim+"="+mount)
		container.WithVolumeMounts(corev1ac.VolumeMount().WithName(claim).WithMountPath(mount).WithReadOnly(true))
		pod.WithVolumes(corev1ac.Volume().WithName(claim).WithPersistentVolumeClaim(
			corev1ac.PersistentVolumeClaimVolumeSource().WithClaimName(claim).WithReadOnly(true)))
	}
	container.WithArgs(args...)
	asApp(pod, v)
	if len(v.Selector) > 0 {
		pod.WithAffinity(corev1ac.Affinity().WithPodAffinity(corev1ac.PodAffinity().
			WithPreferredDuringSchedulingIgnoredDuringExecution(corev1ac.WeightedPodAffinityTerm().
				WithWeight(100).
				WithPodAffinityTerm(corev1ac.PodAffinityTerm().
					WithTopologyKey(corev1.LabelHostname).
					WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(v.Selector))))))
	}
	// As many tries as the runner's, which each wait for a sender.
	job := batchv1ac.JobSpec().
		WithBackoffLimit(2).
		WithActiveDeadlineSeconds(6 * 3600).
		WithTemplate(corev1ac.PodTemplateSpec().WithLabels(Labels(coop)).WithSpec(pod))
	return batchv1ac.CronJob(VolumeSenderName(v.App), coop.NamespaceName()).
		WithLabels(AppLabels(coop, v.App)).
		WithOwnerReferences(OwnerReference(coop)).
		WithSpec(batchv1ac.CronJobSpec().
			WithSchedule(BackupSchedule(coop, schedule)).
			WithTimeZone("Etc/UTC").
			WithConcurrencyPolicy(batchv1.ForbidConcurrent).
			WithStartingDeadlineSeconds(3600).
			WithSuccessfulJobsHistoryLimit(1).
			WithFailedJobsHistoryLimit(3).
			WithJobTemplate(batchv1ac.JobTemplateSpec().WithLabels(Labels(coop)).WithSpec(job)))
}

// backupRunnerPolicy lets the coop's pods reach its own backup runner, and
// nothing else in the operator's namespace.
func backupRunnerPolicy(coop *v1alpha1.Cooperative, opts Options) *networkingv1ac.NetworkPolicyApplyConfiguration {
	return networkPolicy(coop, AllowToBackupRunner, networkingv1ac.NetworkPolicySpec().
		WithPodSelector(metav1ac.LabelSelector()).
		WithPolicyTypes(networkingv1.PolicyTypeEgress).
		WithEgress(networkingv1ac.NetworkPolicyEgressRule().
			WithTo(networkingv1ac.NetworkPolicyPeer().
				WithNamespaceSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{namespaceNameLabel: opts.OperatorNamespace})).
				WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{BackupRunnerLabel: coop.Name}))).
			WithPorts(port(corev1.ProtocolTCP, VolumesPort))))
}

// serveVolumes makes a runner's pod serve the volumes' tar streams on
// VolumesPort, to senders or receivers that present the token held in
// tokenSecret. A runner without volumes serves nothing.
func serveVolumes(pod *corev1ac.PodSpecApplyConfiguration, volumes []string, tokenSecret string) {
	if len(volumes) == 0 {
		return
	}
	c := &pod.Containers[0]
	c.WithArgs(fmt.Sprintf("--listen=:%d", VolumesPort))
	for _, v := range volumes {
		c.WithArgs("--remote-volume=" + v)
	}
	c.WithEnv(secretEnv("VOLUME_TOKEN", tokenSecret, VolumeTokenKey))
	c.WithPorts(corev1ac.ContainerPort().WithName("volumes").WithContainerPort(VolumesPort))
}

// RestoreRunnerLabels mark a restore's runner pod: reachable by the coop's
// receivers, and behind the Restore's own Service.
func RestoreRunnerLabels(restore *v1alpha1.Restore, target *v1alpha1.Cooperative) map[string]string {
	return map[string]string{BackupRunnerLabel: target.Name, RunnerLabel: "restore", v1alpha1.RestoreLabel: restore.Name}
}

// RestoreRunnerService lets the coop's receivers reach a restore's runner.
func RestoreRunnerService(restore *v1alpha1.Restore, target *v1alpha1.Cooperative, opts Options) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(RestoreName(restore), opts.OperatorNamespace).
		WithLabels(RestoreLabels(restore, target)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(RestoreRunnerLabels(restore, target)).
			WithPorts(corev1ac.ServicePort().WithName("volumes").WithPort(VolumesPort).
				WithTargetPort(intstr.FromString("volumes"))))
}

// RestoreReceiverSecretName is the receivers' copy of a restore's token, in
// the coop's namespace.
func RestoreReceiverSecretName(restore *v1alpha1.Restore) string {
	return shortName("cooperator-"+restore.Name, "-volumes")
}

// RestoreReceiverSecret holds the token, owned by the Restore.
func RestoreReceiverSecret(restore *v1alpha1.Restore, target *v1alpha1.Cooperative, token string) *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(RestoreReceiverSecretName(restore), restore.Namespace).
		WithLabels(RestoreLabels(restore, target)).
		WithOwnerReferences(restoreOwner(restore)).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{VolumeTokenKey: []byte(token)})
}

// VolumeReceiverName names the receiver Job of one app for a Restore.
func VolumeReceiverName(restore *v1alpha1.Restore, app string) string {
	return shortName("cooperator-"+restore.Name, "-"+app)
}

// VolumeReceiverJob runs `cooperator receive-volumes` once for one app's
// claims, mounted read-write, as the app's user, in the coop's namespace.
func VolumeReceiverJob(restore *v1alpha1.Restore, target *v1alpha1.Cooperative, v AppVolumes, opts Options) *batchv1ac.JobApplyConfiguration {
	url := fmt.Sprintf("http://%s.%s.svc:%d", RestoreName(restore), opts.OperatorNamespace, VolumesPort)
	args := []string{"receive-volumes", "--from=" + url}
	pod := runnerPod(opts, "receive-volumes", nil, secretEnv("VOLUME_TOKEN", RestoreReceiverSecretName(restore), VolumeTokenKey))
	container := &pod.Containers[0]
	for _, claim := range v.Claims {
		mount := path.Join(volumesMount, claim)
		args = append(args, "--volume="+claim+"="+mount)
		container.WithVolumeMounts(corev1ac.VolumeMount().WithName(claim).WithMountPath(mount))
		pod.WithVolumes(corev1ac.Volume().WithName(claim).WithPersistentVolumeClaim(
			corev1ac.PersistentVolumeClaimVolumeSource().WithClaimName(claim)))
	}
	container.WithArgs(args...)
	asApp(pod, v)
	labels := RestoreLabels(restore, target)
	return batchv1ac.Job(VolumeReceiverName(restore, v.App), restore.Namespace).
		WithLabels(labels).
		WithOwnerReferences(restoreOwner(restore)).
		WithSpec(batchv1ac.JobSpec().
			WithBackoffLimit(0).
			WithActiveDeadlineSeconds(6 * 3600).
			WithTemplate(corev1ac.PodTemplateSpec().WithLabels(labels).WithSpec(pod)))
}

func restoreOwner(restore *v1alpha1.Restore) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(v1alpha1.GroupVersion.String()).
		WithKind("Restore").
		WithName(restore.Name).
		WithUID(restore.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// asApp runs a pod as the app's user and group.
func asApp(pod *corev1ac.PodSpecApplyConfiguration, v AppVolumes) {
	sc := pod.SecurityContext
	if v.RunAsUser != nil {
		sc.WithRunAsUser(*v.RunAsUser)
	}
	if v.RunAsGroup != nil {
		sc.WithRunAsGroup(*v.RunAsGroup)
	}
	if v.FSGroup != nil {
		sc.WithFSGroup(*v.FSGroup)
	}
}

// shortName is prefix+suffix, with prefix cut and hashed to keep within 52
// characters, the longest name a CronJob's or Job's pods can carry.
func shortName(prefix, suffix string) string {
	const max = 52
	if len(prefix)+len(suffix) <= max {
		return prefix + suffix
	}
	sum := sha256.Sum256([]byte(prefix + suffix))
	keep := max - len(suffix) - 9
	if keep < 1 {
		return strings.TrimRight((prefix + suffix)[:max-9], "-") + "-" + hex.EncodeToString(sum[:4])
	}
	return strings.TrimRight(prefix[:keep], "-") + "-" + hex.EncodeToString(sum[:4]) + suffix
}

package specs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// RestoreName names the Secret of a Restore in the operator's namespace,
// and, with a suffix, its Jobs. Job names are at most 63 characters; a
// long name is cut and a hash of the Restore's namespace and name keeps it
// apart.
func RestoreName(restore *v1alpha1.Restore) string {
	const max = 55 // room for "-verify"
	name := "restore-" + strings.TrimPrefix(restore.Namespace, v1alpha1.NamespacePrefix) + "-" + restore.Name
	if len(name) <= max {
		return name
	}
	sum := sha256.Sum256([]byte(restore.Namespace + "/" + restore.Name))
	return strings.TrimRight(name[:max-9], "-") + "-" + hex.EncodeToString(sum[:4])
}

// VerifyJobName names a Restore's Job that checks the backup.
func VerifyJobName(restore *v1alpha1.Restore) string { return RestoreName(restore) + "-verify" }

// RestoreJobName names a Restore's Job that restores the backup.
func RestoreJobName(restore *v1alpha1.Restore) string { return RestoreName(restore) + "-run" }

// RestoreLabels mark what is made for a Restore in the operator's
// namespace, so that it is found, and removed, by label.
func RestoreLabels(restore *v1alpha1.Restore, target *v1alpha1.Cooperative) map[string]string {
	l := Labels(target)
	l[v1alpha1.RestoreLabel] = restore.Name
	return l
}

// RestorePasswordSecret holds a copy of the target coop's database password
// in the operator's namespace, for the restore Job, while the Restore runs.
// With volumes to bring back, it also holds the token of their receivers.
func RestorePasswordSecret(restore *v1alpha1.Restore, target *v1alpha1.Cooperative, namespace, password, token, identity string) *corev1ac.SecretApplyConfiguration {
	data := map[string][]byte{"password": []byte(password)}
	if token != "" {
		data[VolumeTokenKey] = []byte(token)
	}
	if identity != "" {
		data[IdentityKey] = []byte(identity)
	}
	return corev1ac.Secret(RestoreName(restore), namespace).
		WithLabels(RestoreLabels(restore, target)).
		WithType(corev1.SecretTypeOpaque).
		WithData(data)
}

// RestoreTarget is what a Restore reads and where it writes.
type RestoreTarget struct {
	// Source is the coop whose backup is read, and ID the backup.
	Source, ID string
	// Store is the source's bucket, and StoreSecret the Secret of its keys
	// in the operator's namespace.
	Store       v1alpha1.BackupStoreSpec
	StoreSecret string
	// Host, Port, User and SSLMode reach the target coop's databases.
	Host    string
	Port    int32
	User    string
	SSLMode string
	// Rename maps each database of the backup to the target's database of
	// the same app, in the backup's order.
	Rename [][2]string
	// RemoteVolumes are the backup's volumes that the target's receivers
	// fetch, by claim name.
	RemoteVolumes []string
	// Encrypted: the Restore's Secret holds the identity that decrypts
	// the backup.
	Encrypted bool
}

func (t RestoreTarget) storeArgs() []string {
	return []string{
		"--s3-endpoint=" + t.Store.Endpoint, "--s3-region=" + t.Store.Region, "--s3-bucket=" + t.Store.Bucket, "--s3-prefix=" + t.Store.Prefix,
		fmt.Sprintf("--s3-insecure=%t", t.Store.Insecure), fmt.Sprintf("--s3-path-style=%t", t.Store.PathStyle),
	}
}

// VerifyJob runs `cooperator verify` over the backup, which checks every
// object's size and sha256 before anything of the target is touched.
func VerifyJob(restore *v1alpha1.Restore, target *v1alpha1.Cooperative, t RestoreTarget, opts Options) *batchv1ac.JobApplyConfiguration {
	args := append([]string{"verify", "--coop=" + t.Source, "--id=" + t.ID}, t.storeArgs()...)
	return runOnce(VerifyJobName(restore), restore, target, opts,
		runnerPod(opts, "verify", args, storeKeyEnv(t.StoreSecret)...))
}

// RestoreJob runs `cooperator restore` of the backup into the target coop's
// databases, as the target's role.
func RestoreJob(restore *v1alpha1.Restore, target *v1alpha1.Cooperative, t RestoreTarget, opts Options) *batchv1ac.JobApplyConfiguration {
	args := []string{"restore", "--coop=" + t.Source, "--id=" + t.ID,
		"--db-host=" + t.Host, fmt.Sprintf("--db-port=%d", t.Port), "--db-user=" + t.User, "--db-sslmode=" + t.SSLMode,
	}
	for _, m := range t.Rename {
		args = append(args, "--db-map="+m[0]+"="+m[1])
	}
	args = append(args, t.storeArgs()...)
	env := append([]*corev1ac.EnvVarApplyConfiguration{secretEnv("PGPASSWORD", RestoreName(restore), "password")}, storeKeyEnv(t.StoreSecret)...)
	pod := runnerPod(opts, "restore", args, env...)
	serveVolumes(pod, t.RemoteVolumes, RestoreName(restore))
	if t.Encrypted {
		pod.Containers[0].WithArgs("--identity-file=" + mountKey(pod, RestoreName(restore), IdentityKey))
	}
	// The labels let the runner into a dedicated cluster, and let receivers
	// reach it.
	job := runOnce(RestoreJobName(restore), restore, target, opts, pod)
	job.Spec.Template.WithLabels(RestoreRunnerLabels(restore, target))
	return job
}

// runOnce is a Job that runs its pod once: a restore is never retried on
// its own, since a second try would not start from the same state.
func runOnce(name string, restore *v1alpha1.Restore, target *v1alpha1.Cooperative, opts Options, pod *corev1ac.PodSpecApplyConfiguration) *batchv1ac.JobApplyConfiguration {
	labels := RestoreLabels(restore, target)
	return batchv1ac.Job(name, opts.OperatorNamespace).
		WithLabels(labels).
		WithSpec(batchv1ac.JobSpec().
			WithBackoffLimit(0).
			WithActiveDeadlineSeconds(6 * 3600).
			WithTemplate(corev1ac.PodTemplateSpec().WithLabels(labels).WithSpec(pod)))
}

func secretEnv(name, secret, key string) *corev1ac.EnvVarApplyConfiguration {
	return corev1ac.EnvVar().WithName(name).WithValueFrom(corev1ac.EnvVarSource().
		WithSecretKeyRef(corev1ac.SecretKeySelector().WithName(secret).WithKey(key)))
}

func storeKeyEnv(secret string) []*corev1ac.EnvVarApplyConfiguration {
	return []*corev1ac.EnvVarApplyConfiguration{
		secretEnv("AWS_ACCESS_KEY_ID", secret, "accessKeyID"),
		secretEnv("AWS_SECRET_ACCESS_KEY", secret, "secretAccessKey"),
	}
}

// runnerPod runs one command of the runner under Pod Security restricted,
// without a service account token. The runner writes its error to the
// termination message, so the operator reads why a run failed from the
// pod; with FallbackToLogsOnError, the last lines of the log otherwise.
func runnerPod(opts Options, name string, args []string, env ...*corev1ac.EnvVarApplyConfiguration) *corev1ac.PodSpecApplyConfiguration {
	container := corev1ac.Container().
		WithName(name).
		WithImage(opts.RunnerImage).
		WithArgs(args...).
		WithEnv(env...).
		WithTerminationMessagePolicy(corev1.TerminationMessageFallbackToLogsOnError).
		WithResources(corev1ac.ResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}).
			WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")})).
		WithSecurityContext(corev1ac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")))
	return corev1ac.PodSpec().
		WithRestartPolicy(corev1.RestartPolicyNever).
		WithAutomountServiceAccountToken(false).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(65532).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithContainers(container)
}

package specs

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// BackupName names a coop's backup CronJob and the Secret that holds its
// database password, both in the operator's namespace. CronJob names are at
// most 52 characters; a longer coop name is cut and a hash keeps it apart.
func BackupName(coop *v1alpha1.Cooperative) string {
	return cronJobName("backup-", coop)
}

// DrillName names a coop's restore drill CronJob in the operator's
// namespace, cut as BackupName is.
func DrillName(coop *v1alpha1.Cooperative) string {
	return cronJobName("drill-", coop)
}

func cronJobName(prefix string, coop *v1alpha1.Cooperative) string {
	const max = 52
	name := prefix + coop.Name
	if len(name) <= max {
		return name
	}
	sum := sha256.Sum256([]byte(coop.Name))
	return strings.TrimRight(name[:max-9], "-") + "-" + hex.EncodeToString(sum[:4])
}

// BackupSchedule spreads the coops on one schedule over its hour: a plain
// minute field becomes a minute of the coop's own, the same on every pass,
// so a thousand coops do not start at once. Other schedules are kept.
func BackupSchedule(coop *v1alpha1.Cooperative, schedule string) string {
	fields := strings.Fields(schedule)
	if len(fields) != 5 {
		return schedule
	}
	if _, err := strconv.Atoi(fields[0]); err != nil {
		return schedule
	}
	sum := sha256.Sum256([]byte(coop.Name))
	fields[0] = strconv.Itoa(int(binary.BigEndian.Uint32(sum[:4]) % 60))
	return strings.Join(fields, " ")
}

// BackupPasswordSecret holds a copy of the coop's database password in the
// operator's namespace, for its backup Jobs.
// With recipients, the coop's age recipients ride along: public keys, which
// the runner encrypts to.
func BackupPasswordSecret(coop *v1alpha1.Cooperative, namespace, password, recipients string) *corev1ac.SecretApplyConfiguration {
	data := map[string][]byte{"password": []byte(password)}
	if recipients != "" {
		data[RecipientsKey] = []byte(recipients)
	}
	return corev1ac.Secret(BackupName(coop), namespace).
		WithLabels(Labels(coop)).
		WithOwnerReferences(OwnerReference(coop)).
		WithType(corev1.SecretTypeOpaque).
		WithData(data)
}

// Keys of age recipients and identities, in the coop's Secrets and the
// operator's copies, and where the runner finds them.
const (
	RecipientsKey = "recipients"
	IdentityKey   = "identity"
	// BackupRecipientsSecretName is the Secret a coop's admins may write
	// their recipients into.
	BackupRecipientsSecretName = "backup-recipients"
	keysMount                  = "/keys"
)

// mountKey mounts one key of a Secret as a file under /keys and returns
// the file's path.
func mountKey(pod *corev1ac.PodSpecApplyConfiguration, secret, key string) string {
	pod.WithVolumes(corev1ac.Volume().WithName("keys").WithSecret(corev1ac.SecretVolumeSource().
		WithSecretName(secret).WithItems(corev1ac.KeyToPath().WithKey(key).WithPath(key)).WithDefaultMode(0o400)))
	pod.Containers[0].WithVolumeMounts(corev1ac.VolumeMount().WithName("keys").WithMountPath(keysMount).WithReadOnly(true))
	return keysMount + "/" + key
}

// BackupTarget is what one coop's backup reads and where it writes.
type BackupTarget struct {
	// Host, Port, User and SSLMode reach the coop's databases.
	Host    string
	Port    int32
	User    string
	SSLMode string
	// Databases are the coop's and its apps' databases.
	Databases []string
	// Store is the bucket, and StoreSecret the Secret of its keys in the
	// operator's namespace.
	Store       v1alpha1.BackupStoreSpec
	StoreSecret string
	Schedule    string
	Retention   v1alpha1.BackupRetention
	// RemoteVolumes are the claims that the coop's senders stream to the
	// runner, by name.
	RemoteVolumes []string
	// Encrypted: the backup Secret holds the coop's recipients.
	Encrypted bool
}

// BackupCronJob runs `cooperator backup` for a coop on its schedule, in the
// operator's namespace, under Pod Security restricted.
func BackupCronJob(coop *v1alpha1.Cooperative, t BackupTarget, opts Options) *batchv1ac.CronJobApplyConfiguration {
	args := []string{"backup",
		"--coop=" + coop.Name,
		"--db-host=" + t.Host, fmt.Sprintf("--db-port=%d", t.Port), "--db-user=" + t.User, "--db-sslmode=" + t.SSLMode,
	}
	for _, db := range t.Databases {
		args = append(args, "--db-name="+db)
	}
	args = append(args,
		"--s3-endpoint="+t.Store.Endpoint, "--s3-region="+t.Store.Region, "--s3-bucket="+t.Store.Bucket, "--s3-prefix="+t.Store.Prefix,
		fmt.Sprintf("--s3-insecure=%t", t.Store.Insecure), fmt.Sprintf("--s3-path-style=%t", t.Store.PathStyle),
		fmt.Sprintf("--keep-daily=%d", t.Retention.Daily), fmt.Sprintf("--keep-weekly=%d", t.Retention.Weekly),
		fmt.Sprintf("--keep-monthly=%d", t.Retention.Monthly),
	)
	env := append([]*corev1ac.EnvVarApplyConfiguration{secretEnv("PGPASSWORD", BackupName(coop), "password")}, storeKeyEnv(t.StoreSecret)...)
	// The labels let the runner into a dedicated cluster, and let senders
	// reach it.
	podLabels := Labels(coop)
	podLabels[BackupRunnerLabel] = coop.Name
	podLabels[RunnerLabel] = "backup"
	pod := runnerPod(opts, "backup", args, env...)
	serveVolumes(pod, t.RemoteVolumes, VolumeTokenSecretOfRunner(coop))
	if t.Encrypted {
		pod.Containers[0].WithArgs("--recipients-file=" + mountKey(pod, BackupName(coop), RecipientsKey))
	}
	job := batchv1ac.JobSpec().
		WithBackoffLimit(2).
		WithActiveDeadlineSeconds(6 * 3600).
		WithTemplate(corev1ac.PodTemplateSpec().WithLabels(podLabels).WithSpec(pod))
	return batchv1ac.CronJob(BackupName(coop), opts.OperatorNamespace).
		WithLabels(Labels(coop)).
		WithOwnerReferences(OwnerReference(coop)).
		WithSpec(batchv1ac.CronJobSpec().
			WithSchedule(BackupSchedule(coop, t.Schedule)).
			WithTimeZone("Etc/UTC").
			WithConcurrencyPolicy(batchv1.ForbidConcurrent).
			WithStartingDeadlineSeconds(3600).
			WithSuccessfulJobsHistoryLimit(3).
			WithFailedJobsHistoryLimit(3).
			WithJobTemplate(batchv1ac.JobTemplateSpec().WithLabels(Labels(coop)).WithSpec(job)))
}

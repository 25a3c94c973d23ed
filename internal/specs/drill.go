package specs

import (
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// DrillCronJob runs `cooperator verify --scratch-db` for a coop on the
// drill schedule, spread over its hour as backups are, in the operator's
// namespace, under Pod Security restricted: it restores the coop's latest
// backup, one database at a time, into scratch and compares row counts
// with the manifest, then records what it found in the store. It connects
// as the coop's role, which owns scratch, with the backup's password
// Secret: a drill can touch nothing of another coop.
func DrillCronJob(coop *v1alpha1.Cooperative, t BackupTarget, scratch, schedule string, opts Options) *batchv1ac.CronJobApplyConfiguration {
	args := []string{"verify",
		"--coop=" + coop.Name,
		"--scratch-db=" + scratch,
		"--db-host=" + t.Host, fmt.Sprintf("--db-port=%d", t.Port), "--db-user=" + t.User, "--db-sslmode=" + t.SSLMode,
		"--s3-endpoint=" + t.Store.Endpoint, "--s3-region=" + t.Store.Region, "--s3-bucket=" + t.Store.Bucket, "--s3-prefix=" + t.Store.Prefix,
		fmt.Sprintf("--s3-insecure=%t", t.Store.Insecure), fmt.Sprintf("--s3-path-style=%t", t.Store.PathStyle),
	}
	pod := runnerPod(opts, "drill", args,
		append([]*corev1ac.EnvVarApplyConfiguration{secretEnv("PGPASSWORD", BackupName(coop), "password")}, storeKeyEnv(t.StoreSecret)...)...)
	// A failed drill is recorded and told; trying again at once would
	// find the same backup as it is.
	// BackupRunnerLabel lets the drill into a dedicated cluster.
	podLabels := Labels(coop)
	podLabels[BackupRunnerLabel] = coop.Name
	podLabels[RunnerLabel] = "drill"
	job := batchv1ac.JobSpec().
		WithBackoffLimit(0).
		WithActiveDeadlineSeconds(6 * 3600).
		WithTemplate(corev1ac.PodTemplateSpec().WithLabels(podLabels).WithSpec(pod))
	return batchv1ac.CronJob(DrillName(coop), opts.OperatorNamespace).
		WithLabels(Labels(coop)).
		WithOwnerReferences(OwnerReference(coop)).
		WithSpec(batchv1ac.CronJobSpec().
			WithSchedule(BackupSchedule(coop, schedule)).
			WithTimeZone("Etc/UTC").
			WithConcurrencyPolicy(batchv1.ForbidConcurrent).
			WithStartingDeadlineSeconds(3600).
			WithSuccessfulJobsHistoryLimit(1).
			WithFailedJobsHistoryLimit(1).
			WithJobTemplate(batchv1ac.JobTemplateSpec().WithLabels(Labels(coop)).WithSpec(job)))
}

package blueprint

import (
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"cooperator.dev/cooperator/api/v1alpha1"
)

var notNameChar = regexp.MustCompile(`[^a-z0-9-]+`)

// MigrationJobName is the Job that migrates an app to a version; one per
// version, so a finished migration is not run again.
func MigrationJobName(app, version string) string {
	v := strings.Trim(notNameChar.ReplaceAllString(strings.ToLower(version), "-"), "-")
	name := app + "-migrate-" + v
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	return name
}

// MigrationJob builds the Job that runs m's command in the pod template of
// its workload, as rendered for the new version, so the migration runs the
// new code against the coop's data before the new version serves.
func MigrationJob(objs []*unstructured.Unstructured, m *v1alpha1.BlueprintMigration, prefix, app, version string) (*unstructured.Unstructured, error) {
	var workload *unstructured.Unstructured
	for _, o := range objs {
		if (o.GetKind() == "Deployment" || o.GetKind() == "StatefulSet") && o.GetName() == prefix+m.Workload {
			workload = o
		}
	}
	if workload == nil {
		return nil, fmt.Errorf("spec.migration.workload: no Deployment or StatefulSet %q", m.Workload)
	}
	template, found, err := unstructured.NestedMap(workload.Object, "spec", "template")
	if err != nil || !found {
		return nil, fmt.Errorf("%s %s has no pod template", workload.GetKind(), workload.GetName())
	}
	containers, _, _ := unstructured.NestedSlice(template, "spec", "containers")
	var migrate map[string]any
	for _, c := range containers {
		if c, ok := c.(map[string]any); ok && c["name"] == m.Container {
			migrate = c
		}
	}
	if migrate == nil {
		return nil, fmt.Errorf("spec.migration.container: no container %q in %s", m.Container, m.Workload)
	}
	command := make([]any, len(m.Command))
	for i, c := range m.Command {
		command[i] = c
	}
	migrate["command"] = command
	delete(migrate, "args")
	// Probes and ports belong to a server, not to a run-once command.
	for _, k := range []string{"livenessProbe", "readinessProbe", "startupProbe", "ports"} {
		delete(migrate, k)
	}
	if err := unstructured.SetNestedSlice(template, []any{migrate}, "spec", "containers"); err != nil {
		return nil, err
	}
	if err := unstructured.SetNestedField(template, "Never", "spec", "restartPolicy"); err != nil {
		return nil, err
	}
	// A ReadWriteOnce volume the running version holds can be mounted only
	// on its node: the Job goes there when it can.
	if volumes, _, _ := unstructured.NestedSlice(template, "spec", "volumes"); usesClaims(volumes) {
		// The workload's own selector: other pods of the app, such as its
		// Redis, may be on other nodes.
		selector, _, _ := unstructured.NestedMap(workload.Object, "spec", "selector", "matchLabels")
		if _, found, _ := unstructured.NestedFieldNoCopy(template, "spec", "affinity", "podAffinity"); !found && len(selector) > 0 {
			term := map[string]any{
				"weight": int64(100),
				"podAffinityTerm": map[string]any{
					"labelSelector": map[string]any{"matchLabels": selector},
					"topologyKey":   "kubernetes.io/hostname",
				},
			}
			if err := unstructured.SetNestedSlice(template, []any{term}, "spec", "affinity", "podAffinity", "preferredDuringSchedulingIgnoredDuringExecution"); err != nil {
				return nil, err
			}
		}
	}
	// Only the operator's labels: with the workload's own, the app's
	// Service would send traffic to the migration's pod.
	if err := unstructured.SetNestedStringMap(template, operatorLabels(workload.GetLabels()), "metadata", "labels"); err != nil {
		return nil, err
	}
	job := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "batch/v1",
		"kind":       "Job",
		"metadata": map[string]any{
			"name":      MigrationJobName(app, version),
			"namespace": workload.GetNamespace(),
			"labels":    toAny(workload.GetLabels()),
		},
		"spec": map[string]any{
			"backoffLimit": int64(2),
			// A migration that hangs must not hold the upgrade for ever. The
			// Job stays as the record of the migration, and a failed one is
			// not run again until the version changes.
			"activeDeadlineSeconds": int64(3600),
			"template":              template,
		},
	}}
	return job, nil
}

func usesClaims(volumes []any) bool {
	for _, v := range volumes {
		if v, ok := v.(map[string]any); ok && v["persistentVolumeClaim"] != nil {
			return true
		}
	}
	return false
}

// operatorLabels are the labels of labels the operator puts on every object.
func operatorLabels(labels map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range labels {
		if k == v1alpha1.ManagedByLabel || strings.HasPrefix(k, v1alpha1.GroupVersion.Group+"/") {
			out[k] = v
		}
	}
	return out
}

// JobState is how far a Job has come.
type JobState int

// Job states.
const (
	JobRunning JobState = iota
	JobSucceeded
	JobFailed
)

// StateOf reads a Job's conditions.
func StateOf(job *unstructured.Unstructured) JobState {
	conditions, _, _ := unstructured.NestedSlice(job.Object, "status", "conditions")
	for _, c := range conditions {
		m, ok := c.(map[string]any)
		if !ok || m["status"] != "True" {
			continue
		}
		switch m["type"] {
		case "Complete":
			return JobSucceeded
		case "Failed":
			return JobFailed
		}
	}
	return JobRunning
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

package specs

import (
	"encoding/json"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

func TestVolumeSenderMountsTheClaimsReadOnlyAsTheAppsUser(t *testing.T) {
	coop := testCoop()
	opts := Options{OperatorNamespace: "cooperator-system", RunnerImage: "cooperator:1"}
	uid, gid := int64(33), int64(33)
	cj := VolumeSenderCronJob(coop, AppVolumes{App: "nextcloud", Claims: []string{"nextcloud-html", "nextcloud-data"},
		Selector: map[string]string{"cooperator.dev/app": "nextcloud"}, RunAsUser: &uid, FSGroup: &gid}, "0 2 * * *", opts)

	if *cj.Namespace != "coop-bakers" || *cj.Name != "cooperator-backup-nextcloud" {
		t.Errorf("sender is %s/%s", *cj.Namespace, *cj.Name)
	}
	if *cj.Spec.Schedule != BackupSchedule(coop, "0 2 * * *") {
		t.Errorf("schedule %q, want the runner's", *cj.Spec.Schedule)
	}
	pod := cj.Spec.JobTemplate.Spec.Template.Spec
	c := pod.Containers[0]
	wantArgs := []string{"send-volumes", "--to=http://backup-bakers.cooperator-system.svc:8080",
		"--volume=nextcloud-html=/volumes/nextcloud-html", "--volume=nextcloud-data=/volumes/nextcloud-data"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args %q, want %q", c.Args, wantArgs)
	}
	for _, m := range c.VolumeMounts {
		if m.ReadOnly == nil || !*m.ReadOnly {
			t.Errorf("mount %s is writable", *m.Name)
		}
	}
	for _, v := range pod.Volumes {
		if v.PersistentVolumeClaim == nil || !*v.PersistentVolumeClaim.ReadOnly {
			t.Errorf("volume %s is not a read-only claim", *v.Name)
		}
	}
	if *pod.SecurityContext.RunAsUser != 33 || *pod.SecurityContext.FSGroup != 33 || pod.SecurityContext.RunAsGroup != nil {
		t.Errorf("pod security context %+v, want the app's user and group", pod.SecurityContext)
	}
	term := pod.Affinity.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
	if term.LabelSelector.MatchLabels["cooperator.dev/app"] != "nextcloud" || *term.TopologyKey != corev1.LabelHostname {
		t.Errorf("affinity %+v, want the app's pods' node", term)
	}
	if c.Env[0].ValueFrom.SecretKeyRef.Name == nil || *c.Env[0].ValueFrom.SecretKeyRef.Name != VolumeTokenSecretName {
		t.Errorf("token env %+v", c.Env[0])
	}

	// The sender must be admitted in the coop's namespace.
	var spec corev1.PodSpec
	roundTrip(t, pod, &spec)
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range evaluator.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, &metav1.ObjectMeta{}, &spec) {
		if !r.Allowed {
			t.Errorf("Pod Security restricted: %s: %s", r.ForbiddenReason, r.ForbiddenDetail)
		}
	}
}

func TestVolumeSenderNamesStayShort(t *testing.T) {
	long := "an-app-with-a-name-long-enough-to-overflow-the-cronjob-limit"
	a, b := VolumeSenderName(long), VolumeSenderName(long+"x")
	if len(a) > 52 || a == b {
		t.Errorf("names %q and %q: want at most 52 characters and distinct", a, b)
	}
}

// roundTrip turns an apply configuration into the typed object it stands for.
func roundTrip(t *testing.T, from, into any) {
	t.Helper()
	data, err := json.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, into); err != nil {
		t.Fatal(err)
	}
}

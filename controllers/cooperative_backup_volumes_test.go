package controllers

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
	"cooperator.dev/cooperator/internal/backup"
	"cooperator.dev/cooperator/internal/specs"
	"cooperator.dev/cooperator/internal/testenv"
)

// volumeBlueprint is a web app whose Deployment mounts a claim "data".
func volumeBlueprint(t *testing.T, name string) *v1alpha1.Blueprint {
	bp := testBlueprint(t, name, func(f map[string]string) {
		web := strings.Replace(f["web.yaml"], "replicas: 2", "replicas: 1", 1)
		web = strings.Replace(web, "      containers:\n",
			"      volumes:\n      - name: data\n        persistentVolumeClaim: {claimName: data}\n      containers:\n", 1)
		web = strings.Replace(web, "        ports: [{containerPort: 8080}]\n",
			"        ports: [{containerPort: 8080}]\n        volumeMounts: [{name: data, mountPath: /data}]\n", 1)
		f["web.yaml"] = web
	})
	bp.Spec.Resources = append(bp.Spec.Resources, v1alpha1.BlueprintFile{Name: "data.yaml", Content: `apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 1Gi}
`})
	return bp
}

// envOf resolves a container's Secret-sourced variables, as the kubelet would.
func envOf(t *testing.T, namespace string, c corev1.Container) []string {
	t.Helper()
	env := os.Environ()
	for _, e := range c.Env {
		secret := &corev1.Secret{}
		mustGet(t, namespace, e.ValueFrom.SecretKeyRef.Name, secret)
		env = append(env, e.Name+"="+string(secret.Data[e.ValueFrom.SecretKeyRef.Key]))
	}
	return env
}

// replaceArg swaps the value of --name=... in args.
func replaceArg(args []string, name, value string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if strings.HasPrefix(a, "--"+name+"=") {
			out[i] = "--" + name + "=" + value
		}
	}
	return out
}

// An app's volumes are in the coop's scheduled backups: a sender in the
// coop's namespace, with the claims mounted read-only, streams them to the
// runner in the operator's namespace, where the store's keys stay.
func TestAppVolumesAreStreamedToTheBackupRunner(t *testing.T) {
	ctx := context.Background()
	s3, err := testenv.StartS3(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3.Remove)
	if err := s3.CreateBucket(ctx, "volume-backups"); err != nil {
		t.Fatal(err)
	}
	startOperator(t)
	keys := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: adminNamespace, Name: "volume-keys"},
		StringData: map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": s3.SecretKey},
	}
	store := &v1alpha1.BackupStore{
		ObjectMeta: metav1.ObjectMeta{Name: "volumes"},
		Spec: v1alpha1.BackupStoreSpec{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: "volume-backups", Insecure: true, PathStyle: true,
			CredentialsSecretRef: v1alpha1.SecretReference{Namespace: adminNamespace, Name: keys.Name}},
	}
	plan := newPlan("volume-plan")
	plan.Spec.Backup = v1alpha1.PlanBackup{Store: "volumes", Schedule: "0 3 * * *"}
	coop := newCoop("with-files", "volume-plan")
	coop.Spec.Apps = []v1alpha1.CooperativeApp{{Name: "files", Blueprint: "web-volume", Version: "1.0"}}
	// A second claim the Blueprint says holds nothing worth keeping.
	bp := volumeBlueprint(t, "web-volume")
	bp.Spec.Resources = append(bp.Spec.Resources, v1alpha1.BlueprintFile{Name: "cache.yaml", Content: `apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: cache
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 1Gi}
`})
	for i, f := range bp.Spec.Resources {
		if f.Name == "web.yaml" {
			f.Content = strings.Replace(f.Content, "persistentVolumeClaim: {claimName: data}\n",
				"persistentVolumeClaim: {claimName: data}\n      - name: cache\n        persistentVolumeClaim: {claimName: cache}\n", 1)
			f.Content = strings.Replace(f.Content, "volumeMounts: [{name: data, mountPath: /data}]",
				"volumeMounts: [{name: data, mountPath: /data}, {name: cache, mountPath: /cache}]", 1)
			bp.Spec.Resources[i] = f
		}
	}
	bp.Spec.Data = []v1alpha1.BlueprintData{
		{Claim: "data", Size: resource.MustParse("1Gi")},
		{Claim: "cache", Size: resource.MustParse("1Gi"), Backup: ptr.To(false)},
	}
	create(t, keys, store, bp, plan, coop)
	waitStore(t, "volumes", v1alpha1.ReachableReason)
	waitFor(t, 2*time.Minute, "the coop's volume in its backups", func(ctx context.Context) (bool, error) {
		if err := adminClient.Get(ctx, client.ObjectKey{Name: "with-files"}, coop); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(coop.Status.Conditions, v1alpha1.BackupsReadyCondition)
		if c != nil && strings.Contains(c.Message, "databases and ") && !strings.Contains(c.Message, "databases and 1 volumes") {
			return false, errors.New("BackupsReady says " + c.Message + ", want the one volume backed up")
		}
		return c != nil && strings.Contains(c.Message, "databases and 1 volumes"), nil
	})

	// The runner waits for the claim, behind a Service for its coop.
	runnerJob := &batchv1.CronJob{}
	mustGet(t, adminNamespace, specs.BackupName(coop), runnerJob)
	runnerPod := runnerJob.Spec.JobTemplate.Spec.Template
	if !slices.Contains(runnerPod.Spec.Containers[0].Args, "--remote-volume=files-data") || runnerPod.Labels[specs.BackupRunnerLabel] != "with-files" ||
		slices.Contains(runnerPod.Spec.Containers[0].Args, "--remote-volume=files-cache") {
		t.Errorf("runner: args %v, labels %v", runnerPod.Spec.Containers[0].Args, runnerPod.Labels)
	}
	svc := &corev1.Service{}
	mustGet(t, adminNamespace, specs.BackupName(coop), svc)
	if svc.Spec.Selector[specs.BackupRunnerLabel] != "with-files" {
		t.Errorf("runner Service selects %v", svc.Spec.Selector)
	}
	policy := &networkingv1.NetworkPolicy{}
	mustGet(t, "coop-with-files", specs.AllowToBackupRunner, policy)

	// The sender runs in the coop's namespace, as the app's user, with the
	// claim read-only, on the runner's schedule.
	sender := &batchv1.CronJob{}
	mustGet(t, "coop-with-files", specs.VolumeSenderName("files"), sender)
	assertControlledBy(t, sender, coop)
	senderPod := sender.Spec.JobTemplate.Spec.Template.Spec
	if sender.Spec.Schedule != runnerJob.Spec.Schedule || *senderPod.SecurityContext.RunAsUser != 1000 ||
		senderPod.Volumes[0].PersistentVolumeClaim.ClaimName != "files-data" || !senderPod.Volumes[0].PersistentVolumeClaim.ReadOnly {
		t.Errorf("sender: schedule %q (runner %q), pod %+v", sender.Spec.Schedule, runnerJob.Spec.Schedule, senderPod)
	}
	runnerToken, senderToken := &corev1.Secret{}, &corev1.Secret{}
	mustGet(t, adminNamespace, specs.VolumeTokenSecretOfRunner(coop), runnerToken)
	mustGet(t, "coop-with-files", specs.VolumeTokenSecretName, senderToken)
	if len(runnerToken.Data["token"]) < 32 || !bytes.Equal(runnerToken.Data["token"], senderToken.Data["token"]) {
		t.Errorf("the runner and the sender do not share one token")
	}

	// Run both commands, as their pods would, on loopback.
	files := t.TempDir()
	if err := os.MkdirAll(filepath.Join(files, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, "docs", "minutes.txt"), []byte("general assembly, 2026"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	operator := operatorBinary(t)
	runnerCmd := exec.Command(operator, replaceArg(runnerPod.Spec.Containers[0].Args, "listen", addr)...)
	runnerCmd.Env = envOf(t, adminNamespace, runnerPod.Spec.Containers[0])
	var runnerOut bytes.Buffer
	runnerCmd.Stdout, runnerCmd.Stderr = &runnerOut, &runnerOut
	if err := runnerCmd.Start(); err != nil {
		t.Fatal(err)
	}
	senderArgs := replaceArg(replaceArg(senderPod.Containers[0].Args, "to", "http://"+addr), "volume", "files-data="+files)
	senderCmd := exec.Command(operator, senderArgs...)
	senderCmd.Env = envOf(t, "coop-with-files", senderPod.Containers[0])
	if out, err := senderCmd.CombinedOutput(); err != nil {
		t.Errorf("the sender failed: %v\n%s", err, out)
	}
	if err := runnerCmd.Wait(); err != nil {
		t.Fatalf("the runner failed: %v\n%s", err, runnerOut.String())
	}

	c, err := backup.Open(backup.Store{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: "volume-backups",
		AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Latest(ctx, "with-files")
	if err != nil || m == nil {
		t.Fatalf("no backup of the coop: %v", err)
	}
	restored := t.TempDir()
	if _, err := c.Restore(ctx, backup.RestoreOptions{Coop: "with-files", ID: m.ID, Volumes: []backup.Volume{{Name: "files-data", Path: restored}}}); err != nil {
		t.Fatalf("restoring the volume: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(restored, "docs", "minutes.txt")); err != nil || string(got) != "general assembly, 2026" {
		t.Errorf("restored file: %q, %v", got, err)
	}

	// A plan without backups takes the sender, its token and the Service away.
	mustGet(t, "", "volume-plan", plan)
	plan.Spec.Backup.Store = ""
	if err := adminClient.Update(ctx, plan); err != nil {
		t.Fatal(err)
	}
	backupsReason(t, "with-files", v1alpha1.BackupsNotRequestedReason)
	for _, obj := range []client.Object{
		&batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: "coop-with-files", Name: specs.VolumeSenderName("files")}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: adminNamespace, Name: specs.BackupName(coop)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "coop-with-files", Name: specs.VolumeTokenSecretName}},
	} {
		waitFor(t, 30*time.Second, obj.GetName()+" to go", func(ctx context.Context) (bool, error) {
			err := adminClient.Get(ctx, client.ObjectKeyFromObject(obj), obj)
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
	}
}

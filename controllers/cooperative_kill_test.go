package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"cooperator.dev/cooperator/api/v1alpha1"
)

// TestOperatorKilledWhileCreatingCoops kills the operator's real binary with
// SIGKILL at random moments while 50 coops are created, starts it again,
// and checks that every coop converges with exactly its own children.
func TestOperatorKilledWhileCreatingCoops(t *testing.T) {
	const coops = 50
	ctx := context.Background()
	binary := operatorBinary(t)
	kubeconfig := writeOperatorKubeconfig(t)

	create(t, newPlan("kill-plan"))
	done := make(chan error, 1)
	go func() {
		for i := range coops {
			if err := adminClient.Create(ctx, newCoop(fmt.Sprintf("kill-%02d", i), "kill-plan")); err != nil {
				done <- err
				return
			}
			// Spread over the kill rounds below.
			time.Sleep(time.Duration(50+rand.IntN(100)) * time.Millisecond)
		}
		done <- nil
	}()

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("kill schedule seed %d", seed)
	for round := range 5 {
		op := startOperatorProcess(t, binary, kubeconfig, round)
		time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
		if err := op.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = op.Wait()
	}
	if err := <-done; err != nil {
		t.Fatalf("creating coops: %v", err)
	}
	op := startOperatorProcess(t, binary, kubeconfig, 99)
	defer func() {
		_ = op.Process.Signal(syscall.SIGTERM)
		_ = op.Wait()
	}()

	waitFor(t, 120*time.Second, "all 50 coops Ready", func(ctx context.Context) (bool, error) {
		var list v1alpha1.CooperativeList
		if err := adminClient.List(ctx, &list); err != nil {
			return false, err
		}
		ready := 0
		for _, c := range list.Items {
			if strings.HasPrefix(c.Name, "kill-") && meta.IsStatusConditionTrue(c.Status.Conditions, v1alpha1.ReadyCondition) &&
				c.Status.ObservedGeneration == c.Generation {
				ready++
			}
		}
		return ready == coops, nil
	})

	// Exactly one of each child per coop, each controlled by its coop, and
	// nothing the operator labelled that no coop owns.
	var list v1alpha1.CooperativeList
	if err := adminClient.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	uids := map[string]string{}
	for _, c := range list.Items {
		uids[c.Name] = string(c.UID)
	}
	kinds := map[string]struct {
		list client.ObjectList
		per  int
	}{
		"Namespace":     {&corev1.NamespaceList{}, 1},
		"ResourceQuota": {&corev1.ResourceQuotaList{}, 1},
		"LimitRange":    {&corev1.LimitRangeList{}, 1},
		"NetworkPolicy": {&networkingv1.NetworkPolicyList{}, 5},
		"RoleBinding":   {&rbacv1.RoleBindingList{}, 1},
		// The member role; the admins' ClusterRole is shared by every coop.
		"ClusterRole":        {&rbacv1.ClusterRoleList{}, 1},
		"ClusterRoleBinding": {&rbacv1.ClusterRoleBindingList{}, 1},
	}
	for kind, k := range kinds {
		if err := adminClient.List(ctx, k.list, client.HasLabels{v1alpha1.CooperativeLabel}); err != nil {
			t.Fatal(err)
		}
		perCoop := map[string]int{}
		items, err := meta.ExtractList(k.list)
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range items {
			o := item.(client.Object)
			name := o.GetLabels()[v1alpha1.CooperativeLabel]
			if !strings.HasPrefix(name, "kill-") {
				continue
			}
			perCoop[name]++
			owner := metav1.GetControllerOf(o)
			if owner == nil || string(owner.UID) != uids[name] {
				t.Errorf("%s %s/%s is orphaned: controller %+v, coop %s has UID %q", kind, o.GetNamespace(), o.GetName(), owner, name, uids[name])
			}
		}
		for i := range coops {
			name := fmt.Sprintf("kill-%02d", i)
			if perCoop[name] != k.per {
				t.Errorf("coop %s has %d %s objects, want %d", name, perCoop[name], kind, k.per)
			}
		}
	}
}

// writeOperatorKubeconfig writes a kubeconfig that acts as the operator's identity.
func writeOperatorKubeconfig(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	cfg.AuthInfos["operator"] = &clientcmdapi.AuthInfo{Token: env.Config.BearerToken, Impersonate: operatorUser}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "operator"}
	cfg.CurrentContext = "local"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func startOperatorProcess(t *testing.T, binary, kubeconfig string, round int) *exec.Cmd {
	t.Helper()
	logPath := filepath.Join(env.Dir, fmt.Sprintf("operator-%d.log", round))
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logFile.Close() })
	cmd := exec.Command(binary, "manager", "--metrics-bind-address=0", "--health-probe-bind-address=0")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

package install

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestChartCopiesMatchConfig: the chart's CRDs, ClusterRole rules and
// webhooks are copies of config/'s, written by hack/sync-chart.sh; a stale
// copy would install an operator other than the one config/ describes.
func TestChartCopiesMatchConfig(t *testing.T) {
	pairs := map[string]string{
		"config/rbac/role.yaml":         "charts/cooperator/files/manager-role.yaml",
		"config/webhook/manifests.yaml": "charts/cooperator/files/webhook-manifests.yaml",
	}
	bases, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(bases) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	for _, path := range bases {
		pairs["config/crd/bases/"+filepath.Base(path)] = "charts/cooperator/crds/" + filepath.Base(path)
	}
	copies, err := filepath.Glob(filepath.Join(root, "charts", "cooperator", "crds", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range copies {
		rel := "charts/cooperator/crds/" + filepath.Base(path)
		if !slices.Contains(mapValues(pairs), rel) {
			t.Errorf("%s has no source in config/crd/bases: run hack/sync-chart.sh", rel)
		}
	}
	for source, copied := range pairs {
		want, err := os.ReadFile(filepath.Join(root, source))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root, copied))
		if err != nil {
			t.Errorf("%s is missing: run hack/sync-chart.sh", copied)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s: run hack/sync-chart.sh", copied, source)
		}
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

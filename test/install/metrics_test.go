package install

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"cooperator.dev/cooperator/internal/metrics"
)

// TestHelmTemplateMetrics: with the ServiceMonitor and the dashboard on,
// Prometheus finds the operator's metrics port through the metrics Service,
// and Grafana's sidecar finds the dashboard. The ServiceMonitor CRD is not
// installed here, so the chart is only rendered.
func TestHelmTemplateMetrics(t *testing.T) {
	objs, err := render(t, map[string]any{
		// The webhook Service must not be scraped.
		"webhook": map[string]any{"enabled": true},
		"metrics": map[string]any{
			"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}},
			"dashboard":      map[string]any{"enabled": true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, c := deployment(t, objs)
	monitor := find(t, objs, "ServiceMonitor")
	if monitor.GetAPIVersion() != "monitoring.coreos.com/v1" {
		t.Errorf("want a monitoring.coreos.com/v1 ServiceMonitor, got %s", monitor.GetAPIVersion())
	}
	if got := monitor.GetLabels()["release"]; got != "kube-prometheus-stack" {
		t.Errorf("want the ServiceMonitor labelled release=kube-prometheus-stack from values, got %q", got)
	}
	matchLabels, _, _ := unstructured.NestedStringMap(monitor.Object, "spec", "selector", "matchLabels")
	selector := labels.SelectorFromSet(matchLabels)
	var selected []corev1.Service
	for _, o := range objs {
		if o.GetKind() == "Service" && selector.Matches(labels.Set(o.GetLabels())) {
			svc := corev1.Service{}
			into(t, o, &svc)
			selected = append(selected, svc)
		}
	}
	if len(selected) != 1 || selected[0].Name != "coop-cooperator-metrics" {
		t.Fatalf("want the ServiceMonitor to select only Service coop-cooperator-metrics, it selects %d", len(selected))
	}
	endpoints, _, _ := unstructured.NestedSlice(monitor.Object, "spec", "endpoints")
	if len(endpoints) != 1 {
		t.Fatalf("want one endpoint, got %v", endpoints)
	}
	port, _ := endpoints[0].(map[string]any)["port"].(string)
	var target string
	for _, p := range selected[0].Spec.Ports {
		if p.Name == port {
			target = p.TargetPort.String()
		}
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == target && p.ContainerPort == 8080 }) {
		t.Errorf("the ServiceMonitor's port %q leads to the pod's port %q, want the manager's metrics port 8080 (%v)", port, target, c.Ports)
	}
	if !slices.Contains(c.Args, "--metrics-bind-address=:8080") {
		t.Errorf("want the manager to serve metrics on :8080, got %v", c.Args)
	}

	dashboard := findNamed(t, objs, "ConfigMap", "coop-cooperator-dashboard")
	if got := dashboard.GetLabels()["grafana_dashboard"]; got != "1" {
		t.Errorf("want the dashboard ConfigMap labelled grafana_dashboard=1, got %q", got)
	}
	data, _, _ := unstructured.NestedString(dashboard.Object, "data", "cooperator.json")
	var parsed struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(data), &parsed); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if parsed.UID == "" || len(parsed.Panels) == 0 {
		t.Fatalf("want a dashboard with a uid and panels, got %+v", parsed)
	}
	// Every metric the dashboard queries is one the operator exports.
	name := regexp.MustCompile(`cooperator_[a-z_]+`)
	for _, p := range parsed.Panels {
		for _, target := range p.Targets {
			for _, m := range name.FindAllString(target.Expr, -1) {
				if !slices.Contains(metrics.Names, m) {
					t.Errorf("panel %q queries %s, which the operator does not export", p.Title, m)
				}
			}
			if strings.TrimSpace(target.Expr) == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
		}
	}
}

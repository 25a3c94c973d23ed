package controllers

import (
	"context"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// coopGauges gathers the operator's metrics as Prometheus would scrape
// them, and returns the values of one coop's gauges by metric name, then by
// the rest of their labels ("" when they have none but cooperative).
func coopGauges(t *testing.T, coop string) map[string]map[string]float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	out := map[string]map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var mine bool
			key := ""
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "cooperative":
					mine = l.GetValue() == coop
				case "plan":
				default:
					key += l.GetName() + "=" + l.GetValue()
				}
			}
			if !mine || m.GetGauge() == nil {
				continue
			}
			if out[f.GetName()] == nil {
				out[f.GetName()] = map[string]float64{}
			}
			out[f.GetName()][key] = m.GetGauge().GetValue()
		}
	}
	return out
}

func planLabel(t *testing.T, coop, metric string) string {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != metric {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m, "cooperative") == coop {
				return labelValue(m, "plan")
			}
		}
	}
	return ""
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestMetricsOfAReadyCoop(t *testing.T) {
	startOperator(t)
	create(t, newPlan("metrics-plan"), newCoop("metrics-coop", "metrics-plan"))
	waitReady(t, "metrics-coop")

	// The cache may lag the API server by a moment.
	var gauges map[string]map[string]float64
	waitFor(t, 10*time.Second, "the coop's ready gauge", func(context.Context) (bool, error) {
		gauges = coopGauges(t, "metrics-coop")
		return gauges["cooperator_cooperative_ready"][""] == 1, nil
	})
	if got := planLabel(t, "metrics-coop", "cooperator_cooperative_ready"); got != "metrics-plan" {
		t.Errorf("want the ready gauge labelled plan=metrics-plan, got %q", got)
	}
	if got, ok := gauges["cooperator_cooperative_condition"]["type=NamespaceReady"]; !ok || got != 1 {
		t.Errorf("want cooperator_cooperative_condition{type=NamespaceReady} 1, got %v (present: %v)", got, ok)
	}
	// newPlan: 2 cores, 4Gi of memory, 10Gi of storage, 20 pods.
	want := map[string]float64{"resource=cpu": 2, "resource=memory": 4 << 30, "resource=storage": 10 << 30, "resource=pods": 20}
	for r, v := range want {
		if got, ok := gauges["cooperator_cooperative_quota"][r]; !ok || got != v {
			t.Errorf("want cooperator_cooperative_quota{%s} %v, the plan's, got %v (present: %v)", r, v, got, ok)
		}
	}
	if _, ok := gauges["cooperator_cooperative_last_backup_timestamp_seconds"]; ok {
		t.Errorf("the coop has no backup, yet its last backup time is exported")
	}
	if got := gauges["cooperator_cooperative_backup_stale"][""]; got != 0 {
		t.Errorf("a new coop without a backup store: want backup_stale 0, got %v", got)
	}
	// The quota controller counts the empty namespace's pods: none.
	waitFor(t, 30*time.Second, "the coop's used pods", func(context.Context) (bool, error) {
		v, ok := coopGauges(t, "metrics-coop")["cooperator_cooperative_quota_used"]["resource=pods"]
		return ok && v == 0, nil
	})
}

package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestRequestDifferences(t *testing.T) {
	floor := map[string]float64{"POST secrets": 2000, "PUT deployments/status": 3900, "GET namespaces": 10}
	pass := map[string]float64{"POST secrets": 2000, "PUT deployments/status": 4200, "GET namespaces": 1010, "PATCH cooperatives/status": 2000}
	got := requestDifferences(floor, pass, 2)
	want := []string{"PATCH cooperatives/status 0 / 2000", "GET namespaces 10 / 1010"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("requestDifferences = %q, want %q", got, want)
	}
	if all := requestDifferences(floor, pass, 10); len(all) != 3 {
		t.Fatalf("equal counts must be left out: %q", all)
	}
}

func TestProcessRow(t *testing.T) {
	r := run{
		CPUByProcess:      map[string]float64{"kube-apiserver": 102, "etcd": 20, "bench": 15},
		APIServerRequests: map[string]float64{"POST secrets": 2000, "GET namespaces": 10},
	}
	row := processRow("floor", r, "")
	for _, cell := range []string{"| floor |", "| 102.0 s |", "| 20.0 s |", "| 0.0 s |", "| 15.0 s |", "| – |", "| 2010 |"} {
		if !strings.Contains(row, cell) {
			t.Errorf("row %q lacks %q", row, cell)
		}
	}
	if got, want := strings.Count(row, "|"), len(meteredProcesses)+5; got != want {
		t.Errorf("row %q has %d bars, want %d", row, got, want)
	}
}

func TestOperatorCounts(t *testing.T) {
	all := map[string]float64{
		"POST secrets": 2000, "POST pods": 1000, "APPLY deployments": 3,
		"PATCH cooperatives/status": 2000, "POST cooperatives": 1000, "GET cooperatives": 16, "WATCH cooperatives": 4,
	}
	got := operatorCounts(all, map[string]bool{"secrets": true})
	want := map[string]float64{"POST secrets": 2000, "APPLY deployments": 3, "PATCH cooperatives/status": 2000, "POST cooperatives": 1000}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("operatorCounts = %v, want %v", got, want)
	}
}

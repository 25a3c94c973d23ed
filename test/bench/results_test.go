package main

import (
	"strings"
	"testing"
)

func TestPeakRSSGoalTakesTheHighestRestart(t *testing.T) {
	goal := func(passA float64, restarts ...float64) goalResult {
		r := &results{N: 1000, Objects: make([]string, 18)}
		r.Floor.AllReadySeconds, r.Operator.AllReadySeconds = 80, 120
		r.Operator.PeakRSSMiB = passA
		for _, p := range restarts {
			r.Resync.PeakRSSMiB = max(r.Resync.PeakRSSMiB, p)
			r.Resync.PeakRSSMiBByRound = append(r.Resync.PeakRSSMiBByRound, p)
		}
		r.Unrelated.Resync.PeakRSSMiB = restarts[0]
		r.evaluate()
		for _, g := range r.Goals {
			if strings.HasPrefix(g.Goal, "operator peak RSS") {
				return g
			}
		}
		t.Fatal("no peak RSS goal")
		return goalResult{}
	}
	if g := goal(138.1, 145.5, 145.3, 145.8); !g.Met || !strings.Contains(g.Value, "145.8 MiB at resync (highest of 3 restarts)") {
		t.Errorf("all under 150: %+v", g)
	}
	if g := goal(138.1, 145.5, 151.2, 145.8); g.Met {
		t.Errorf("one restart over 150 must fail the goal: %+v", g)
	}
	if g := goal(150.5, 140.0); g.Met || !strings.Contains(g.Value, "(one restart)") {
		t.Errorf("pass A over 150 must fail the goal: %+v", g)
	}
}

func TestPeaks(t *testing.T) {
	if got, want := peaks([]float64{145.52, 143.7}), "145.5, 143.7 MiB"; got != want {
		t.Errorf("peaks = %q, want %q", got, want)
	}
}

package backup

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSelect(t *testing.T) {
	at := func(s string) string {
		tm, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return NewID(tm)
	}
	ids := func(ss ...string) []string {
		var out []string
		for _, s := range ss {
			out = append(out, at(s))
		}
		return out
	}
	// Monday 2026-11-30; Sunday 2026-11-29 ends ISO week 48.
	history := ids(
		"2026-09-15 03:00", "2026-10-01 03:00", "2026-10-31 03:00",
		"2026-11-22 03:00", "2026-11-23 03:00",
		"2026-11-28 03:00", "2026-11-29 03:00", "2026-11-29 15:00",
		"2026-11-30 03:00", "2026-11-30 15:00",
	)
	for _, tc := range []struct {
		name   string
		ids    []string
		policy Policy
		keep   []string
	}{
		{"empty policy keeps all", history, Policy{}, history},
		{"no backups", nil, Policy{KeepDaily: 7}, nil},
		{"one daily is the newest", history, Policy{KeepDaily: 1}, ids("2026-11-30 15:00")},
		{"daily keeps each day's newest", history, Policy{KeepDaily: 3},
			ids("2026-11-28 03:00", "2026-11-29 15:00", "2026-11-30 15:00")},
		{"days without backups do not count", history, Policy{KeepDaily: 5},
			ids("2026-11-22 03:00", "2026-11-23 03:00", "2026-11-28 03:00", "2026-11-29 15:00", "2026-11-30 15:00")},
		{"weekly by ISO week, Monday first", history, Policy{KeepWeekly: 3},
			ids("2026-11-22 03:00", "2026-11-29 15:00", "2026-11-30 15:00")},
		{"monthly", history, Policy{KeepMonthly: 3},
			ids("2026-09-15 03:00", "2026-10-31 03:00", "2026-11-30 15:00")},
		{"rules add up", history, Policy{KeepDaily: 2, KeepWeekly: 2, KeepMonthly: 2},
			ids("2026-10-31 03:00", "2026-11-29 15:00", "2026-11-30 15:00")},
		{"more than there is keeps all", history, Policy{KeepDaily: 100, KeepMonthly: 100},
			ids("2026-09-15 03:00", "2026-10-01 03:00", "2026-10-31 03:00", "2026-11-22 03:00", "2026-11-23 03:00",
				"2026-11-28 03:00", "2026-11-29 15:00", "2026-11-30 15:00")},
		{"foreign ids are kept", append([]string{"latest"}, history...), Policy{KeepDaily: 1},
			[]string{"latest", at("2026-11-30 15:00")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep, drop := Select(tc.ids, tc.policy)
			if len(keep)+len(drop) != len(tc.ids) {
				t.Errorf("kept %d and dropped %d of %d", len(keep), len(drop), len(tc.ids))
			}
			if got, want := sorted(keep), sorted(tc.keep); got != want {
				t.Errorf("kept\n  %s\nwant\n  %s", got, want)
			}
		})
	}
}

func sorted(ids []string) string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestPolicyValidate(t *testing.T) {
	if err := (Policy{KeepWeekly: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "keep-weekly") {
		t.Errorf("a negative keep-weekly gave %v", err)
	}
}

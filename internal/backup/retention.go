package backup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Policy says which backups to keep: the newest backup of each of the
// last KeepDaily days, KeepWeekly ISO weeks and KeepMonthly months that
// have one, in UTC. A backup kept by any rule is kept.
type Policy struct {
	KeepDaily   int
	KeepWeekly  int
	KeepMonthly int
}

// Validate refuses negative counts, naming the field.
func (p Policy) Validate() error {
	switch {
	case p.KeepDaily < 0:
		return fmt.Errorf("keep-daily %d is negative", p.KeepDaily)
	case p.KeepWeekly < 0:
		return fmt.Errorf("keep-weekly %d is negative", p.KeepWeekly)
	case p.KeepMonthly < 0:
		return fmt.Errorf("keep-monthly %d is negative", p.KeepMonthly)
	}
	return nil
}

// IsZero is a policy that says nothing; it keeps everything.
func (p Policy) IsZero() bool { return p == Policy{} }

// Select splits backup ids into those the policy keeps and those it does
// not, both newest first. Ids that do not parse are kept: they are not
// this runner's to judge. A zero policy keeps everything.
func Select(ids []string, p Policy) (keep, drop []string) {
	type backup struct {
		id string
		t  time.Time
	}
	var all []backup
	for _, id := range ids {
		t, err := ParseID(id)
		if err != nil || p.IsZero() {
			keep = append(keep, id)
			continue
		}
		all = append(all, backup{id, t})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].t.After(all[j].t) })

	rules := []struct {
		n      int
		period func(time.Time) string
	}{
		{p.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{p.KeepWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{p.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") }},
	}
	kept := make([]bool, len(all))
	for _, r := range rules {
		last, left := "", r.n
		for i, b := range all {
			if left == 0 {
				break
			}
			// Newest first: the first backup of a period is its newest.
			if period := r.period(b.t); period != last {
				kept[i] = true
				last = period
				left--
			}
		}
	}
	for i, b := range all {
		if kept[i] {
			keep = append(keep, b.id)
		} else {
			drop = append(drop, b.id)
		}
	}
	return keep, drop
}

// orphanAge is how old a backup without a manifest must be before Prune
// removes it: younger ones may still be being written.
const orphanAge = 24 * time.Hour

// Prune removes the backups of a coop the policy does not keep, each
// manifest first, and what failed backups left behind. It returns the
// ids it removed.
func (c *Client) Prune(ctx context.Context, coop string, p Policy, now time.Time) ([]string, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.IsZero() {
		return nil, errors.New("a retention policy needs keep-daily, keep-weekly or keep-monthly; refusing to remove every backup")
	}
	all, err := c.listAll(ctx, coop)
	if err != nil {
		return nil, err
	}
	var ids []string
	for id, hasManifest := range all {
		if hasManifest {
			ids = append(ids, id)
			continue
		}
		if t, _ := ParseID(id); now.Sub(t) > orphanAge {
			if err := c.removeBackup(ctx, coop, id); err != nil {
				return nil, err
			}
		}
	}
	_, drop := Select(ids, p)
	var removed []string
	for _, id := range drop {
		if err := c.removeBackup(ctx, coop, id); err != nil {
			return removed, err
		}
		removed = append(removed, id)
	}
	return removed, nil
}

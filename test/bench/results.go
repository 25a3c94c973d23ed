package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"cooperator.dev/cooperator/controllers"
)

type results struct {
	Date    string `json:"date"`
	Command string `json:"command"`
	N       int    `json:"n"`
	Machine host   `json:"machine"`
	// MemoryLimit is the container memory limit the operator ran as if
	// under, when one was given.
	MemoryLimit string `json:"memoryLimit,omitempty"`
	// GOGC is the operator's: its own default unless the environment set one.
	GOGC string `json:"gogc"`
	// OperatorIdentity is whose credentials the operator ran with.
	OperatorIdentity string `json:"operatorIdentity"`
	// Objects are what each contender makes per tenant, as kind/name.
	Objects []string `json:"objectsPerTenant"`
	Floor   run      `json:"floor"`
	// FloorRounds are the floor's later rounds (-floor-rounds), each on
	// the cluster the earlier ones filled.
	FloorRounds []run        `json:"floorRounds,omitempty"`
	Operator    operatorRun  `json:"operator"`
	Resync      resync       `json:"resync"`
	Unrelated   unrelated    `json:"unrelated"`
	Databases   *databases   `json:"databases"`
	Helm        *run         `json:"helm,omitempty"`
	HelmVersion string       `json:"helmVersion,omitempty"`
	Ratios      ratios       `json:"ratios"`
	Goals       []goalResult `json:"goals"`
}

type host struct {
	Cores      int    `json:"cores"`
	LoadBefore string `json:"loadAverageBefore"`
	LoadAfter  string `json:"loadAverageAfter"`
}

type unrelated struct {
	Secrets int    `json:"secrets"`
	Pods    int    `json:"pods"`
	Resync  resync `json:"resync"`
	// RSSDeltaMiB is the resync's peak RSS with them less without them.
	RSSDeltaMiB float64 `json:"rssDeltaMiB"`
}

type databases struct {
	operatorRun
	DDLPerDatabase float64 `json:"ddlPerDatabase"`
}

type ratios struct {
	OperatorToFloor float64 `json:"operatorToFloor"`
	HelmToOperator  float64 `json:"helmToOperator,omitempty"`
}

type goalResult struct {
	Goal  string `json:"goal"`
	Value string `json:"value"`
	Met   bool   `json:"met"`
}

func machine() host {
	return host{Cores: runtime.NumCPU(), LoadBefore: loadAverage()}
}

// evaluate computes the ratios and checks the goals.
func (r *results) evaluate() {
	r.Ratios.OperatorToFloor = round(r.Operator.AllReadySeconds / r.Floor.AllReadySeconds)
	objects := float64(len(r.Objects))
	r.Goals = []goalResult{
		{Goal: fmt.Sprintf("%d coops Ready within 1.2 times the floor", r.N),
			Value: fmt.Sprintf("%.2f (%.1f s against %.1f s)", r.Ratios.OperatorToFloor, r.Operator.AllReadySeconds, r.Floor.AllReadySeconds),
			Met:   r.Ratios.OperatorToFloor <= 1.2},
		{Goal: fmt.Sprintf("write requests per coop, status included, at most objects + 2 = %.0f", objects+2),
			Value: fmt.Sprintf("%.2f (%.2f of them events)", r.Operator.WritesPerCoop, r.Operator.EventsPerCoop),
			Met:   r.Operator.WritesPerCoop <= objects+2},
	}
	if r.Helm != nil {
		r.Ratios.HelmToOperator = round(r.Helm.AllReadySeconds / r.Operator.AllReadySeconds)
		r.Goals = append(r.Goals, goalResult{Goal: "5 times faster than Helm-per-coop or better",
			Value: fmt.Sprintf("%.2f (%.1f s against %.1f s)", r.Ratios.HelmToOperator, r.Helm.AllReadySeconds, r.Operator.AllReadySeconds),
			Met:   r.Ratios.HelmToOperator >= 5})
	}
	r.Goals = append(r.Goals,
		goalResult{Goal: "0 mutating requests in a resync of unchanged coops",
			Value: fmt.Sprintf("%.0f, and %.0f with unrelated objects", r.Resync.MutatingRequests, r.Unrelated.Resync.MutatingRequests),
			Met:   r.Resync.MutatingRequests == 0 && r.Unrelated.Resync.MutatingRequests == 0},
		// Both hold 1,000 coops: the goal is the higher.
		goalResult{Goal: fmt.Sprintf("operator peak RSS at most 150 MiB at %d coops", r.N),
			Value: fmt.Sprintf("%.1f MiB in pass A, %.1f MiB at resync (%s)", r.Operator.PeakRSSMiB, r.Resync.PeakRSSMiB, restarts(len(r.Resync.PeakRSSMiBByRound))),
			Met:   max(r.Operator.PeakRSSMiB, r.Resync.PeakRSSMiB) <= 150},
		goalResult{Goal: fmt.Sprintf("%d unrelated Secrets and %d Pods add at most 10 MiB", r.Unrelated.Secrets, r.Unrelated.Pods),
			Value: fmt.Sprintf("%+.1f MiB (%.1f against %.1f MiB at the first resync)", r.Unrelated.RSSDeltaMiB, r.Unrelated.Resync.PeakRSSMiB, r.Resync.PeakRSSMiBByRound[0]),
			Met:   r.Unrelated.RSSDeltaMiB <= 10},
	)
}

func (r *results) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Scale benchmark: %d coops\n\n", r.N)
	fmt.Fprintf(&b, "`%s`, %s, %d cores, load average %s before and %s after.\n\n", r.Command, r.Date, r.Machine.Cores, r.Machine.LoadBefore, r.Machine.LoadAfter)
	if r.MemoryLimit != "" {
		fmt.Fprintf(&b, "The operator ran as under a container memory limit of %s: GOMEMLIMIT at %.0f%% of it, as it sets itself from its cgroup.\n\n", r.MemoryLimit, controllers.MemoryLimitRatio*100)
	}
	fmt.Fprintf(&b, "The operator's GOGC: %s. Its identity: %s.\n\n", r.GOGC, r.OperatorIdentity)
	fmt.Fprintf(&b, "Each tenant: %d objects (%s).\n\n", len(r.Objects), strings.Join(r.Objects, ", "))
	b.WriteString("| contender | all Ready | p50 | p99 | ratio | API server and etcd CPU |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| floor: client-go, unthrottled | %.1f s | %.2f s | %.2f s | 1 | %.1f s |\n", r.Floor.AllReadySeconds, r.Floor.P50Seconds, r.Floor.P99Seconds, r.Floor.ServerCPUSeconds)
	for i, f := range r.FloorRounds {
		fmt.Fprintf(&b, "| floor, round %d, on the cluster the earlier rounds filled | %.1f s | %.2f s | %.2f s | %.2f × round 1 | %.1f s |\n", i+2, f.AllReadySeconds, f.P50Seconds, f.P99Seconds, round(f.AllReadySeconds/r.Floor.AllReadySeconds), f.ServerCPUSeconds)
	}
	fmt.Fprintf(&b, "| operator | %.1f s | %.2f s | %.2f s | %.2f × floor | %.1f s |\n", r.Operator.AllReadySeconds, r.Operator.P50Seconds, r.Operator.P99Seconds, r.Ratios.OperatorToFloor, r.Operator.ServerCPUSeconds)
	if r.Helm != nil {
		fmt.Fprintf(&b, "| helm install per tenant (%s) | %.1f s | %.2f s | %.2f s | %.2f × operator | %.1f s |\n", r.HelmVersion, r.Helm.AllReadySeconds, r.Helm.P50Seconds, r.Helm.P99Seconds, r.Ratios.HelmToOperator, r.Helm.ServerCPUSeconds)
	}
	if d := r.Databases; d != nil {
		fmt.Fprintf(&b, "| operator, shared databases on PostgreSQL (apart) | %.1f s | %.2f s | %.2f s | | %.1f s |\n", d.AllReadySeconds, d.P50Seconds, d.P99Seconds, d.ServerCPUSeconds)
	}
	b.WriteString("\n| operator | CPU | peak RSS | writes per coop | reconciles per coop | requests by verb |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| pass A | %.1f s | %.1f MiB | %.2f | %.2f | %s |\n", r.Operator.CPUSeconds, r.Operator.PeakRSSMiB, r.Operator.WritesPerCoop, r.Operator.ReconcilesPerCoop, verbs(r.Operator.Requests))
	fmt.Fprintf(&b, "| resync, %d coops, %.1f s | | %s | %.0f in all | | %s |\n", r.Resync.Coops, r.Resync.Seconds, peaks(r.Resync.PeakRSSMiBByRound), r.Resync.MutatingRequests, verbs(r.Resync.Requests))
	fmt.Fprintf(&b, "| resync with unrelated objects, %.1f s | | %.1f MiB | %.0f in all | | %s |\n", r.Unrelated.Resync.Seconds, r.Unrelated.Resync.PeakRSSMiB, r.Unrelated.Resync.MutatingRequests, verbs(r.Unrelated.Resync.Requests))
	if d := r.Databases; d != nil {
		fmt.Fprintf(&b, "| pass B, shared databases, %.1f DDL each | %.1f s | %.1f MiB | %.2f | %.2f | %s |\n", d.DDLPerDatabase, d.CPUSeconds, d.PeakRSSMiB, d.WritesPerCoop, d.ReconcilesPerCoop, verbs(d.Requests))
	}
	fmt.Fprintf(&b, "\nThe API server's counts during pass A (creates and applies by resource, and writes to Cooperatives): %s.\n", verbs(r.Operator.ServerSide))
	b.WriteString("\nCPU time by process and the API server's requests from every client, from each contender's first create until all were Ready (the operator's own CPU: its whole pass):\n\n")
	b.WriteString("| contender | " + strings.Join(meteredProcesses, " | ") + " | bench | operator | API server requests |\n|---|" + strings.Repeat("---|", len(meteredProcesses)+3) + "\n")
	b.WriteString(processRow("floor", r.Floor, ""))
	b.WriteString(processRow("operator, pass A", r.Operator.run, fmt.Sprintf("%.1f s", r.Operator.CPUSeconds)))
	if r.Helm != nil {
		b.WriteString(processRow("helm install per tenant (the helm processes not counted)", *r.Helm, ""))
	}
	if d := r.Databases; d != nil {
		b.WriteString(processRow("operator, pass B", d.run, fmt.Sprintf("%.1f s", d.CPUSeconds)))
	}
	if diffs := requestDifferences(r.Floor.APIServerRequests, r.Operator.APIServerRequests, 12); len(diffs) > 0 {
		fmt.Fprintf(&b, "\nThe API server's requests that differ most between the floor and pass A (floor / pass A): %s.\n", strings.Join(diffs, ", "))
	}
	b.WriteString("\n| goal | measured | met |\n|---|---|---|\n")
	for _, g := range r.Goals {
		met := "no"
		if g.Met {
			met = "yes"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", g.Goal, g.Value, met)
	}
	return b.String()
}

// processRow is a contender's line of the CPU by process table.
func processRow(name string, r run, operator string) string {
	cells := []string{name}
	for _, p := range append(append([]string{}, meteredProcesses...), "bench") {
		cells = append(cells, fmt.Sprintf("%.1f s", r.CPUByProcess[p]))
	}
	if operator == "" {
		operator = "–"
	}
	var total float64
	for _, n := range r.APIServerRequests {
		total += n
	}
	cells = append(cells, operator, fmt.Sprintf("%.0f", total))
	return "| " + strings.Join(cells, " | ") + " |\n"
}

func verbs(m map[string]float64) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func (r *results) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(r.markdown()), 0o644); err != nil {
		return err
	}
	return r.plot(filepath.Join(dir, "ready.png"))
}

// plot draws Ready tenants over time, from each contender's first start.
func (r *results) plot(path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Ready tenants over time, N=%d", r.N)
	p.X.Label.Text = "seconds from the first create"
	p.Y.Label.Text = "Ready"
	curves := []struct {
		name  string
		curve []int
		color color.RGBA
	}{
		{"floor (client-go)", r.Floor.Curve, color.RGBA{R: 120, G: 120, B: 120, A: 255}},
		{"operator", r.Operator.Curve, color.RGBA{R: 20, G: 110, B: 200, A: 255}},
	}
	if r.Helm != nil {
		curves = append(curves, struct {
			name  string
			curve []int
			color color.RGBA
		}{"helm install per tenant", r.Helm.Curve, color.RGBA{R: 210, G: 80, B: 30, A: 255}})
	}
	for _, c := range curves {
		pts := make(plotter.XYs, len(c.curve))
		for i, v := range c.curve {
			pts[i].X, pts[i].Y = float64(i), float64(v)
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		line.Color = c.color
		line.Width = vg.Points(1.5)
		line.StepStyle = plotter.PreStep
		p.Add(line)
		p.Legend.Add(c.name, line)
	}
	p.Legend.Left, p.Legend.Top = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(10), -vg.Points(5)
	p.Add(plotter.NewGrid())
	return p.Save(6*vg.Inch, 3.5*vg.Inch, path)
}

// restarts says how many restarts a peak is the highest of.
func restarts(n int) string {
	if n == 1 {
		return "one restart"
	}
	return fmt.Sprintf("highest of %d restarts", n)
}

// peaks lists each restart's peak RSS.
func peaks(byRound []float64) string {
	s := make([]string, len(byRound))
	for i, p := range byRound {
		s[i] = fmt.Sprintf("%.1f", p)
	}
	return strings.Join(s, ", ") + " MiB"
}

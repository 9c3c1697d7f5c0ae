package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sizes are the sizes of the cases and how often they repeat.
type Sizes struct {
	Reps      int
	Transfer  int64 // bytes each way, one connection
	Pings     int   // sequential 1-byte round trips on one connection
	Conns     int   // sequential new connections
	Parallel  int   // concurrent connections
	PerStream int64 // bytes each way per concurrent connection
	Idle      int   // idle connections held open at once
}

func (s Sizes) String() string {
	return fmt.Sprintf("%s each way; %d pings; %d connections; %d x %s concurrent; %d idle",
		bytes(s.Transfer), s.Pings, s.Conns, s.Parallel, bytes(s.PerStream), s.Idle)
}

// bytes writes n in MiB, or KiB below one MiB.
func bytes(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// Pick returns smoke under -short (make bench BENCH_SMOKE=1), else full,
// with the repetitions $BENCH_REPS sets, if it does.
func Pick(full, smoke Sizes) Sizes {
	sz := full
	if testing.Short() {
		sz = smoke
	}
	if n, err := strconv.Atoi(os.Getenv("BENCH_REPS")); err == nil && n > 0 {
		sz.Reps = n
	}
	return sz
}

// Cases lists every case, in the order the tables run and print them.
var Cases = []string{"down", "up", "rtt", "connect", "parallel-down", "parallel-up", "idle"}

// Goals returns issue 13's goals for tunnels over the reference, by
// "case/metric", with down the goal for download, which depends on what
// the other end is.
func Goals(down string) map[string]string {
	return map[string]string{
		"down/MB/s":          down,
		"up/MB/s":            "≥1.5x",
		"rtt/p50-µs":         "≤0.7x",
		"connect/conn/s":     "≥2x",
		"parallel-down/MB/s": "≥1.5x",
		"parallel-up/MB/s":   "≥1.5x",
		"cpu/s-per-GiB":      "≤0.6x",
		"idle/KiB-per-conn":  "≤32",
		// The best any client could do here (BenchmarkTable's ceiling
		// rows), against the same goals.
		"down/ceiling-x":          down,
		"up/ceiling-x":            "≥1.5x",
		"parallel-down/ceiling-x": "≥1.5x",
		"parallel-up/ceiling-x":   "≥1.5x",
	}
}

// Sample is one repetition's measurements for one client, by "case/metric".
type Sample map[string]float64

// Client is one way to reach the targets.
type Client struct {
	Name  string
	Addrs map[int]string // remote port → local address to dial

	// Around, if set, is called before each case and returns what to call
	// after it: a table adds its own metrics (CPU, memory) to s there.
	Around func(name string, s Sample) (after func())
	// Settle, if set, is called before the idle case measures memory: to
	// wait for what earlier cases left to wind down.
	Settle func()
	// Memory, if set, returns the client's memory in use now, in bytes, to
	// tell what each idle connection costs.
	Memory func() (int64, error)
}

// Ratio is a column of the table: the median of Num over that of Den.
type Ratio struct{ Name, Num, Den string }

// Table is a bench table to run.
type Table struct {
	Title   string // printed above the table; may span lines
	Sizes   Sizes
	Clients []Client
	Cases   []string
	Ratios  []Ratio
	Goals   map[string]string // by "case/metric"
	// Fixup, if set, adjusts one repetition's samples, by client name,
	// before they are kept: to subtract the load generator's share, say.
	Fixup func(rep map[string]Sample)
}

// Run runs t.Sizes.Reps repetitions of every case on every client,
// rotating which client goes first, and returns the medians. It stops at
// the first error.
func (t *Table) Run() (*Result, error) {
	samples := map[string][]Sample{}
	for rep := range t.Sizes.Reps {
		got := map[string]Sample{}
		for _, c := range t.Clients {
			got[c.Name] = Sample{}
		}
		for ci, name := range t.Cases {
			for j := range t.Clients {
				c := t.Clients[(rep+ci+j)%len(t.Clients)]
				if err := t.runCase(name, c, got[c.Name]); err != nil {
					return nil, fmt.Errorf("repetition %d, %s, %s: %w", rep+1, c.Name, name, err)
				}
			}
		}
		if t.Fixup != nil {
			t.Fixup(got)
		}
		for _, c := range t.Clients {
			samples[c.Name] = append(samples[c.Name], got[c.Name])
		}
	}
	return t.result(samples), nil
}

// runCase runs one case against one client and records its metrics in s.
func (t *Table) runCase(name string, c Client, s Sample) error {
	mb := func(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	if c.Around != nil {
		defer c.Around(name, s)()
	}
	sz := t.Sizes
	switch name {
	case "down", "up":
		op, port := Download, PortSource
		if name == "up" {
			op, port = Upload, PortSink
		}
		start := time.Now()
		if err := op(c.Addrs[port], sz.Transfer); err != nil {
			return err
		}
		s[name+"/MB/s"] = mb(sz.Transfer, time.Since(start))
	case "rtt":
		lat, err := PingPong(c.Addrs[PortEcho], sz.Pings)
		if err != nil {
			return err
		}
		s["rtt/p50-µs"], s["rtt/p99-µs"] = us(Percentile(lat, 50)), us(Percentile(lat, 99))
	case "connect":
		start := time.Now()
		lat, err := Connect(c.Addrs[PortEcho], sz.Conns)
		if err != nil {
			return err
		}
		s["connect/conn/s"] = float64(sz.Conns) / time.Since(start).Seconds()
		s["connect/p50-µs"], s["connect/p99-µs"] = us(Percentile(lat, 50)), us(Percentile(lat, 99))
	case "parallel-down", "parallel-up":
		op, port := Download, PortSource
		if name == "parallel-up" {
			op, port = Upload, PortSink
		}
		start := time.Now()
		if err := Parallel(sz.Parallel, func() error { return op(c.Addrs[port], sz.PerStream) }); err != nil {
			return err
		}
		s[name+"/MB/s"] = mb(int64(sz.Parallel)*sz.PerStream, time.Since(start))
	case "idle":
		if c.Memory == nil {
			return nil
		}
		if c.Settle != nil {
			c.Settle()
		}
		before, err := c.Memory()
		if err != nil {
			return err
		}
		cs, err := OpenIdle(c.Addrs[PortEcho], sz.Idle)
		if err != nil {
			return err
		}
		after, err := c.Memory()
		if err != nil {
			cs.Close()
			return err
		}
		s["idle/KiB-per-conn"] = float64(after-before) / 1024 / float64(sz.Idle)
		return cs.Finish()
	default:
		return fmt.Errorf("no case %q", name)
	}
	return nil
}

// Result is a table, as printed and written as JSON.
type Result struct {
	Title   string   `json:"title"`
	Reps    int      `json:"reps"`
	Sizes   string   `json:"sizes"`
	Clients []string `json:"clients"`
	Ratios  []string `json:"ratios"`
	Rows    []Row    `json:"rows"`
}

// Row is one metric of one case: the median per client over the
// repetitions, and the ratios (above 1 is better for rates, below 1 for
// latencies, CPU and memory).
type Row struct {
	Case    string               `json:"case"`
	Metric  string               `json:"metric"`
	Median  map[string]float64   `json:"median"`
	Samples map[string][]float64 `json:"samples"`
	Ratio   map[string]float64   `json:"ratio"`
	Goal    string               `json:"goal,omitempty"`
}

func (t *Table) result(samples map[string][]Sample) *Result {
	res := &Result{Title: t.Title, Reps: t.Sizes.Reps, Sizes: t.Sizes.String()}
	keys := map[string]bool{}
	for _, c := range t.Clients {
		res.Clients = append(res.Clients, c.Name)
		for _, s := range samples[c.Name] {
			for k := range s {
				keys[k] = true
			}
		}
	}
	for _, r := range t.Ratios {
		res.Ratios = append(res.Ratios, r.Name)
	}
	order := func(k string) int {
		for i, name := range Cases {
			if strings.HasPrefix(k, name+"/") {
				return i
			}
		}
		return len(Cases)
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.SortFunc(sorted, func(a, b string) int {
		if d := order(a) - order(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	for _, k := range sorted {
		cs, metric, _ := strings.Cut(k, "/")
		row := Row{Case: cs, Metric: metric, Median: map[string]float64{}, Samples: map[string][]float64{}, Ratio: map[string]float64{}, Goal: t.Goals[k]}
		for _, c := range t.Clients {
			for _, s := range samples[c.Name] {
				if v, ok := s[k]; ok {
					row.Samples[c.Name] = append(row.Samples[c.Name], v)
				}
			}
			if len(row.Samples[c.Name]) > 0 {
				row.Median[c.Name] = Median(row.Samples[c.Name])
			}
		}
		for _, r := range t.Ratios {
			num, ok1 := row.Median[r.Num]
			den, ok2 := row.Median[r.Den]
			if ok1 && ok2 && den != 0 {
				row.Ratio[r.Name] = num / den
			}
		}
		res.Rows = append(res.Rows, row)
	}
	return res
}

// Print writes the table as text.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "\n%s\nmedians of %d repetitions (%s)\n", r.Title, r.Reps, r.Sizes)
	cols := append(slices.Clone(r.Clients), r.Ratios...)
	width := func(name string) int { return max(10, len(name)) }
	fmt.Fprintf(w, "%-14s %-22s", "case", "metric")
	for _, c := range cols {
		fmt.Fprintf(w, " %*s", width(c), c)
	}
	fmt.Fprintf(w, " %s\n", "goal")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "%-14s %-22s", row.Case, row.Metric)
		for _, c := range r.Clients {
			cell := "-"
			if v, ok := row.Median[c]; ok {
				cell = fmt.Sprintf("%.1f", v)
			}
			fmt.Fprintf(w, " %*s", width(c), cell)
		}
		for _, name := range r.Ratios {
			cell := "-"
			if v, ok := row.Ratio[name]; ok {
				cell = fmt.Sprintf("%.2fx", v)
			}
			fmt.Fprintf(w, " %*s", width(name), cell)
		}
		fmt.Fprintf(w, " %s\n", row.Goal)
	}
}

// WriteJSON writes the table as JSON to path, creating its directory.
func (r *Result) WriteJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write bench results: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write bench results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write bench results: %w", err)
	}
	return nil
}

// Bench runs the table once per b.Loop, prints it, writes it as JSON to
// the file the environment variable jsonEnv names if set, and reports its
// ratios as the benchmark's metrics.
//
// For profiling, $BENCH_CLIENTS and $BENCH_CASES (comma-separated names)
// run only some clients and cases.
func (t *Table) Bench(b *testing.B, jsonEnv string) {
	b.Helper()
	if only := os.Getenv("BENCH_CLIENTS"); only != "" {
		t.Clients = slices.DeleteFunc(t.Clients, func(c Client) bool { return !slices.Contains(strings.Split(only, ","), c.Name) })
	}
	if only := os.Getenv("BENCH_CASES"); only != "" {
		t.Cases = strings.Split(only, ",")
	}
	for b.Loop() {
		res, err := t.Run()
		if err != nil {
			b.Fatal(err)
		}
		if err := res.Output(os.Stdout, jsonEnv); err != nil {
			b.Fatal(err)
		}
		for _, r := range res.Rows {
			for _, name := range res.Ratios {
				if v, ok := r.Ratio[name]; ok {
					b.ReportMetric(v, strings.ReplaceAll(r.Case+"-"+r.Metric+"-"+name, " ", "")+"-ratio")
				}
			}
		}
	}
}

// Output prints the table and, if the environment variable jsonEnv names
// a file, writes it there as JSON.
func (r *Result) Output(w io.Writer, jsonEnv string) error {
	r.Print(w)
	if path := os.Getenv(jsonEnv); path != "" {
		return r.WriteJSON(path)
	}
	return nil
}

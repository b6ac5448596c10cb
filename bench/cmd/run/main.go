// Command run is the side-by-side benchmark harness: it builds every peer
// server and the clients, runs each server on each workload for several
// interleaved rounds (the servers of the workload's kind in an order turned
// by one each round, A B C, B C A, C A B, ..., so that none always runs
// first or last), each run with a freshly started server pinned to its own
// CPU, and writes the raw results, markdown tables and SVG charts under
// bench/results/. See bench/README.md.
//
// It is Linux-only (taskset, /proc, epoll servers) and binds loopback only.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tcpreactor/reactor/bench/internal/proc"
)

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	var (
		rounds     = flag.Int("rounds", 3, "rounds; every server runs every workload once per round")
		serversF   = flag.String("servers", "", "comma-separated servers to run (default: all discovered)")
		extraF     = flag.String("extra", "", "prebuilt servers to run as well, name=binary,... (an A/B of two builds)")
		workloadsF = flag.String("workloads", "", "comma-separated workloads (default: all); see -list")
		warmup     = flag.Duration("warmup", time.Second, "warm-up before each measurement")
		duration   = flag.Duration("duration", 6*time.Second, "measured time of each echo and HTTP run")
		quick      = flag.Bool("quick", false, "one round of 3 s runs after 500 ms of warm-up, without "+quickLeavesOut()+" (flags given win): about 3-4 minutes")
		serverCPUs = flag.String("server-cpus", "0", "CPU list for the server (taskset -c); empty: not pinned")
		clientCPUs = flag.String("client-cpus", "1", "CPU list for the client (taskset -c); empty: not pinned")
		loops      = flag.Int("loops", 1, "-loops passed to every server")
		threads    = flag.Int("client-threads", 0, "client threads (loadgen -threads, wrk -t); 0: one per client CPU")
		host       = flag.String("host", "127.0.0.1", "loopback address the servers listen on")
		port       = flag.Int("port", 9000, "first port; runs rotate over 20 ports from here")
		out        = flag.String("out", "", "results directory (default: results/<UTC time>)")
		report     = flag.String("report", "", "only rebuild tables.md and the chart from this results.json")
		quietPct   = flag.Float64("quiet", 25, "before each run, wait for the rest of the machine to use less than this % of one core ...")
		quietWait  = flag.Duration("quiet-wait", 2*time.Second, "... but no longer than this (0: do not wait)")
		maxBg      = flag.Float64("max-bg", 50, "a run during which the rest of the machine used more than this % of one core is noisy ...")
		retryTime  = flag.Duration("retry-budget", 4*time.Minute, "... and is run again (twice at most) while this much extra time lasts (0: never)")
		list       = flag.Bool("list", false, "list servers and workloads, then exit")
	)
	flag.Parse()

	dir, err := benchDir()
	if err != nil {
		return err
	}
	if *report != "" {
		return rebuildReport(*report)
	}
	if *quick {
		// Quick settings apply only where no flag says otherwise.
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["rounds"] {
			*rounds = 1
		}
		if !set["warmup"] {
			*warmup = 500 * time.Millisecond
		}
		if !set["duration"] {
			*duration = 3 * time.Second
		}
		if !set["workloads"] {
			*workloadsF = strings.Join(quickWorkloads, ",")
		}
	}
	servers, err := discover(dir)
	if err != nil {
		return err
	}
	extra, err := parseExtra(*extraF, servers)
	if err != nil {
		return err
	}
	if *list {
		for _, s := range append(servers, extra...) {
			fmt.Printf("server   %-16s %s\n", s.Name, s.Kind)
		}
		for _, w := range allWorkloads {
			fmt.Printf("workload %-16s %s\n", w.Name, w.Desc)
		}
		return nil
	}
	servers, err = selectServers(servers, *serversF)
	if err != nil {
		return err
	}
	servers = append(servers, extra...)
	workloads, err := selectWorkloads(*workloadsF)
	if err != nil {
		return err
	}
	if *rounds < 1 || *duration <= 0 || *warmup < 0 || *loops < 1 {
		return errors.New("-rounds, -duration and -loops must be positive, -warmup not negative")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

	// Tools first: CI machines have only Go, so install what is missing when
	// we can, and say plainly what is skipped when we cannot.
	if !have("gcc") && !aptInstall(logf, "gcc") {
		return errors.New("gcc is needed for the C server and the load generator, and could not be installed")
	}
	if _, err := os.Stat("/usr/include/openssl/ssl.h"); err != nil && !aptInstall(logf, "libssl-dev") {
		logf("OpenSSL's headers (libssl-dev) are missing and could not be installed: the load generator will not build")
	}
	if *serverCPUs != "" || *clientCPUs != "" {
		if !have("taskset") && !aptInstall(logf, "util-linux") {
			logf("taskset is missing: running unpinned")
			*serverCPUs, *clientCPUs = "", ""
		}
	}
	wrkPath := ""
	if needsHTTP(workloads) {
		if have("wrk") || aptInstall(logf, "wrk") {
			wrkPath, _ = exec.LookPath("wrk")
		} else {
			logf("wrk is missing and could not be installed (needs root and apt-get): skipping the HTTP workloads")
			workloads = slices.DeleteFunc(workloads, func(w workload) bool { return w.Type == typeHTTP })
		}
	}
	if *threads <= 0 {
		*threads = max(1, cpuCount(*clientCPUs))
	}

	logf("building in %s ...", dir)
	tools, err := buildAll(ctx, dir, servers, logf)
	if err != nil {
		return err
	}

	cfg := &config{
		dir: dir, host: *host, basePort: *port, ports: 20,
		serverCPUs: *serverCPUs, clientCPUs: *clientCPUs, loops: *loops,
		clientThreads: *threads, warmup: *warmup, duration: *duration,
		wrk: wrkPath, tools: tools,
	}
	res := &results{
		Meta:      machineMeta(cfg, *rounds, *maxBg),
		Workloads: workloads,
	}
	for _, s := range servers {
		res.Servers = append(res.Servers, serverInfo{Name: s.Name, Kind: s.Kind, BuildError: s.BuildErr})
	}
	if *out == "" {
		*out = filepath.Join(dir, "results", time.Now().UTC().Format("20060102T150405Z"))
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}

	total := 0
	for _, w := range workloads {
		total += len(ofKind(servers, w.kind()))
	}
	total *= *rounds
	seq := 0
	start := time.Now()
	var retrySpent time.Duration
rounds:
	for round := 1; round <= *rounds; round++ {
		for _, w := range workloads {
			for _, s := range roundOrder(servers, w.kind(), round) {
				if ctx.Err() != nil {
					logf("interrupted: writing the results so far")
					break rounds
				}
				seq++
				bgBefore := proc.WaitQuiet(*quietPct, *quietWait)
				rec := runOne(cfg, s, w, round, seq)
				rec.BgBeforePct = bgBefore
				// A run that shared its cores with someone else's burst is
				// redone while the budget lasts; the noisy one is kept in
				// results.json (replaced), not dropped silently. Idle memory
				// does not depend on CPU, so it is never redone.
				for try := 0; try < 2 && rec.Error == "" && w.Type != typeIdle &&
					rec.BgCPUPct > *maxBg && retrySpent < *retryTime && ctx.Err() == nil; try++ {
					logf("[%d/%d] round %d %-16s %-10s noisy (bg %.0f%%): %s; running it again",
						seq, total, round, w.Name, s.Name, rec.BgCPUPct, summary(w, rec))
					res.Replaced = append(res.Replaced, rec)
					t := time.Now()
					bgBefore = proc.WaitQuiet(*quietPct, *quietWait)
					rec = runOne(cfg, s, w, round, seq)
					rec.BgBeforePct = bgBefore
					retrySpent += time.Since(t)
				}
				res.Records = append(res.Records, rec)
				logf("[%d/%d %s] round %d %-16s %-10s %s", seq, total,
					time.Since(start).Round(time.Second), round, w.Name, s.Name, summary(w, rec))
			}
		}
	}
	res.Meta.Finished = time.Now().UTC()
	res.Meta.LoadAvgEnd = loadAvg()
	return writeResults(*out, res, os.Stdout)
}

// quickWorkloads are the workloads -quick runs: none of the TLS ones, nor
// echo-64B-c1000, echo-64B-c19k and idle-19k.
var quickWorkloads = []string{"echo-64B-d1", "echo-64B-d16", "echo-4KiB-c1000", "echo-64B-c10k", "idle-10k", "http", "http-pipe16"}

// quickLeavesOut names the workloads -quick does not run, for its help.
func quickLeavesOut() string {
	var out []string
	for _, w := range allWorkloads {
		if !slices.Contains(quickWorkloads, w.Name) {
			out = append(out, w.Name)
		}
	}
	return strings.Join(out, ", ")
}

// roundOrder returns the servers of a kind in the order round (from 1) runs
// them: turned among themselves, not within the list of every kind, so that
// over as many rounds as the kind has servers each takes every place.
func roundOrder(servers []server, kind string, round int) []server {
	return rotate(ofKind(servers, kind), round-1)
}

// ofKind keeps the servers of a kind, in their order.
func ofKind(servers []server, kind string) []server {
	var out []server
	for _, s := range servers {
		if s.Kind == kind {
			out = append(out, s)
		}
	}
	return out
}

// rotate returns the servers turned left by r. A fixed order may favour a
// place: in an A/B of two reactor builds behind the C server (8 quiet
// rounds, 64 B echo, 100 connections) the candidate, run third, was 4 %
// cheaper per message in all 8 rounds; run second, it was about 1 % cheaper
// in 6 of 8 rounds, its median 3 % dearer. Turning the order gives every
// server every place.
func rotate(servers []server, r int) []server {
	if len(servers) == 0 {
		return nil
	}
	r %= len(servers)
	return append(slices.Clone(servers[r:]), servers[:r]...)
}

// benchDir finds the bench module's directory: the working directory or one
// of its parents holding go.mod for the bench module, or bench/ below it.
func benchDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		for _, c := range []string{d, filepath.Join(d, "bench")} {
			b, err := os.ReadFile(filepath.Join(c, "go.mod"))
			if err == nil && strings.Contains(string(b), "module github.com/tcpreactor/reactor/bench\n") {
				return c, nil
			}
		}
		if filepath.Dir(d) == d {
			return "", errors.New("run from inside the repository: bench/go.mod not found")
		}
	}
}

// selectServers keeps the named servers, in discovery order (the C ceiling,
// the baseline, the reactor, then the rest), whatever order they were named in.
func selectServers(all []server, names string) ([]server, error) {
	if names == "" {
		return all, nil
	}
	want := map[string]bool{}
	for n := range strings.SplitSeq(names, ",") {
		n = strings.TrimSpace(n)
		if !slices.ContainsFunc(all, func(s server) bool { return s.Name == n }) {
			return nil, fmt.Errorf("no server %q (see -list)", n)
		}
		want[n] = true
	}
	return slices.DeleteFunc(slices.Clone(all), func(s server) bool { return !want[s.Name] }), nil
}

func selectWorkloads(names string) ([]workload, error) {
	if names == "" {
		return slices.Clone(allWorkloads), nil
	}
	var out []workload
	for n := range strings.SplitSeq(names, ",") {
		n = strings.TrimSpace(n)
		i := slices.IndexFunc(allWorkloads, func(w workload) bool { return w.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("no workload %q (see -list)", n)
		}
		out = append(out, allWorkloads[i])
	}
	// Keep the canonical order, whatever order they were named in.
	slices.SortStableFunc(out, func(a, b workload) int {
		return slices.IndexFunc(allWorkloads, func(w workload) bool { return w.Name == a.Name }) -
			slices.IndexFunc(allWorkloads, func(w workload) bool { return w.Name == b.Name })
	})
	return slices.CompactFunc(out, func(a, b workload) bool { return a.Name == b.Name }), nil
}

func needsHTTP(ws []workload) bool {
	return slices.ContainsFunc(ws, func(w workload) bool { return w.Type == typeHTTP })
}

func have(tool string) bool {
	_, err := exec.LookPath(tool)
	return err == nil
}

// aptInstall installs a Debian package when running as root with apt-get,
// and reports whether it worked.
func aptInstall(logf func(string, ...any), pkg string) bool {
	if os.Geteuid() != 0 || !have("apt-get") {
		return false
	}
	logf("installing %s with apt-get ...", pkg)
	install := func() error {
		cmd := exec.Command("apt-get", "install", "-y", "-qq", pkg)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if install() == nil {
		return true
	}
	// A fresh machine may have no package lists yet.
	if out, err := exec.Command("apt-get", "update", "-qq").CombinedOutput(); err != nil {
		logf("apt-get update: %v: %s", err, strings.TrimSpace(string(out)))
		return false
	}
	if err := install(); err != nil {
		logf("apt-get install %s: %v", pkg, err)
		return false
	}
	return true
}

// cpuCount counts the CPUs in a taskset list such as "1", "2-3" or "0,2";
// an empty list means every CPU.
func cpuCount(list string) int {
	if list == "" {
		return runtime.NumCPU()
	}
	n := 0
	for part := range strings.SplitSeq(list, ",") {
		var a, b int
		if k, _ := fmt.Sscanf(part, "%d-%d", &a, &b); k == 2 && b >= a {
			n += b - a + 1
		} else {
			n++
		}
	}
	return n
}

// summary is the one-line progress report of a run.
func summary(w workload, r record) string {
	if r.Error != "" {
		return "FAILED: " + firstLine(r.Error)
	}
	var s string
	switch w.Type {
	case typeEcho:
		s = fmt.Sprintf("%s msg/s  p99 %s µs  server %.0f%% client %.0f%% bg %.0f%%",
			count(r.Value), fixed(r.P99), r.ServerCPUPct, r.ClientCPUPct, r.BgCPUPct)
	case typeIdle:
		s = fmt.Sprintf("%.2f KiB/conn  RSS %d -> %d KiB", r.Value, r.RSSBeforeKiB, r.RSSAfterKiB)
	case typeHTTP:
		s = fmt.Sprintf("%s req/s  p99 %s µs  server %.0f%% client %.0f%% bg %.0f%%",
			count(r.Value), fixed(r.P99), r.ServerCPUPct, r.ClientCPUPct, r.BgCPUPct)
	}
	if r.ClientErrors > 0 {
		s += fmt.Sprintf("  (%d client errors)", r.ClientErrors)
	}
	return s
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// results is everything a run wrote to results.json.
type results struct {
	Meta      meta         `json:"meta"`
	Workloads []workload   `json:"workloads"`
	Servers   []serverInfo `json:"servers"`
	Records   []record     `json:"records"`
	// Replaced holds the noisy runs that were run again (see -max-bg); the
	// tables use their replacements.
	Replaced []record `json:"replaced,omitempty"`
}

type serverInfo struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	BuildError string `json:"build_error,omitempty"`
}

type meta struct {
	Command      string    `json:"command"`
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished"`
	Rounds       int       `json:"rounds"`
	Warmup       string    `json:"warmup"`
	MaxBgPct     float64   `json:"max_bg_pct"`
	Duration     string    `json:"duration"`
	ServerCPUs   string    `json:"server_cpus"`
	ClientCPUs   string    `json:"client_cpus"`
	Loops        int       `json:"loops"`
	ClientThread int       `json:"client_threads"`
	NProc        int       `json:"nproc"`
	Kernel       string    `json:"kernel"`
	CPU          string    `json:"cpu"`
	Go           string    `json:"go"`
	GCC          string    `json:"gcc"`
	Wrk          string    `json:"wrk,omitempty"`
	LoadAvgStart string    `json:"loadavg_start"`
	LoadAvgEnd   string    `json:"loadavg_end"`
}

func machineMeta(cfg *config, rounds int, maxBg float64) meta {
	m := meta{
		MaxBgPct: maxBg,
		// run.sh is the documented entry and passes its arguments through.
		Command:  strings.Join(append([]string{"bench/run.sh"}, os.Args[1:]...), " "),
		Started:  time.Now().UTC(),
		Rounds:   rounds,
		Warmup:   cfg.warmup.String(),
		Duration: cfg.duration.String(), ServerCPUs: cfg.serverCPUs, ClientCPUs: cfg.clientCPUs,
		Loops: cfg.loops, ClientThread: cfg.clientThreads,
		NProc:        runtime.NumCPU(),
		Kernel:       firstLine(cmdOut("uname", "-r")),
		Go:           firstLine(cmdOut("go", "version")),
		GCC:          firstLine(cmdOut("gcc", "--version")),
		LoadAvgStart: loadAvg(),
	}
	if cfg.wrk != "" {
		m.Wrk = firstLine(cmdOut(cfg.wrk, "-v"))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// cmdOut returns a command's combined output, or "" if it cannot run (wrk -v
// exits 1 after printing its version, so the output counts either way).
func cmdOut(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// writeResults writes results.json, tables.md, throughput.svg and (when the
// run has the workloads for it) cpu-per-msg.svg into dir and prints the
// tables to w.
func writeResults(dir string, res *results, w *os.File) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return writeReport(dir, res, w)
}

func rebuildReport(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writeReport(filepath.Dir(path), &res, os.Stdout)
}

func writeReport(dir string, res *results, w *os.File) error {
	md := tables(res)
	if err := os.WriteFile(filepath.Join(dir, "tables.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "throughput.svg"), []byte(chart(res)), 0o644); err != nil {
		return err
	}
	written := "results.json,tables.md,throughput.svg"
	if svg, ok := cpuChart(res); ok {
		if err := os.WriteFile(filepath.Join(dir, cpuChartFile), []byte(svg), 0o644); err != nil {
			return err
		}
		written += "," + cpuChartFile
	}
	fmt.Fprint(w, md)
	fmt.Fprintf(w, "\nwritten: %s/{%s}\n", dir, written)
	return nil
}

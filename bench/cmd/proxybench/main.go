// Command proxybench runs the proxy benchmarks: examples/proxy (reactor)
// against HAProxy in mode tcp and a Go net proxy (two io.Copy goroutines per
// pair), side by side and interleaved, with redis-benchmark against a
// redis-server behind each proxy and the bench's own load generator against
// the C echo server behind each, plus the idle memory per proxied pair; and
// the dial rate of reactor's Client against package net. It writes
// results.json and tables.md under -out and prints the tables.
//
// Each proxy runs pinned to -proxy-cpus with one thread or loop (HAProxy
// nbthread 1, reactor -loops 1, GOMAXPROCS 1 for the Go proxy); the
// upstream server and the client run pinned to -load-cpus. A "direct" row
// runs the client against the upstream itself, as the ceiling.
//
//	go run ./cmd/proxybench -rounds 3
package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcpreactor/reactor/bench/internal/proc"
)

// config is what the flags set.
type config struct {
	dir, bin              string
	rounds                int
	proxyCPUs, loadCPUs   string
	redisN, redisPipeN    int
	duration, warmup      time.Duration
	idleConns             int
	dialConns, dialFlight int
	quietPct              float64
	quietWait             time.Duration
	maxBg                 float64
	proxies, workloads    []string
}

// record is one measured run.
type record struct {
	Round    int     `json:"round"`
	Workload string  `json:"workload"`
	Proxy    string  `json:"proxy"`
	Test     string  `json:"test,omitempty"` // redis-benchmark's test (SET, GET)
	RPS      float64 `json:"rps"`            // requests (messages, connections) per second
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	ProxyCPU float64 `json:"proxy_cpu_s"`   // the proxy's CPU time over the run
	CPUPerOp float64 `json:"cpu_us_per_op"` // the proxy's CPU per request, µs
	ProxyPct float64 `json:"proxy_cpu_pct"`
	KiB      float64 `json:"kib_per_pair,omitempty"`
	BgPct    float64 `json:"bg_cpu_pct"`         // other work during the run, % of a core
	Replaced bool    `json:"replaced,omitempty"` // a noisy run, run again
	Error    string  `json:"error,omitempty"`
	Raw      string  `json:"raw,omitempty"`

	upstreamCPU float64 // the upstream server's CPU over the run, for measured
}

type results struct {
	Machine  map[string]string `json:"machine"`
	Command  string            `json:"command"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Records  []record          `json:"records"`
}

var allProxies = []string{"direct", "reactor", "haproxy", "gonet"}

var allWorkloads = []string{"redis-d1", "redis-p16", "echo-64B-d1", "echo-4KiB-d4", "idle-3k", "dial"}

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	var cfg config
	flag.IntVar(&cfg.rounds, "rounds", 3, "interleaved rounds")
	flag.StringVar(&cfg.proxyCPUs, "proxy-cpus", "0", "taskset CPU list of the proxy (and of the dialler in the dial workload)")
	flag.StringVar(&cfg.loadCPUs, "load-cpus", "1", "taskset CPU list of the upstream server and the client")
	flag.IntVar(&cfg.redisN, "redis-n", 100000, "redis-benchmark -n, one request in flight per connection")
	flag.IntVar(&cfg.redisPipeN, "redis-pipe-n", 1000000, "redis-benchmark -n, pipelined 16")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "measured window of a loadgen run")
	flag.DurationVar(&cfg.warmup, "warmup", time.Second, "loadgen warm-up")
	// 3000 idle pairs: the Go proxy's blocked io.Copy goroutines each hold
	// a splice pipe, six descriptors a pair, and the descriptor limit here
	// is 20 000.
	flag.IntVar(&cfg.idleConns, "idle-conns", 3000, "proxied pairs held idle for the memory measure")
	flag.IntVar(&cfg.dialConns, "dial-conns", 5000, "connections per dial-rate run")
	flag.IntVar(&cfg.dialFlight, "dial-in-flight", 64, "dials in flight in the dial-rate runs")
	flag.Float64Var(&cfg.quietPct, "quiet", 25, "before each run, wait until other work uses under this % of a core...")
	flag.DurationVar(&cfg.quietWait, "quiet-wait", 2*time.Second, "...for at most this long")
	flag.Float64Var(&cfg.maxBg, "max-bg", 50, "run again (twice at most) a run during which other work used more than this % of a core")
	proxies := flag.String("proxies", strings.Join(allProxies, ","), "proxies to run")
	workloads := flag.String("workloads", strings.Join(allWorkloads, ","), "workloads to run")
	out := flag.String("out", "", "output directory (default results/proxy-<UTC time>)")
	flag.Parse()
	cfg.proxies = strings.Split(*proxies, ",")
	cfg.workloads = strings.Split(*workloads, ",")

	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "loadgen", "loadgen.c")); err != nil {
		return errors.New("run from bench/ (go run ./cmd/proxybench)")
	}
	cfg.dir, cfg.bin = dir, filepath.Join(dir, "bin")
	if *out == "" {
		*out = filepath.Join(dir, "results", "proxy-"+time.Now().UTC().Format("2006-01-02T150405"))
	}
	for _, tool := range []string{"taskset", "gcc", "haproxy", "redis-server", "redis-benchmark"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install -y util-linux gcc haproxy redis-server redis-tools)", tool)
		}
	}
	if err := build(&cfg); err != nil {
		return err
	}
	stopOnSignal()
	res := &results{Machine: machine(), Command: strings.Join(os.Args, " "), Started: time.Now().UTC()}
	for round := 1; round <= cfg.rounds; round++ {
		for _, w := range cfg.workloads {
			recs, err := runWorkload(&cfg, round, w)
			if err != nil {
				return err
			}
			for _, r := range recs {
				fmt.Fprintf(os.Stderr, "round %d %-13s %-8s %-5s %10.0f/s p50 %7.0f µs p99 %7.0f µs proxy %5.1f%% %6.2f µs/op %6.2f KiB %s\n",
					r.Round, r.Workload, r.Proxy, r.Test, r.RPS, r.P50us, r.P99us, r.ProxyPct, r.CPUPerOp, r.KiB, r.Error)
			}
			res.Records = append(res.Records, recs...)
		}
	}
	res.Finished = time.Now().UTC()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "results.json"), b, 0o644); err != nil {
		return err
	}
	t := tables(res)
	fmt.Print(t)
	return os.WriteFile(filepath.Join(*out, "tables.md"), []byte(t), 0o644)
}

// build compiles the proxies, the C upstream and load generator, the idle
// holder and the dialler into bin/.
func build(cfg *config) error {
	if err := os.MkdirAll(cfg.bin, 0o755); err != nil {
		return err
	}
	steps := [][]string{
		{"go", "build", "-o", filepath.Join(cfg.bin, "proxy-reactor"), "github.com/tcpreactor/reactor/examples/proxy"},
		{"go", "build", "-o", filepath.Join(cfg.bin, "proxy-gonet"), "./proxies/gonet"},
		{"go", "build", "-o", filepath.Join(cfg.bin, "idle"), "./idle"},
		{"go", "build", "-o", filepath.Join(cfg.bin, "dialrate"), "./cmd/dialrate"},
		{"gcc", "-O2", "-Wall", "-pthread", "-o", filepath.Join(cfg.bin, "loadgen"), "loadgen/loadgen.c"},
		{"gcc", "-O2", "-Wall", "-pthread", "-o", filepath.Join(cfg.bin, "c-epoll"), "cserver/echo.c"},
	}
	for _, s := range steps {
		cmd := exec.Command(s[0], s[1:]...)
		cmd.Dir = cfg.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(s, " "), err, out)
		}
	}
	return nil
}

// Ports: the upstream listens on upPort, each proxy on proxyPort.
const (
	upPort    = "19300"
	proxyPort = "19301"
	host      = "127.0.0.1"
)

// running holds the processes started and not yet stopped, for a signal
// to stop: each runs in a process group of its own, so a Ctrl-C reaches
// only the harness.
var running struct {
	sync.Mutex
	procs map[*proc.Process]bool
}

// started records p as running, and returns a function that stops it and
// forgets it.
func started(p *proc.Process) func() {
	running.Lock()
	if running.procs == nil {
		running.procs = map[*proc.Process]bool{}
	}
	running.procs[p] = true
	running.Unlock()
	return func() {
		p.Stop()
		running.Lock()
		delete(running.procs, p)
		running.Unlock()
	}
}

// stopOnSignal stops every running process by its pid on SIGINT or
// SIGTERM, then exits.
func stopOnSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		running.Lock()
		for p := range running.procs {
			p.Stop()
		}
		os.Exit(1)
	}()
}

// startUpstream starts the workload's upstream server on the load CPUs.
func startUpstream(cfg *config, w string) (*proc.Process, error) {
	addr := host + ":" + upPort
	if err := proc.PortFree(addr); err != nil {
		return nil, err
	}
	var argv []string
	if strings.HasPrefix(w, "redis") {
		argv = []string{"redis-server", "--port", upPort, "--bind", host, "--save", "", "--appendonly", "no",
			"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"}
	} else {
		argv = []string{filepath.Join(cfg.bin, "c-epoll"), "-addr", addr, "-loops", "1"}
	}
	p, err := proc.Start(filepath.Base(argv[0]), proc.Pinned(cfg.loadCPUs, argv), nil)
	if err != nil {
		return nil, err
	}
	return p, p.WaitListening(addr, 15*time.Second)
}

// startProxy starts a proxy on the proxy CPUs in front of the upstream.
func startProxy(cfg *config, name string) (*proc.Process, error) {
	listen, up := host+":"+proxyPort, host+":"+upPort
	if err := proc.PortFree(listen); err != nil {
		return nil, err
	}
	var argv, env []string
	switch name {
	case "reactor":
		argv = []string{filepath.Join(cfg.bin, "proxy-reactor"), "-listen", listen, "-upstream", up, "-loops", "1"}
	case "gonet":
		argv = []string{filepath.Join(cfg.bin, "proxy-gonet"), "-listen", listen, "-upstream", up}
		env = []string{"GOMAXPROCS=1"}
	case "haproxy":
		conf := filepath.Join(cfg.bin, "haproxy.cfg")
		if err := os.WriteFile(conf, []byte(haproxyConfig(listen, up)), 0o644); err != nil {
			return nil, err
		}
		argv = []string{"haproxy", "-db", "-f", conf}
	default:
		return nil, fmt.Errorf("unknown proxy %q", name)
	}
	p, err := proc.Start(name, proc.Pinned(cfg.proxyCPUs, argv), env)
	if err != nil {
		return nil, err
	}
	return p, p.WaitListening(listen, 15*time.Second)
}

// haproxyConfig is HAProxy in mode tcp with one thread, as the reference C
// event-loop proxy: no health checks, no logging, timeouts long enough for
// every run, and room for the idle workload's connections (two descriptors
// a pair; the process may have 20 000).
func haproxyConfig(listen, upstream string) string {
	return fmt.Sprintf(`global
	nbthread 1
	maxconn 9000
defaults
	mode tcp
	timeout connect 5s
	timeout client 10m
	timeout server 10m
frontend f
	bind %s
	default_backend b
backend b
	server up %s
`, listen, upstream)
}

// runWorkload runs one workload against every proxy, in turn, with one
// upstream for them all.
func runWorkload(cfg *config, round int, w string) ([]record, error) {
	if w == "dial" {
		return runDial(cfg, round)
	}
	up, err := startUpstream(cfg, w)
	if err != nil {
		return nil, fmt.Errorf("%s upstream: %w", w, err)
	}
	defer started(up)()
	var recs []record
	for _, name := range cfg.proxies {
		if name == "direct" && strings.HasPrefix(w, "idle") {
			continue // the upstream's own memory is not the question
		}
		for try := 0; ; try++ {
			proc.WaitQuiet(cfg.quietPct, cfg.quietWait)
			rs := measured(func() []record { return runOne(cfg, round, w, name, up.Pid()) })
			// Memory does not suffer from a neighbour's CPU: only the
			// rate workloads are run again.
			noisy := rs[0].BgPct > cfg.maxBg && try < 2 && !strings.HasPrefix(w, "idle")
			for i := range rs {
				rs[i].Replaced = noisy
			}
			recs = append(recs, rs...)
			if !noisy {
				break
			}
		}
	}
	return recs, nil
}

// measured runs fn and sets, in the records it returns, how much of a core
// other work used meanwhile: the machine's busy time less what this run's
// processes used. A shared machine runs other work in bursts; a run that
// shared its cores with one is run again.
func measured(fn func() []record) []record {
	busy0, _ := proc.MachineBusy()
	self0 := childrenCPU()
	t0 := time.Now()
	rs := fn()
	wall := time.Since(t0).Seconds()
	busy1, _ := proc.MachineBusy()
	// The clients and the proxy (stopped by then) are reaped children; the
	// upstream runs on.
	ours := childrenCPU() - self0 + rs[0].upstreamCPU
	for i := range rs {
		rs[i].BgPct = math.Max(0, 100*((busy1-busy0)-ours)/wall)
	}
	return rs
}

// childrenCPU is the CPU time of this process and of the children it has
// waited for (the clients), in seconds.
func childrenCPU() float64 {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	t := func(r syscall.Rusage) float64 {
		return time.Duration(r.Utime.Nano() + r.Stime.Nano()).Seconds()
	}
	return t(self) + t(kids)
}

// runOne measures one proxy (or none, "direct") on one workload; upPid is
// the upstream server's.
func runOne(cfg *config, round int, w, name string, upPid int) []record {
	base := record{Round: round, Workload: w, Proxy: name}
	up0 := procCPU(upPid)
	target := host + ":" + proxyPort
	pid := 0
	if name == "direct" {
		target = host + ":" + upPort
	} else {
		p, err := startProxy(cfg, name)
		if err != nil {
			base.Error = err.Error()
			return []record{base}
		}
		defer started(p)()
		pid = p.Pid()
	}
	proxy0 := procCPU(pid)
	var rs []record
	switch {
	case strings.HasPrefix(w, "redis"):
		rs = runRedis(cfg, base, w, target, pid)
	case strings.HasPrefix(w, "echo"):
		rs = []record{runLoadgen(cfg, base, w, target, pid)}
	default:
		rs = []record{runIdle(cfg, base, target, pid)}
	}
	rs[0].upstreamCPU = procCPU(upPid) - up0
	if pid > 0 && rs[0].ProxyCPU == 0 {
		rs[0].ProxyCPU = procCPU(pid) - proxy0 // the idle workload
	}
	return rs
}

// runRedis runs redis-benchmark (SET and GET, 50 connections) and reads its
// CSV: requests per second and latency per test; the proxy's CPU time is
// taken over the whole run and shared out by requests.
func runRedis(cfg *config, base record, w, target string, pid int) []record {
	n, extra := cfg.redisN, []string(nil)
	if w == "redis-p16" {
		n, extra = cfg.redisPipeN, []string{"-P", "16"}
	}
	h, p, _ := strings.Cut(target, ":")
	argv := append([]string{"redis-benchmark", "-h", h, "-p", p, "-c", "50", "-n", strconv.Itoa(n),
		"-t", "set,get", "-r", "100000", "--csv"}, extra...)
	cpu0 := procCPU(pid)
	t0 := time.Now()
	out, _, err := proc.RunClient(cfg.loadCPUs, argv, nil, 5*time.Minute)
	wall := time.Since(t0).Seconds()
	cpu := procCPU(pid) - cpu0
	if err == nil && strings.Contains(strings.ToLower(string(out)), "error") {
		err = fmt.Errorf("redis-benchmark reported errors: %s", out)
	}
	if err != nil {
		base.Error = err.Error()
		return []record{base}
	}
	rows, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil || len(rows) < 2 {
		base.Error = fmt.Sprintf("unreadable redis-benchmark output: %v: %s", err, out)
		return []record{base}
	}
	var recs []record
	for _, row := range rows[1:] { // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
		r := base
		r.Test = row[0]
		r.RPS = atof(row[1])
		r.P50us = 1000 * atof(row[4])
		r.P99us = 1000 * atof(row[6])
		if pid > 0 {
			r.ProxyCPU = cpu
			r.CPUPerOp = 1e6 * cpu / float64(2*n) // SET and GET, n requests each
			r.ProxyPct = 100 * cpu / wall
		}
		r.Raw = strings.Join(row, ",")
		recs = append(recs, r)
	}
	return recs
}

// runLoadgen runs the C load generator through the proxy to the C echo
// server; it reports the proxy's CPU itself (-pid) over the measured window.
func runLoadgen(cfg *config, base record, w, target string, pid int) record {
	conns, depth, size := "100", "1", "64"
	if w == "echo-4KiB-d4" {
		depth, size = "4", "4096"
	}
	secs := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }
	argv := []string{filepath.Join(cfg.bin, "loadgen"), "-addr", target, "-c", conns, "-d", depth, "-s", size,
		"-w", secs(cfg.warmup), "-t", secs(cfg.duration), "-pid", strconv.Itoa(pid)}
	var v struct {
		MsgsPerS  float64 `json:"msgs_per_s"`
		Msgs      float64 `json:"msgs"`
		P50       float64 `json:"lat_p50_us"`
		P99       float64 `json:"lat_p99_us"`
		Errors    int64   `json:"errors"`
		Error     string  `json:"error"`
		ServerCPU float64 `json:"server_cpu_s"`
		ServerPct float64 `json:"server_cpu_pct"`
	}
	raw, err := runJSON(cfg.loadCPUs, argv, nil, cfg.warmup+cfg.duration+time.Minute, &v)
	if err != nil {
		base.Error = err.Error()
		return base
	}
	base.RPS, base.P50us, base.P99us, base.Raw = v.MsgsPerS, v.P50, v.P99, raw
	if pid > 0 && v.Msgs > 0 {
		base.ProxyCPU, base.ProxyPct = v.ServerCPU, v.ServerPct
		base.CPUPerOp = 1e6 * v.ServerCPU / v.Msgs
	}
	if v.Errors > 0 || v.Error != "" {
		base.Error = fmt.Sprintf("%d errors: %s", v.Errors, v.Error)
	}
	return base
}

// runIdle holds idle proxied pairs open and reads what they cost the proxy
// in resident memory.
func runIdle(cfg *config, base record, target string, pid int) record {
	argv := []string{filepath.Join(cfg.bin, "idle"), "-addr", target, "-n", strconv.Itoa(cfg.idleConns), "-pid", strconv.Itoa(pid)}
	var v struct {
		PerConnKiB float64 `json:"per_conn_kib"`
		Opened     int     `json:"opened"`
		Error      string  `json:"error"`
	}
	raw, err := runJSON(cfg.loadCPUs, argv, nil, 5*time.Minute, &v)
	if err != nil {
		base.Error = err.Error()
		return base
	}
	base.KiB, base.Raw = v.PerConnKiB, raw
	if v.Error != "" || v.Opened != cfg.idleConns {
		base.Error = fmt.Sprintf("%d of %d opened: %s", v.Opened, cfg.idleConns, v.Error)
	}
	return base
}

// runDial measures connections established per second: package net's
// Dial in goroutines against reactor's Client.Dial in goroutines and
// EventLoop.Dial from the loop, the dialler pinned to the proxy CPUs and
// the C echo server to the load CPUs.
func runDial(cfg *config, round int) ([]record, error) {
	up, err := startUpstream(cfg, "dial")
	if err != nil {
		return nil, fmt.Errorf("dial upstream: %w", err)
	}
	defer started(up)()
	var recs []record
	for _, mode := range []string{"net", "client", "loop"} {
		proc.WaitQuiet(cfg.quietPct, cfg.quietWait)
		r := record{Round: round, Workload: "dial", Proxy: mode}
		argv := []string{filepath.Join(cfg.bin, "dialrate"), "-addr", host + ":" + upPort, "-mode", mode,
			"-n", strconv.Itoa(cfg.dialConns), "-c", strconv.Itoa(cfg.dialFlight)}
		var v struct {
			ConnsPerS float64 `json:"conns_per_s"`
			CPU       float64 `json:"cpu_s"`
			Opened    float64 `json:"opened"`
			Error     string  `json:"error"`
		}
		raw, err := runJSON(cfg.proxyCPUs, argv, []string{"GOMAXPROCS=1"}, 2*time.Minute, &v)
		if err != nil {
			r.Error = err.Error()
		} else {
			r.RPS, r.Error, r.Raw = v.ConnsPerS, v.Error, raw
			if v.Opened > 0 {
				r.CPUPerOp = 1e6 * v.CPU / v.Opened
			}
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// runJSON runs a client that prints its result as a JSON line (loadgen,
// idle, dialrate: each exits non-zero on errors but still prints it), and
// decodes the last such line into v.
func runJSON(cpus string, argv, env []string, limit time.Duration, v any) (string, error) {
	out, _, err := proc.RunClient(cpus, argv, env, limit)
	line := proc.LastJSONLine(out)
	if line == nil {
		return "", fmt.Errorf("%s printed no result: %v", filepath.Base(argv[0]), err)
	}
	if err := json.Unmarshal(line, v); err != nil {
		return "", fmt.Errorf("%s: %w", filepath.Base(argv[0]), err)
	}
	return string(line), nil
}

func procCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	v, _ := proc.CPU(pid)
	return v
}

func atof(s string) float64 {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

func machine() map[string]string {
	out := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, cpu, _ = strings.Cut(l, ": ")
				break
			}
		}
	}
	return map[string]string{
		"nproc":   strconv.Itoa(runtime.NumCPU()),
		"cpu":     cpu,
		"kernel":  out("uname", "-r"),
		"go":      runtime.Version(),
		"haproxy": firstLine(out("haproxy", "-v")),
		"redis":   out("redis-server", "--version"),
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// tables formats the medians over rounds of every (workload, test, proxy),
// with reactor's ratio to HAProxy and to the Go proxy.
func tables(res *results) string {
	type key struct{ w, test, p string }
	cells := map[key][]record{}
	var order []key
	for _, r := range res.Records {
		if r.Replaced {
			continue // a noisy run, run again
		}
		k := key{r.Workload, r.Test, r.Proxy}
		if _, ok := cells[k]; !ok {
			order = append(order, k)
		}
		cells[k] = append(cells[k], r)
	}
	med := func(k key, f func(record) float64) float64 {
		var v []float64
		for _, r := range cells[k] {
			if r.Error == "" {
				v = append(v, f(r))
			}
		}
		if len(v) == 0 {
			return math.NaN()
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	errCount := func(k key) int {
		n := 0
		for _, r := range cells[k] {
			if r.Error != "" {
				n++
			}
		}
		return n
	}
	spread := func(k key) string {
		var v []float64
		for _, r := range cells[k] {
			if r.Error == "" {
				v = append(v, r.RPS)
			}
		}
		if len(v) == 0 {
			return "—"
		}
		return fmt.Sprintf("%.0f–%.0f", slices.Min(v), slices.Max(v))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Medians of %d interleaved rounds.\n\n", maxRound(res))
	fmt.Fprintln(&b, "| workload | test | proxy | req/s (median) | min–max | p50 µs | p99 µs | proxy CPU % | proxy CPU µs/req | ÷ haproxy | ÷ gonet | errors |")
	fmt.Fprintln(&b, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, k := range order {
		if strings.HasPrefix(k.w, "idle") || k.w == "dial" {
			continue
		}
		rps := med(k, func(r record) float64 { return r.RPS })
		ratio := func(other string) string {
			o := med(key{k.w, k.test, other}, func(r record) float64 { return r.RPS })
			if k.p != "reactor" || math.IsNaN(o) || o == 0 {
				return ""
			}
			return fmt.Sprintf("%.2f", rps/o)
		}
		cpuPct, cpuOp := "", ""
		if k.p != "direct" {
			cpuPct = fmt.Sprintf("%.0f", med(k, func(r record) float64 { return r.ProxyPct }))
			cpuOp = fmt.Sprintf("%.2f", med(k, func(r record) float64 { return r.CPUPerOp }))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.0f | %s | %.0f | %.0f | %s | %s | %s | %s | %d |\n",
			k.w, k.test, k.p, rps, spread(k), med(k, func(r record) float64 { return r.P50us }),
			med(k, func(r record) float64 { return r.P99us }), cpuPct, cpuOp, ratio("haproxy"), ratio("gonet"), errCount(k))
	}
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| idle proxied pairs | proxy | KiB per pair (median) | errors |")
	fmt.Fprintln(&b, "|---|---|---:|---:|")
	for _, k := range order {
		if strings.HasPrefix(k.w, "idle") {
			fmt.Fprintf(&b, "| %s | %s | %.2f | %d |\n", k.w, k.p, med(k, func(r record) float64 { return r.KiB }), errCount(k))
		}
	}
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| dial rate | connections/s (median) | min–max | dialler CPU µs/conn | ÷ net |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|")
	for _, k := range order {
		if k.w == "dial" {
			rps := med(k, func(r record) float64 { return r.RPS })
			n := med(key{"dial", "", "net"}, func(r record) float64 { return r.RPS })
			fmt.Fprintf(&b, "| %s | %.0f | %s | %.1f | %.2f |\n", k.p, rps, spread(k),
				med(k, func(r record) float64 { return r.CPUPerOp }), rps/n)
		}
	}
	return b.String()
}

func maxRound(res *results) int {
	m := 0
	for _, r := range res.Records {
		m = max(m, r.Round)
	}
	return m
}

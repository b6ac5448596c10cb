package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tcpreactor/reactor/bench/internal/proc"
)

// Types of workload and the client that drives each.
const (
	typeEcho = "echo" // bin/loadgen
	typeIdle = "idle" // bin/idle
	typeHTTP = "http" // wrk with wrk/report.lua
)

// workload is one measured scenario.
type workload struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Conns    int    `json:"conns"`
	Depth    int    `json:"depth,omitempty"`    // echo: messages in flight per connection
	Size     int    `json:"size,omitempty"`     // echo: message bytes
	Pipeline int    `json:"pipeline,omitempty"` // http: requests sent back to back
	TLS      bool   `json:"tls,omitempty"`      // over TLS 1.3 (the handshake is not measured)
	Desc     string `json:"desc"`
}

// kind is the kind of server a workload runs against.
func (w workload) kind() string {
	switch {
	case w.Type == typeHTTP && w.TLS:
		return kindHTTPS
	case w.Type == typeHTTP:
		return kindHTTP
	case w.TLS:
		return kindTLSEcho
	}
	return kindEcho
}

var allWorkloads = []workload{
	{Name: "echo-64B-d1", Type: typeEcho, Conns: 100, Depth: 1, Size: 64,
		Desc: "echo, 64 B messages, 100 connections, 1 message in flight on each (latency-bound ping-pong)"},
	{Name: "echo-64B-d16", Type: typeEcho, Conns: 100, Depth: 16, Size: 64,
		Desc: "echo, 64 B messages, 100 connections, 16 in flight on each (batching: many messages per read)"},
	{Name: "echo-4KiB-c1000", Type: typeEcho, Conns: 1000, Depth: 1, Size: 4096,
		Desc: "echo, 4 KiB messages, 1000 connections, 1 in flight on each (bytes and many ready sockets)"},
	{Name: "echo-64B-c1000", Type: typeEcho, Conns: 1000, Depth: 1, Size: 64,
		Desc: "echo, 64 B messages, 1000 connections, 1 in flight on each (the ping-pong spread over more sockets)"},
	{Name: "echo-64B-c10k", Type: typeEcho, Conns: 10000, Depth: 1, Size: 64,
		Desc: "the same with 10 000 connections (per-connection state no longer fits in the caches)"},
	{Name: "echo-64B-c19k", Type: typeEcho, Conns: 19000, Depth: 1, Size: 64,
		Desc: "the same with 19 000 connections (near the 20 000 descriptor limit of both client and server)"},
	{Name: "idle-10k", Type: typeIdle, Conns: 10000,
		Desc: "server RSS growth per idle connection, 10 000 connections each echoed one byte"},
	{Name: "idle-19k", Type: typeIdle, Conns: 19000,
		Desc: "the same with 19 000 connections (near the 20 000 descriptor limit)"},
	{Name: "http", Type: typeHTTP, Conns: 100, Pipeline: 1,
		Desc: "HTTP/1.1 GET / \"Hello, World!\", wrk, 100 connections, no pipelining"},
	{Name: "http-pipe16", Type: typeHTTP, Conns: 100, Pipeline: 16,
		Desc: "the same with 16 requests pipelined per connection (TechEmpower plaintext style)"},
	{Name: "tls-echo-64B-d1", Type: typeEcho, Conns: 100, Depth: 1, Size: 64, TLS: true,
		Desc: "echo over TLS 1.3, 64 B messages, 100 connections, 1 in flight on each (OpenSSL client; handshakes in the warm-up)"},
	{Name: "tls-echo-4KiB-d1", Type: typeEcho, Conns: 100, Depth: 1, Size: 4096, TLS: true,
		Desc: "echo over TLS 1.3, 4 KiB messages, 100 connections, 1 in flight on each"},
	{Name: "tls-idle-5k", Type: typeIdle, Conns: 5000, TLS: true,
		Desc: "server RSS growth per idle TLS connection after its handshake, 5 000 connections each echoed one byte"},
	{Name: "https-pipe16", Type: typeHTTP, Conns: 100, Pipeline: 16, TLS: true,
		Desc: "HTTPS (TLS 1.3, wrk), GET / \"Hello, World!\", 100 connections, 16 requests pipelined per connection"},
}

// record is the outcome of one server on one workload in one round.
type record struct {
	Round    int       `json:"round"`
	Workload string    `json:"workload"`
	Server   string    `json:"server"`
	Started  time.Time `json:"started"`
	// Error is set when the run produced no figure (build failure, a server
	// that crashed or never listened, a client that failed).
	Error string `json:"error,omitempty"`
	// ClientErrors counts what the client found wrong while the run still
	// produced a figure (corrupt echoes, HTTP errors, idle connections lost);
	// such a figure is flagged in the tables.
	ClientErrors int64 `json:"client_errors"`
	// Value is the headline figure: messages/s (echo), requests/s (http),
	// KiB of server RSS per connection (idle).
	Value float64 `json:"value"`
	MiBps float64 `json:"mib_per_s,omitempty"`
	P50   float64 `json:"p50_us,omitempty"`
	P99   float64 `json:"p99_us,omitempty"`
	P999  float64 `json:"p999_us,omitempty"`
	// ServerCPUPct and ClientCPUPct are CPU time over the measured window as
	// a percentage of one core; BgCPUPct is everything else the machine ran
	// meanwhile (other processes, interrupts), from /proc/stat.
	ServerCPUPct float64 `json:"server_cpu_pct"`
	ClientCPUPct float64 `json:"client_cpu_pct"`
	BgCPUPct     float64 `json:"bg_cpu_pct"`
	// BgBeforePct is the machine's load just before the server started,
	// after waiting (bounded by -quiet-wait) for it to drop below -quiet.
	BgBeforePct float64 `json:"bg_before_pct"`
	// ServerUsPerOp is server CPU microseconds per message or request: the
	// server's cost, readable even when the client was the bottleneck.
	ServerUsPerOp float64         `json:"server_us_per_op,omitempty"`
	RSSBeforeKiB  int64           `json:"rss_before_kib,omitempty"`
	RSSAfterKiB   int64           `json:"rss_after_kib,omitempty"`
	Raw           json.RawMessage `json:"raw,omitempty"` // the client's own JSON line
}

// config is what every run shares.
type config struct {
	dir           string // the bench directory
	host          string
	basePort      int
	ports         int // runs rotate over basePort .. basePort+ports-1
	serverCPUs    string
	clientCPUs    string
	loops         int
	clientThreads int
	warmup        time.Duration
	duration      time.Duration
	wrk           string           // wrk's path, "" when HTTP workloads are skipped
	tools         map[string]error // build results of loadgen and idle
}

// runOne starts s fresh, runs w against it once, stops it by its pid and
// returns what was measured.
func runOne(cfg *config, s server, w workload, round, seq int) record {
	rec := record{Round: round, Workload: w.Name, Server: s.Name, Started: time.Now().UTC()}
	if s.BuildErr != "" {
		rec.Error = "build failed"
		return rec
	}
	switch w.Type {
	case typeEcho:
		if err := cfg.tools["loadgen"]; err != nil {
			rec.Error = "loadgen did not build"
			return rec
		}
	case typeIdle:
		if err := cfg.tools["idle"]; err != nil {
			rec.Error = "idle did not build"
			return rec
		}
	}
	addr := fmt.Sprintf("%s:%d", cfg.host, cfg.basePort+seq%cfg.ports)
	srv, err := startServer(s, addr, cfg.serverCPUs, cfg.loops, 15*time.Second)
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	defer srv.Stop()

	if w.Type == typeHTTP && cfg.warmup > 0 {
		// wrk has no warm-up phase of its own: a discarded short run.
		if _, _, err := proc.RunClient(cfg.clientCPUs, wrkArgs(cfg, w, addr, cfg.warmup), wrkEnv(w), cfg.warmup+30*time.Second); err != nil {
			rec.Error = "wrk warm-up: " + err.Error()
			return rec
		}
	}

	var argv []string
	limit := cfg.warmup + cfg.duration + 60*time.Second
	switch w.Type {
	case typeEcho:
		argv = []string{filepath.Join(cfg.dir, "bin", "loadgen"), "-addr", addr,
			"-c", strconv.Itoa(w.Conns), "-d", strconv.Itoa(w.Depth), "-s", strconv.Itoa(w.Size),
			"-w", secs(cfg.warmup), "-t", secs(cfg.duration),
			"-threads", strconv.Itoa(cfg.clientThreads), "-pid", strconv.Itoa(srv.Pid())}
		if w.TLS {
			argv = append(argv, "-tls", "13")
		}
	case typeIdle:
		argv = []string{filepath.Join(cfg.dir, "bin", "idle"), "-addr", addr,
			"-n", strconv.Itoa(w.Conns), "-pid", strconv.Itoa(srv.Pid())}
		if w.TLS {
			argv = append(argv, "-tls")
		}
		limit = 5 * time.Minute
	case typeHTTP:
		argv = wrkArgs(cfg, w, addr, cfg.duration)
	}

	srv0, _ := proc.CPU(srv.Pid())
	st0, _ := proc.MachineBusy()
	t0 := time.Now()
	out, clientCPU, cerr := proc.RunClient(cfg.clientCPUs, argv, wrkEnv(w), limit)
	wall := time.Since(t0).Seconds()
	srv1, _ := proc.CPU(srv.Pid())
	st1, _ := proc.MachineBusy()

	if !srv.Alive() {
		rec.Error = fmt.Sprintf("server exited during the run (%v): %s", srv.Err, srv.Log.String())
		return rec
	}
	line := proc.LastJSONLine(out)
	if line == nil {
		msg := "client printed no result"
		if cerr != nil {
			msg = cerr.Error()
		}
		rec.Error = msg
		return rec
	}
	rec.Raw = line
	rec.ServerCPUPct = 100 * (srv1 - srv0) / wall
	rec.ClientCPUPct = 100 * clientCPU / wall
	if busy := st1 - st0; st1 > 0 {
		rec.BgCPUPct = math.Max(0, 100*(busy-(srv1-srv0)-clientCPU)/wall)
	}
	if err := fill(&rec, w, line); err != nil {
		rec.Error = err.Error()
	}
	return rec
}

// fill reads the client's JSON line into rec.
func fill(rec *record, w workload, line []byte) error {
	switch w.Type {
	case typeEcho:
		var r struct {
			Msgs         int64   `json:"msgs"`
			MsgsPerS     float64 `json:"msgs_per_s"`
			MiBps        float64 `json:"mib_per_s"`
			P50          float64 `json:"lat_p50_us"`
			P99          float64 `json:"lat_p99_us"`
			P999         float64 `json:"lat_p999_us"`
			Errors       int64   `json:"errors"`
			Error        string  `json:"error"`
			Connected    int     `json:"connected"`
			ClientCPUPct float64 `json:"client_cpu_pct"`
			ServerCPUS   float64 `json:"server_cpu_s"`
			ServerCPUPct float64 `json:"server_cpu_pct"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		if r.Msgs == 0 {
			return fmt.Errorf("no message completed (%d of %d connected): %s", r.Connected, w.Conns, r.Error)
		}
		rec.Value, rec.MiBps, rec.P50, rec.P99, rec.P999 = r.MsgsPerS, r.MiBps, r.P50, r.P99, r.P999
		rec.ClientErrors = r.Errors
		// The load generator sampled both processes over the measured window
		// only, which excludes connection set-up and warm-up: prefer it.
		rec.ClientCPUPct, rec.ServerCPUPct = r.ClientCPUPct, r.ServerCPUPct
		if r.ServerCPUS >= 0 {
			rec.ServerUsPerOp = r.ServerCPUS / float64(r.Msgs) * 1e6
		}
	case typeIdle:
		var r struct {
			Opened       int     `json:"opened"`
			Errors       int64   `json:"errors"`
			Error        string  `json:"error"`
			RSSBeforeKiB int64   `json:"rss_before_kib"`
			RSSAfterKiB  int64   `json:"rss_after_kib"`
			PerConnKiB   float64 `json:"per_conn_kib"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		if r.Opened == 0 {
			return fmt.Errorf("no connection opened: %s", r.Error)
		}
		rec.Value, rec.RSSBeforeKiB, rec.RSSAfterKiB = r.PerConnKiB, r.RSSBeforeKiB, r.RSSAfterKiB
		rec.ClientErrors = r.Errors
	case typeHTTP:
		var r struct {
			Requests   int64   `json:"requests"`
			DurationUs float64 `json:"duration_us"`
			Connect    int64   `json:"errors_connect"`
			Read       int64   `json:"errors_read"`
			Write      int64   `json:"errors_write"`
			Status     int64   `json:"errors_status"`
			Timeout    int64   `json:"errors_timeout"`
			P50        float64 `json:"lat_p50_us"`
			P99        float64 `json:"lat_p99_us"`
			P999       float64 `json:"lat_p999_us"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		if r.Requests == 0 || r.DurationUs <= 0 {
			return errors.New("wrk completed no request")
		}
		rec.Value = float64(r.Requests) / (r.DurationUs / 1e6)
		rec.P50, rec.P99, rec.P999 = r.P50, r.P99, r.P999
		rec.ClientErrors = r.Connect + r.Read + r.Write + r.Status + r.Timeout
		// CPU was sampled around the whole wrk run, which is the measured
		// duration plus wrk's start-up: close enough for a per-request cost.
		rec.ServerUsPerOp = rec.ServerCPUPct / 100 * (r.DurationUs / 1e6) / float64(r.Requests) * 1e6
	}
	return nil
}

func wrkArgs(cfg *config, w workload, addr string, d time.Duration) []string {
	threads := max(1, min(cfg.clientThreads, w.Conns))
	scheme := "http://"
	if w.TLS {
		scheme = "https://" // wrk's OpenSSL, which does not verify the certificate
	}
	return []string{cfg.wrk, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(w.Conns),
		"-d", strconv.Itoa(int(math.Ceil(d.Seconds()))) + "s",
		"-s", filepath.Join(cfg.dir, "wrk", "report.lua"), scheme + addr + "/"}
}

func wrkEnv(w workload) []string {
	if w.Type != typeHTTP {
		return nil
	}
	return []string{"WRK_PIPELINE=" + strconv.Itoa(max(1, w.Pipeline))}
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

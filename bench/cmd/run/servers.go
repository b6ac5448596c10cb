package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tcpreactor/reactor/bench/internal/proc"
)

// Kinds of server, and so of workload: an echo server serves the echo and
// idle workloads, an HTTP server the HTTP ones; their TLS forms the TLS
// workloads.
const (
	kindEcho    = "echo"
	kindHTTP    = "http"
	kindTLSEcho = "tls-echo"
	kindHTTPS   = "https"
)

// cServer is the name the C epoll echo server (cserver/echo.c) runs under.
const cServer = "c-epoll"

// server is one peer the harness can run.
type server struct {
	Name     string // directory name under servers/, or cServer
	Kind     string // kindEcho, kindHTTP, kindTLSEcho or kindHTTPS: see kindOf
	Bin      string // built executable
	BuildErr string // why it did not build; empty when it did
	Prebuilt bool   // given with -extra: Bin is used as it is
}

// discover lists the servers under dir/servers (every directory holding a Go
// file; a name ending in "http", as gnet-http, nethttp, fasthttp and
// reactor-http do, is an HTTP server, one ending in "https" an HTTPS server
// and one ending in "-tls" a TLS echo server) plus the C echo server.
// New directories, such as the reactor servers, are picked up by name.
func discover(dir string) ([]server, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "servers"))
	if err != nil {
		return nil, err
	}
	list := []server{{Name: cServer, Kind: kindEcho}}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		gofiles, _ := filepath.Glob(filepath.Join(dir, "servers", e.Name(), "*.go"))
		if len(gofiles) == 0 {
			continue
		}
		list = append(list, server{Name: e.Name(), Kind: kindOf(e.Name())})
	}
	sort.SliceStable(list, func(i, j int) bool { return order(list[i].Name) < order(list[j].Name) })
	return list, nil
}

// kindOf tells a server's kind by its name, for discover and parseExtra: a
// name ending in "https" is an HTTPS server, one ending in "http" an HTTP
// server, one ending in "-tls" a TLS echo server, any other an echo server.
func kindOf(name string) string {
	switch {
	case strings.HasSuffix(name, "https"):
		return kindHTTPS
	case strings.HasSuffix(name, "http"):
		return kindHTTP
	case strings.HasSuffix(name, "-tls"):
		return kindTLSEcho
	}
	return kindEcho
}

// parseExtra reads -extra: comma-separated name=binary pairs naming servers
// that are already built, such as the reactor server built from another
// commit, to be run beside the discovered ones under that name (an A/B of two
// builds in one interleaved run). Its name tells its kind, as in discover
// (kindOf). A name may not repeat a discovered server's or another
// extra's; a binary that is missing fails the run now, not server by server.
func parseExtra(spec string, discovered []server) ([]server, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	taken := map[string]bool{}
	for _, s := range discovered {
		taken[s.Name] = true
	}
	var out []server
	for item := range strings.SplitSeq(spec, ",") {
		name, bin, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || name == "" || bin == "" || strings.ContainsAny(name, " /") {
			return nil, fmt.Errorf("-extra %q: want name=binary", item)
		}
		if taken[name] {
			return nil, fmt.Errorf("-extra: server name %q is already taken", name)
		}
		taken[name] = true
		abs, err := filepath.Abs(bin)
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(abs); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("-extra %s: %s is not an executable file", name, bin)
		}
		out = append(out, server{Name: name, Kind: kindOf(name), Bin: abs, Prebuilt: true})
	}
	return out, nil
}

// order puts the reference servers first in tables and charts: the C ceiling,
// then each kind's baseline, which its ratios are taken against (gnet,
// gnet-http, gonet-tls, fasthttp-https: see baseline), then the reactor's
// servers, then the rest in name order.
func order(name string) string {
	switch {
	case name == cServer:
		return "0"
	case name == baseline(kindOf(name)):
		return "1"
	case slices.Contains([]string{"reactor", "reactor-http", "reactor-tls", "reactor-https"}, name):
		return "2"
	}
	return "3" + name
}

// buildAll builds the tools and the chosen servers into dir/bin. A server
// that does not build keeps its error in BuildErr and is reported in the
// tables, not dropped; a tool that does not build is fatal for the workloads
// that need it, which the caller learns from the returned map.
func buildAll(ctx context.Context, dir string, servers []server, log func(string, ...any)) (map[string]error, error) {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	tools := map[string]error{}
	cc := func(out, src string, libs ...string) error {
		args := append([]string{"-O2", "-Wall", "-pthread", "-o", filepath.Join(bin, out), src}, libs...)
		return run(ctx, dir, "gcc", args...)
	}
	// The load generator speaks TLS with OpenSSL (libssl-dev).
	tools["loadgen"] = cc("loadgen", filepath.Join("loadgen", "loadgen.c"), "-lssl", "-lcrypto")
	tools["idle"] = run(ctx, dir, "go", "build", "-o", filepath.Join(bin, "idle"), "./idle")
	for k, err := range tools {
		if err != nil {
			log("build %s: %v", k, err)
		}
	}

	// Go builds run two at a time: the machine may have two cores, and the
	// linker is the slow part.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i := range servers {
		s := &servers[i]
		if s.Prebuilt {
			continue
		}
		s.Bin = filepath.Join(bin, s.Name)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var err error
			if s.Name == cServer {
				err = cc(cServer, filepath.Join("cserver", "echo.c"))
			} else {
				err = run(ctx, dir, "go", "build", "-o", s.Bin, "./servers/"+s.Name)
			}
			if err != nil {
				s.BuildErr = err.Error()
			}
		})
	}
	wg.Wait()
	for _, s := range servers {
		if s.BuildErr != "" {
			log("server %s does not build; it is reported as failed:\n%s", s.Name, s.BuildErr)
		}
	}
	return tools, nil
}

// run runs a build command in dir; the error carries the command's output.
func run(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// startServer starts s on addr, pinned to cpus, and returns once addr
// accepts connections, or an error if it exits or does not listen in time.
func startServer(s server, addr, cpus string, loops int, timeout time.Duration) (*proc.Process, error) {
	if err := proc.PortFree(addr); err != nil {
		return nil, err
	}
	argv := proc.Pinned(cpus, []string{s.Bin, "-addr", addr, "-loops", fmt.Sprint(loops)})
	p, err := proc.Start(s.Name, argv, nil)
	if err != nil {
		return nil, err
	}
	if err := p.WaitListening(addr, timeout); err != nil {
		return nil, err
	}
	return p, nil
}

// Command dialrate measures how fast a process establishes TCP connections:
// it opens -n connections to -addr with -c dials in flight at a time, keeps
// them open, and prints one JSON line with the rate. The ways to dial:
//
//	net     net.Dial in -c goroutines, each dialling in a loop (package net's
//	        connect: non-blocking under the runtime's netpoller)
//	client  reactor's Client.Dial in -c goroutines: each call waits until
//	        the connection is open and OnOpen has run on a loop
//	loop    reactor's EventLoop.Dial from the loop itself: -c dials are
//	        started, and each OnOpen (or failure) starts the next, with no
//	        goroutine per dial (how a proxy or load generator dials)
//
// The reactor modes use one event loop (-loops). When every connection is
// open the clock stops, and the connections are closed (package net's with
// SO_LINGER 0, a reset, so that no TIME_WAIT is left holding ephemeral
// ports; reactor's by Client.Close).
//
//	dialrate -addr 127.0.0.1:9000 -mode loop -n 5000 -c 64
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor"
)

type result struct {
	Tool       string  `json:"tool"`
	Mode       string  `json:"mode"`
	Addr       string  `json:"addr"`
	Conns      int     `json:"conns"`
	InFlight   int     `json:"in_flight"`
	Opened     int64   `json:"opened"`
	Errors     int64   `json:"errors"`
	Error      string  `json:"error"`
	Seconds    float64 `json:"seconds"`
	ConnsPerS  float64 `json:"conns_per_s"`
	CPUSeconds float64 `json:"cpu_s"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "address to dial")
	mode := flag.String("mode", "loop", "net, client or loop")
	n := flag.Int("n", 5000, "connections to open")
	c := flag.Int("c", 64, "dials in flight at a time")
	loops := flag.Int("loops", 1, "event loops of the reactor modes")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the dialling here")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}

	res := result{Tool: "dialrate", Mode: *mode, Addr: *addr, Conns: *n, InFlight: *c}
	cpu0 := cpuSeconds()
	start := time.Now()
	var err error
	var closeAll func()
	switch *mode {
	case "net":
		closeAll, err = dialNet(*addr, *n, *c, &res)
	case "client":
		closeAll, err = dialClient(*addr, *n, *c, *loops, &res)
	case "loop":
		closeAll, err = dialLoop(*addr, *n, *c, *loops, &res)
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	res.Seconds = time.Since(start).Seconds()
	res.CPUSeconds = cpuSeconds() - cpu0
	if *profile != "" {
		pprof.StopCPUProfile()
	}
	if res.Seconds > 0 {
		res.ConnsPerS = float64(res.Opened) / res.Seconds
	}
	if err != nil {
		res.Error = err.Error()
	}
	if closeAll != nil {
		closeAll()
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	if err != nil || res.Errors > 0 {
		os.Exit(1)
	}
}

// cpuSeconds is the process's user+system CPU time so far.
func cpuSeconds() float64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// dialNet dials with package net from c goroutines.
func dialNet(addr string, n, c int, res *result) (func(), error) {
	var next, errs atomic.Int64
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range c {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				cn, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				conns[i] = cn
			}
		})
	}
	wg.Wait()
	res.Errors = errs.Load()
	res.Opened = int64(n) - res.Errors
	return func() {
		for _, cn := range conns {
			if cn != nil {
				_ = cn.(*net.TCPConn).SetLinger(0)
				_ = cn.Close()
			}
		}
	}, errOf(firstErr)
}

func errOf(v atomic.Value) error {
	if s, ok := v.Load().(string); ok {
		return errors.New(s)
	}
	return nil
}

// counter counts the connections opened.
type counter struct {
	reactor.HandlerFuncs
	opened atomic.Int64
}

// dialClient dials with Client.Dial from c goroutines.
func dialClient(addr string, n, c, loops int, res *result) (func(), error) {
	h := &counter{}
	h.Open = func(*reactor.Conn) { h.opened.Add(1) }
	cl, err := reactor.NewClient(h, reactor.WithLoops(loops), reactor.WithLingerTimeout(0))
	if err != nil {
		return nil, err
	}
	var next, errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if _, err := cl.Dial(context.Background(), "tcp", addr); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	wg.Wait()
	res.Errors = errs.Load()
	res.Opened = h.opened.Load()
	return func() { _ = cl.Close() }, errOf(firstErr)
}

// chain is the handler of the loop mode: every dial that ends starts the
// next, until n have been started. Its fields are owned by the one loop.
type chain struct {
	addr    string
	n       int
	started int
	opened  int64
	errs    int64
	first   error
	done    chan struct{}
}

func (ch *chain) next(l *reactor.EventLoop) {
	if ch.started == ch.n {
		if ch.opened+ch.errs == int64(ch.n) {
			close(ch.done)
		}
		return
	}
	ch.started++
	if err := l.Dial("tcp", ch.addr, ch); err != nil {
		ch.OnDialError(err)
	}
}

func (ch *chain) OnOpen(c *reactor.Conn) {
	ch.opened++
	ch.next(c.Loop())
}
func (ch *chain) OnMessage(_ *reactor.Conn, in *reactor.Buffer) { in.Discard(in.Len()) }
func (ch *chain) OnWriteComplete(*reactor.Conn)                 {}
func (ch *chain) OnClose(*reactor.Conn, error)                  {}
func (ch *chain) OnDialError(err error) {
	ch.errs++
	if ch.first == nil {
		ch.first = err
	}
	if ch.started == ch.n && ch.opened+ch.errs == int64(ch.n) {
		close(ch.done)
	}
}

// dialLoop dials from a loop's own callbacks, c at a time.
func dialLoop(addr string, n, c, loops int, res *result) (func(), error) {
	cl, err := reactor.NewClient(reactor.HandlerFuncs{}, reactor.WithLoops(loops), reactor.WithLingerTimeout(0))
	if err != nil {
		return nil, err
	}
	// The chain runs on one loop: the one the first Client.Dial would use
	// is not reachable, so a helper connection is dialled to reach it.
	ready := make(chan *reactor.EventLoop, 1)
	ch := &chain{addr: addr, n: n, done: make(chan struct{})}
	seed, err := cl.Dial(context.Background(), "tcp", addr)
	if err != nil {
		_ = cl.Close()
		return nil, err
	}
	l := seed.Loop()
	_ = seed.Close()
	_ = l.Submit(func() {
		for range min(c, n) {
			ch.next(l)
		}
		ready <- l
	})
	<-ready
	<-ch.done
	res.Opened, res.Errors = ch.opened, ch.errs
	return func() { _ = cl.Close() }, ch.first
}

// Command chat is a line-based chat server on reactor: every line a client
// sends is broadcast to every other client, whichever event loop serves it.
//
//	go run ./examples/chat -addr 127.0.0.1:9001
//
// Connect two or more clients (`nc 127.0.0.1 9001`) and type. Lines longer
// than 4 KiB end the sender's connection. SIGINT or SIGTERM stops it
// gracefully within -shutdown-timeout, a second signal at once; it exits 0
// only after a graceful stop.
//
// Connections live on different loops, so a broadcast writes to connections
// owned by other goroutines: Conn.Write is safe from any goroutine and keeps
// each sender's order. The room's member set is shared by the loops and
// guarded by a mutex.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/tcpreactor/reactor"
	"github.com/tcpreactor/reactor/examples/internal/graceful"
)

const maxLine = 4 << 10

// room is the set of connected clients.
type room struct {
	mu      sync.Mutex // guards members and nextID
	members map[*reactor.Conn]int
	nextID  int
}

func newRoom() *room { return &room{members: make(map[*reactor.Conn]int)} }

func (r *room) join(c *reactor.Conn) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextID++
	r.members[c] = r.nextID
	return r.nextID
}

func (r *room) leave(c *reactor.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.members, c)
}

// broadcast sends msg to every member except from. The members are copied
// out under the lock so no Write runs while it is held.
func (r *room) broadcast(from *reactor.Conn, msg []byte) {
	r.mu.Lock()
	others := make([]*reactor.Conn, 0, len(r.members))
	for c := range r.members {
		if c != from {
			others = append(others, c)
		}
	}
	r.mu.Unlock()
	for _, c := range others {
		_, _ = c.Write(msg) // ErrConnClosed: that member is leaving; nothing to do
	}
}

// handler returns the chat Handler for r.
func (r *room) handler() reactor.Handler {
	return reactor.HandlerFuncs{
		Open: func(c *reactor.Conn) {
			id := r.join(c)
			c.SetContext(id)
			_, _ = fmt.Fprintf(c, "welcome, you are user%d\n", id)
		},
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			id := c.Context().(int)
			for {
				i := in.IndexByte('\n')
				if i < 0 {
					if in.Len() > maxLine {
						_, _ = c.Write([]byte("line too long\n"))
						_ = c.Close()
						in.Discard(in.Len())
					}
					return
				}
				line := bytes.TrimRight(in.Next(i+1), "\r\n")
				msg := fmt.Appendf(nil, "user%d: %s\n", id, line)
				r.broadcast(c, msg)
			}
		},
		Close: func(c *reactor.Conn, err error) { r.leave(c) },
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "address to listen on")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops serving connections")
	timeout := flag.Duration("shutdown-timeout", 5*time.Second, "time allowed for a graceful shutdown")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Buffered for two: the second signal closes hard during the shutdown.
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	if err := run(*addr, *loops, *timeout, stop, log); err != nil {
		log.Error("chat", "err", err)
		os.Exit(1)
	}
}

// run serves until a signal on stop, then shuts down (see graceful.Run).
func run(addr string, loops int, timeout time.Duration, stop <-chan os.Signal, log *slog.Logger) error {
	srv, err := reactor.NewServer(addr, newRoom().handler(), reactor.WithLoops(loops), reactor.WithLogger(log))
	if err != nil {
		return err
	}
	log.Info("chat server listening", "addr", srv.Addr())
	if err := graceful.Run(srv, stop, timeout, log); err != nil {
		return err
	}
	log.Info("chat server stopped")
	return nil
}

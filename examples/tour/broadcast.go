package tour

import (
	"fmt"
	"slices"
	"sync"

	"github.com/tcpreactor/reactor"
)

// Room is exercise 3, a broadcast: every client is greeted with its name
// ("you are u1"), and every line it sends goes to every other client as
// "u1: line". The clients are served by different loops.
//
// The lesson: a connection belongs to its loop, but Conn.Write is safe
// from any goroutine: it copies the bytes and queues the connection for
// its own loop to flush, keeping each writer's order. So a line read on
// loop 0 may be written straight to a connection of loop 1. What the
// loops share, the member list, needs a lock; the writes happen outside
// it, so that no loop waits on another's work while holding it. Members
// are kept in a slice, in the order they joined: a map's order is random,
// which would make the simulation's runs differ.
type Room struct {
	mu      sync.Mutex // guards members and joined
	members []*reactor.Conn
	joined  int
}

var _ reactor.Handler = (*Room)(nil)

// member is a connection's name, in its Context.
type member struct{ name string }

// OnOpen joins the room and tells the client its name.
func (r *Room) OnOpen(c *reactor.Conn) {
	r.mu.Lock()
	r.joined++
	m := &member{name: fmt.Sprintf("u%d", r.joined)}
	r.members = append(r.members, c)
	r.mu.Unlock()
	c.SetContext(m)
	_, _ = fmt.Fprintf(c, "you are %s\n", m.name)
}

// OnMessage sends every whole line to the other members.
func (r *Room) OnMessage(c *reactor.Conn, in *reactor.Buffer) {
	name := c.Context().(*member).name
	for i := in.IndexByte('\n'); i >= 0; i = in.IndexByte('\n') {
		msg := fmt.Appendf(nil, "%s: %s", name, in.Next(i+1))
		r.mu.Lock()
		others := slices.Clone(r.members) // write outside the lock
		r.mu.Unlock()
		for _, o := range others {
			if o != c {
				_, _ = o.Write(msg) // ErrConnClosed if o is closing: nothing to do
			}
		}
	}
}

// OnWriteComplete does nothing.
func (r *Room) OnWriteComplete(*reactor.Conn) {}

// OnClose leaves the room.
func (r *Room) OnClose(c *reactor.Conn, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.members = slices.DeleteFunc(r.members, func(m *reactor.Conn) bool { return m == c })
}

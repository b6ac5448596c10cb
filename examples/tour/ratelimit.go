package tour

import (
	"time"

	"github.com/tcpreactor/reactor"
)

// RateLimit is exercise 2, a per-connection rate limit on the loop's
// timer: each connection has Burst tokens, one per line answered (with
// Reply, as Lines does), refilled to Burst every Per. Lines beyond the
// tokens wait in a queue of the connection; while the queue holds
// MaxQueue lines the connection stops reading (PauseRead), so a client
// that sends faster than its rate fills its own socket buffers, and then
// TCP's window stops it, rather than the server's memory.
//
// The lesson: a timer made with EventLoop.AfterFunc runs on the loop that
// owns the connection, so it may touch the connection's state and call
// Write, PauseRead and ResumeRead without a lock; and it must be stopped
// in OnClose, or it fires for a connection that is gone. The refill timer
// is armed only while there is something to refill, so an idle connection
// costs the loop nothing.
type RateLimit struct {
	Burst    int           // lines per Per; must be > 0
	Per      time.Duration // must be > 0
	MaxQueue int           // lines queued before reading pauses; must be > 0
	Reply    func([]byte) []byte
}

var _ reactor.Handler = (*RateLimit)(nil)

// limited is one connection's state, in its Context. Loop goroutine only.
type limited struct {
	tokens int
	queue  [][]byte       // lines waiting for a token, copied out of the input
	refill *reactor.Timer // nil while tokens == Burst
	paused bool
}

// OnOpen gives the connection its tokens.
func (h *RateLimit) OnOpen(c *reactor.Conn) {
	c.SetContext(&limited{tokens: h.Burst})
}

// OnMessage queues every whole line and answers as many as the tokens allow.
func (h *RateLimit) OnMessage(c *reactor.Conn, in *reactor.Buffer) {
	st := c.Context().(*limited)
	for i := in.IndexByte('\n'); i >= 0; i = in.IndexByte('\n') {
		line := in.Next(i + 1)[:i]
		st.queue = append(st.queue, append([]byte(nil), line...)) // in is reused after we return
	}
	h.serve(c, st)
}

// serve answers queued lines while tokens last, arms the refill timer if
// any token was spent, and pauses or resumes reading by the queue's length.
func (h *RateLimit) serve(c *reactor.Conn, st *limited) {
	for st.tokens > 0 && len(st.queue) > 0 {
		st.tokens--
		_, _ = c.Write(append(h.Reply(st.queue[0]), '\n'))
		st.queue[0] = nil
		st.queue = st.queue[1:]
	}
	if st.tokens < h.Burst && st.refill == nil {
		st.refill = c.Loop().AfterFunc(h.Per, func() { h.refilled(c, st) })
	}
	switch full := len(st.queue) >= h.MaxQueue; {
	case full && !st.paused:
		st.paused = true
		c.PauseRead()
	case !full && st.paused:
		st.paused = false
		c.ResumeRead() // the lines waiting in the kernel are read again
	}
}

// refilled runs on the connection's loop, Per after the first token was
// spent.
func (h *RateLimit) refilled(c *reactor.Conn, st *limited) {
	st.refill = nil
	st.tokens = h.Burst
	h.serve(c, st)
}

// OnWriteComplete does nothing.
func (h *RateLimit) OnWriteComplete(*reactor.Conn) {}

// OnClose stops the refill timer.
func (h *RateLimit) OnClose(c *reactor.Conn, _ error) {
	if st, ok := c.Context().(*limited); ok && st.refill != nil {
		st.refill.Stop()
		st.refill = nil
	}
}

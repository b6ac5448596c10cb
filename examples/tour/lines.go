package tour

import (
	"bytes"

	"github.com/tcpreactor/reactor"
)

// Lines is exercise 1, a line protocol: each line the client sends, ended
// by "\n" (a "\r" before it is dropped), is answered with Reply(line) and
// "\n"; "QUIT" is answered with "BYE" and the connection closes after the
// reply. A line longer than MaxLine bytes is answered with "ERR line too
// long" and the connection closes, so a client cannot make the server
// hold an unbounded partial line.
//
// The lesson: OnMessage is given whatever has arrived, which may be half
// a line or ten lines. Consume whole lines only and leave the rest in the
// Buffer: the loop keeps it for the next call, with the bytes that come
// next.
type Lines struct {
	MaxLine int                 // 0 means 1024
	Reply   func([]byte) []byte // the answer to one line (without its end)
}

var _ reactor.Handler = (*Lines)(nil)

// OnOpen does nothing: the client speaks first.
func (h *Lines) OnOpen(*reactor.Conn) {}

// OnMessage answers every whole line in `in` and leaves a partial one.
func (h *Lines) OnMessage(c *reactor.Conn, in *reactor.Buffer) {
	maxLine := h.MaxLine
	if maxLine <= 0 {
		maxLine = 1024
	}
	for {
		i := in.IndexByte('\n')
		if i < 0 {
			if in.Len() > maxLine {
				h.fail(c, in)
			}
			return
		}
		if i > maxLine {
			h.fail(c, in)
			return
		}
		line := bytes.TrimSuffix(in.Next(i + 1)[:i], []byte("\r"))
		if string(line) == "QUIT" {
			_, _ = c.Write([]byte("BYE\n"))
			_ = c.Close() // after the reply is flushed; no OnMessage follows
			return
		}
		_, _ = c.Write(append(h.Reply(line), '\n')) // Write copies
	}
}

// fail refuses an overlong line.
func (h *Lines) fail(c *reactor.Conn, in *reactor.Buffer) {
	in.Discard(in.Len())
	_, _ = c.Write([]byte("ERR line too long\n"))
	_ = c.Close()
}

// OnWriteComplete does nothing.
func (h *Lines) OnWriteComplete(*reactor.Conn) {}

// OnClose does nothing: Lines keeps no state per connection.
func (h *Lines) OnClose(*reactor.Conn, error) {}

package tour

import (
	"encoding/binary"

	"github.com/tcpreactor/reactor"
)

// Frames is exercise 5, framing that survives a fault: the client sends
// frames, each a 2-byte big-endian length and that many bytes, and every
// frame is answered with a frame holding Reply(payload).
//
// The lesson: TCP is a byte stream. A read returns what has arrived, so a
// frame may come in pieces (the simulation's short-read Fault makes every
// read return fewer bytes than were there), and naiveFrames in
// frames_test.go, which takes each OnMessage for one whole frame, answers
// garbage. Frames peeks at the length, waits until the whole frame is in
// the Buffer, and only then consumes it.
type Frames struct {
	Reply func([]byte) []byte // its result must fit a frame: at most 65535 bytes
}

var _ reactor.Handler = (*Frames)(nil)

// frameHeader is the length prefix's size.
const frameHeader = 2

// OnOpen does nothing: the client speaks first.
func (h *Frames) OnOpen(*reactor.Conn) {}

// OnMessage answers every whole frame in `in` and leaves a partial one.
func (h *Frames) OnMessage(c *reactor.Conn, in *reactor.Buffer) {
	for in.Len() >= frameHeader {
		n := int(binary.BigEndian.Uint16(in.Peek(frameHeader)))
		if in.Len() < frameHeader+n {
			return // the rest of the frame has not arrived: wait for it
		}
		in.Discard(frameHeader)
		reply := h.Reply(in.Next(n))
		out := binary.BigEndian.AppendUint16(make([]byte, 0, frameHeader+len(reply)), uint16(len(reply)))
		_, _ = c.Write(append(out, reply...))
	}
}

// OnWriteComplete does nothing.
func (h *Frames) OnWriteComplete(*reactor.Conn) {}

// OnClose does nothing.
func (h *Frames) OnClose(*reactor.Conn, error) {}

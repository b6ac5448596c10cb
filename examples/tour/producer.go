package tour

import (
	"fmt"

	"github.com/tcpreactor/reactor"
)

// Producer is exercise 4, a producer that respects backpressure: as soon
// as a client connects it is sent Lines numbered lines ("00000001\n",
// nine bytes each), Chunk lines per Write, and then the connection is
// closed. Nothing the client sends is needed.
//
// The lesson: Write never blocks and never refuses bytes, so a handler
// that writes on its own (not in reply to input) can fill memory for a
// client that reads slowly. Producer writes only while Conn.Buffered is
// below HighWater, the server's WithHighWaterMark, and goes on when the
// output has drained: at OnLowWater, which follows OnHighWater once the
// output is down to half the mark, or at OnWriteComplete, when a flush
// has emptied it. So it never holds more than HighWater plus one chunk,
// however slow the client.
type Producer struct {
	Lines     int
	Chunk     int // lines per Write; must be > 0
	HighWater int // the server's WithHighWaterMark
}

var (
	_ reactor.Handler          = (*Producer)(nil)
	_ reactor.WatermarkHandler = (*Producer)(nil)
)

// producing is one connection's progress, in its Context.
type producing struct {
	next   int  // the next line's number, from 1
	paused bool // between OnHighWater and OnLowWater
}

// OnOpen starts producing.
func (p *Producer) OnOpen(c *reactor.Conn) {
	c.SetContext(&producing{next: 1})
	p.produce(c)
}

// produce writes chunks until the output reaches the high-water mark or
// everything has been written, and then closes.
func (p *Producer) produce(c *reactor.Conn) {
	st := c.Context().(*producing)
	var chunk []byte
	for !st.paused && st.next <= p.Lines && c.Buffered() < p.HighWater {
		chunk = chunk[:0]
		for end := min(st.next+p.Chunk, p.Lines+1); st.next < end; st.next++ {
			chunk = fmt.Appendf(chunk, "%08d\n", st.next)
		}
		_, _ = c.Write(chunk) // Write copies: chunk may be reused
	}
	if st.next > p.Lines {
		_ = c.Close() // after the output is flushed
	}
}

// OnMessage discards what the client sends.
func (p *Producer) OnMessage(_ *reactor.Conn, in *reactor.Buffer) { in.Discard(in.Len()) }

// OnWriteComplete goes on: the output is empty.
func (p *Producer) OnWriteComplete(c *reactor.Conn) { p.produce(c) }

// OnHighWater stops producing.
func (p *Producer) OnHighWater(c *reactor.Conn, _ int) { c.Context().(*producing).paused = true }

// OnLowWater goes on.
func (p *Producer) OnLowWater(c *reactor.Conn, _ int) {
	c.Context().(*producing).paused = false
	p.produce(c)
}

// OnClose does nothing.
func (p *Producer) OnClose(*reactor.Conn, error) {}

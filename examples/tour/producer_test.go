package tour

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// meter wraps a producer and records the most output it ever left
// buffered, after each callback that may write.
type meter struct {
	reactor.Handler
	peak int
}

func (m *meter) note(c *reactor.Conn) { m.peak = max(m.peak, c.Buffered()) }

func (m *meter) OnOpen(c *reactor.Conn) { m.Handler.OnOpen(c); m.note(c) }

func (m *meter) OnWriteComplete(c *reactor.Conn) { m.Handler.OnWriteComplete(c); m.note(c) }

func (m *meter) OnHighWater(c *reactor.Conn, n int) {
	if wh, ok := m.Handler.(reactor.WatermarkHandler); ok {
		wh.OnHighWater(c, n)
	}
	m.note(c)
}

func (m *meter) OnLowWater(c *reactor.Conn, n int) {
	if wh, ok := m.Handler.(reactor.WatermarkHandler); ok {
		wh.OnLowWater(c, n)
	}
	m.note(c)
}

// naiveProducer writes everything at once: it is what the test must catch.
type naiveProducer struct{ lines int }

func (p naiveProducer) OnOpen(c *reactor.Conn) {
	for i := 1; i <= p.lines; i++ {
		_, _ = fmt.Fprintf(c, "%08d\n", i)
	}
	_ = c.Close()
}
func (naiveProducer) OnMessage(_ *reactor.Conn, in *reactor.Buffer) { in.Discard(in.Len()) }
func (naiveProducer) OnWriteComplete(*reactor.Conn)                 {}
func (naiveProducer) OnClose(*reactor.Conn, error)                  {}

// drain runs a producer for a client that reads at most window bytes at a
// time, and returns what the client received and the producer's peak.
func drain(t *testing.T, seed int64, h reactor.Handler, hwm, window int) (string, int) {
	t.Helper()
	m := &meter{Handler: h}
	s := serve(t, seed, m, reactor.WithHighWaterMark(hwm))
	c := dial(t, s)
	c.SetReceiveWindow(window)
	var got strings.Builder
	for i := 0; i < 100000 && !c.EOF(); i++ {
		s.RunUntilIdle()
		got.Write(c.ReadAll()) // a slow reader: only what its window let in
	}
	got.Write(c.ReadAll())
	require.True(t, c.EOF(), "the producer never finished")
	s.RunUntilIdle()
	return got.String(), m.peak
}

func TestProducer(t *testing.T) {
	const (
		lines  = 20000 // 180,000 bytes
		chunk  = 64    // lines per Write: 576 bytes
		hwm    = 8 << 10
		window = 2 << 10
	)
	var want strings.Builder
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "%08d\n", i)
	}
	for seed := range int64(3) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			got, peak := drain(t, seed, &Producer{Lines: lines, Chunk: chunk, HighWater: hwm}, hwm, window)
			assert.Equal(t, want.String(), got, "every line, in order")
			assert.LessOrEqual(t, peak, hwm+chunk*9, "output buffered beyond the high-water mark and one chunk")
		})
	}
	t.Run("naive", func(t *testing.T) {
		// The check above must be able to fail: a producer that ignores
		// backpressure buffers nearly everything.
		got, peak := drain(t, 1, naiveProducer{lines: lines}, hwm, window)
		assert.Equal(t, want.String(), got)
		assert.Greater(t, peak, 10*hwm)
	})
}

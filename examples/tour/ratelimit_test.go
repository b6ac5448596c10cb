package tour

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// numbered returns lines "1\n" to "n\n" from first on.
func numbered(first, n int) string {
	var b strings.Builder
	for i := first; i < first+n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}

// serverReads counts the server's reads on c's connection in the trace.
func serverReads(s *reactor.Sim, c *reactor.SimConn) int {
	return strings.Count(s.Trace(), fmt.Sprintf(" read fd=%d ", c.ServerFD()))
}

func TestRateLimit(t *testing.T) {
	t.Run("rate", func(t *testing.T) {
		s := serve(t, 1, &RateLimit{Burst: 3, Per: time.Second, MaxQueue: 100, Reply: upper})
		c1, c2 := dial(t, s), dial(t, s)
		_, err := c1.WriteString(numbered(1, 10))
		require.NoError(t, err)
		_, err = c2.WriteString(numbered(1, 4))
		require.NoError(t, err)
		var got1, got2 string
		for _, step := range []struct {
			advance time.Duration
			n1, n2  int // lines answered so far
		}{
			{0, 3, 3}, // a burst at once, on each connection
			{999 * time.Millisecond, 3, 3},
			{time.Millisecond, 6, 4},
			{time.Second, 9, 4},
			{time.Second, 10, 4},
			{5 * time.Second, 10, 4},
		} {
			s.Advance(step.advance)
			got1 += string(c1.ReadAll())
			got2 += string(c2.ReadAll())
			assert.Equal(t, numbered(1, step.n1), got1, "c1 at %v", s.Now())
			assert.Equal(t, numbered(1, step.n2), got2, "c2 at %v", s.Now())
		}
	})

	t.Run("pauses reading", func(t *testing.T) {
		s := serve(t, 1, &RateLimit{Burst: 1, Per: time.Second, MaxQueue: 2, Reply: upper})
		c := dial(t, s)
		send(t, s, c, numbered(1, 3)) // 1 answered, 2 and 3 queued: the queue is full
		assert.Equal(t, numbered(1, 1), string(c.ReadAll()))
		reads := serverReads(s, c)
		send(t, s, c, numbered(4, 2))
		assert.Equal(t, reads, serverReads(s, c), "the server read while its queue was full")
		var got string
		for range 5 {
			s.Advance(time.Second)
			got += string(c.ReadAll())
		}
		assert.Equal(t, numbered(2, 4), got, "the lines left in the kernel were read once the queue had room")
	})

	t.Run("stops with the connection", func(t *testing.T) {
		replies := 0
		s := serve(t, 1, &RateLimit{Burst: 3, Per: time.Second, MaxQueue: 100, Reply: func(p []byte) []byte {
			replies++
			return p
		}})
		c := dial(t, s)
		send(t, s, c, numbered(1, 10))
		assert.Equal(t, numbered(1, 3), string(c.ReadAll()))
		require.NoError(t, c.Close()) // the server reads EOF and closes: 7 lines are never answered
		s.RunUntilIdle()
		s.Advance(10 * time.Second)
		assert.Equal(t, 3, replies, "lines were answered for a connection that had closed")
	})
}

package tour

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// name reads a client's greeting and returns the name it was given.
func name(t *testing.T, c *reactor.SimConn) string {
	t.Helper()
	greeting := string(c.ReadAll())
	n, ok := strings.CutPrefix(greeting, "you are ")
	require.True(t, ok, "greeting %q", greeting)
	return strings.TrimSuffix(n, "\n")
}

func TestRoom(t *testing.T) {
	for seed := range int64(8) { // the seeds give the loops' turns different orders
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			room := &Room{}
			s := serve(t, seed, room) // two loops: the clients are spread over both
			cs := []*reactor.SimConn{dial(t, s), dial(t, s), dial(t, s)}
			s.RunUntilIdle()
			names := []string{name(t, cs[0]), name(t, cs[1]), name(t, cs[2])}
			assert.ElementsMatch(t, []string{"u1", "u2", "u3"}, names)

			_, err := cs[0].WriteString("a\nb\n")
			require.NoError(t, err)
			_, err = cs[1].WriteString("c\n")
			require.NoError(t, err)
			s.RunUntilIdle()
			got := []string{string(cs[0].ReadAll()), string(cs[1].ReadAll()), string(cs[2].ReadAll())}
			assert.Equal(t, names[1]+": c\n", got[0], "the sender hears only the others")
			assert.Equal(t, names[0]+": a\n"+names[0]+": b\n", got[1])
			// c3 hears both, each sender's lines in order; how the two senders
			// interleave depends on which loop ran first.
			assert.ElementsMatch(t, []string{names[0] + ": a", names[0] + ": b", names[1] + ": c"},
				strings.Split(strings.TrimSuffix(got[2], "\n"), "\n"))
			assert.Less(t, strings.Index(got[2], ": a"), strings.Index(got[2], ": b"))

			require.NoError(t, cs[2].Close()) // leaves the room
			s.RunUntilIdle()
			_, err = cs[0].WriteString("d\n")
			require.NoError(t, err)
			s.RunUntilIdle()
			assert.Equal(t, names[0]+": d\n", string(cs[1].ReadAll()))
			room.mu.Lock()
			assert.Len(t, room.members, 2, "a member that left is still listed")
			room.mu.Unlock()
		})
	}
}

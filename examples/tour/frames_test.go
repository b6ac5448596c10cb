package tour

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tcpreactor/reactor"
)

// naiveFrames takes every OnMessage for exactly one whole frame, which it
// is as long as each read returns one whole frame: on a quiet loopback,
// with a client that waits for each answer, it would pass every test.
type naiveFrames struct{ reply func([]byte) []byte }

func (h naiveFrames) OnMessage(c *reactor.Conn, in *reactor.Buffer) {
	n := int(binary.BigEndian.Uint16(in.Next(frameHeader)))
	reply := h.reply(in.Next(n))
	_, _ = c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(reply))))
	_, _ = c.Write(reply)
}
func (naiveFrames) OnOpen(*reactor.Conn)          {}
func (naiveFrames) OnWriteComplete(*reactor.Conn) {}
func (naiveFrames) OnClose(*reactor.Conn, error)  {}

// frame encodes p as a frame.
func frame(p []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(p))), p...)
}

// exchange sends frames under the given faults, one at a time, each once
// the previous answer has come, or, pipelined, all at once; and returns
// every answer received until the server closed or reset the connection.
func exchange(t *testing.T, seed int64, h reactor.Handler, faults []reactor.Fault, payloads [][]byte, pipelined bool) []byte {
	t.Helper()
	s := serve(t, seed, h)
	c := dial(t, s)
	for _, f := range faults {
		f.Conn = c
		s.Inject(f)
	}
	var got []byte
	if pipelined {
		var all []byte
		for _, p := range payloads {
			all = append(all, frame(p)...)
		}
		payloads = [][]byte{all}
	}
	for _, p := range payloads {
		if !pipelined {
			p = frame(p)
		}
		if _, err := c.Write(p); err != nil {
			t.Logf("the server reset the connection: %v", err) // a handler that panicked, say
			break
		}
		s.RunUntilIdle()
		got = append(got, c.ReadAll()...)
	}
	return got
}

func TestFrames(t *testing.T) {
	var payloads [][]byte
	var want []byte
	for i := range 20 {
		p := bytes.Repeat([]byte{byte('a' + i)}, 1+i*37)
		payloads = append(payloads, p)
		want = append(want, frame(upper(p))...)
	}
	shortReads := []reactor.Fault{{Op: reactor.FaultRead, Short: true}}
	for _, tc := range []struct {
		name   string
		faults []reactor.Fault
	}{
		{"no fault", nil},
		{"short reads", shortReads},
		{"short reads and writes", []reactor.Fault{{Op: reactor.FaultRead, Short: true}, {Op: reactor.FaultWrite, Short: true}}},
		{"EAGAIN and EINTR", []reactor.Fault{
			{Op: reactor.FaultRead, Err: syscall.EAGAIN, Probability: 0.3},
			{Op: reactor.FaultRead, Err: syscall.EINTR, Probability: 0.3},
			{Op: reactor.FaultWrite, Err: syscall.EAGAIN, Probability: 0.3},
		}},
	} {
		for seed := range int64(5) {
			for _, pipelined := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s seed %d pipelined %v", tc.name, seed, pipelined), func(t *testing.T) {
					got := exchange(t, seed, &Frames{Reply: upper}, tc.faults, payloads, pipelined)
					assert.Equal(t, want, got)
				})
			}
		}
	}

	t.Run("the fault breaks the naive handler", func(t *testing.T) {
		// Without the fault the naive handler passes...
		assert.Equal(t, want, exchange(t, 1, naiveFrames{reply: upper}, nil, payloads, false))
		// ...and with it, it answers wrongly: the test above can fail.
		assert.NotEqual(t, want, exchange(t, 1, naiveFrames{reply: upper}, shortReads, payloads, false))
	})
}

package reactor_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor"
)

// tourHandler is the server of docs/tour.md's "See it run": it echoes
// whole lines, keeps a partial line for the next OnMessage, and answers
// "quit" with "bye" and a Close.
func tourHandler() reactor.Handler {
	return reactor.HandlerFuncs{Message: func(c *reactor.Conn, in *reactor.Buffer) {
		for i := in.IndexByte('\n'); i >= 0; i = in.IndexByte('\n') {
			line := in.Next(i + 1)
			if string(line) == "quit\n" {
				_, _ = c.Write([]byte("bye\n"))
				_ = c.Close()
				return
			}
			_, _ = c.Write(line) // Write copies: line aliases in
		}
	}}
}

// tourRun runs the script that docs/tour.md walks through and returns
// what the clients saw and the simulation's trace: two clients served by
// two loops; c1's first read is cut short and its "quit" makes the server
// close (a lingering close); c2 sends one line and half-closes.
func tourRun() (seen, trace string) {
	var b strings.Builder
	s := reactor.NewSim(1)
	srv, err := reactor.NewServer("127.0.0.1:7", tourHandler(),
		reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(2))
	if err != nil {
		return err.Error(), ""
	}
	stop := s.Start(srv)

	c1, _ := s.Dial("127.0.0.1:7")
	c2, _ := s.Dial("127.0.0.1:7")
	s.Inject(reactor.Fault{Op: reactor.FaultRead, Conn: c1, Short: true, Times: 1})
	_, _ = c1.WriteString("hello\n")
	_, _ = c2.WriteString("ping\n")
	_ = c2.CloseWrite() // half-close: c2 still reads its reply
	s.RunUntilIdle()
	fmt.Fprintf(&b, "c1 got %q; c2 got %q, EOF %v\n", c1.ReadAll(), c2.ReadAll(), c2.EOF())

	_, _ = c1.WriteString("quit\n")
	s.RunUntilIdle()
	fmt.Fprintf(&b, "c1 got %q, EOF %v\n", c1.ReadAll(), c1.EOF())
	_ = c1.Close() // ends the server's linger
	s.RunUntilIdle()
	fmt.Fprintf(&b, "stop: %v\n", stop())
	return b.String(), s.Trace()
}

// The script of docs/tour.md's "See it run", and its trace: every step of
// a connection's life, from accept to close, as the simulated kernel and
// the loops recorded it. TestTourDoc checks that the tour shows this very
// trace.
func ExampleSim_tour() {
	seen, trace := tourRun()
	fmt.Print(seen)
	fmt.Print(trace)
	// Output:
	// c1 got "hello\n"; c2 got "ping\n", EOF true
	// c1 got "bye\n", EOF true
	// stop: <nil>
	// 000001 0s poller p1 fd=3 created
	// 000002 0s poller p2 fd=4 created
	// 000003 0s poller p3 fd=5 created
	// 000004 0s listen fd=6 127.0.0.1:7 backlog=128
	// 000005 0s dial c1 fd=6 192.0.2.1:40000 > 127.0.0.1:7
	// 000006 0s dial c2 fd=6 192.0.2.1:40001 > 127.0.0.1:7
	// 000007 0s write c1 n=6
	// 000008 0s write c2 n=5
	// 000009 0s shutdown c2 SHUT_WR
	// 000010 0s turn p1 [6:R]
	// 000011 0s accept c1 fd=6 nfd=7 192.0.2.1:40000
	// 000012 0s accept c2 fd=6 nfd=8 192.0.2.1:40001
	// 000013 0s accept fd=6 EAGAIN
	// 000014 0s turn p3 [] wake
	// 000015 0s note loop 1: OnOpen fd=8 peer=192.0.2.1:40001
	// 000016 0s turn p3 [8:R]
	// 000017 0s read fd=8 n=5
	// 000018 0s note loop 1: OnMessage fd=8 in=5
	// 000019 0s write fd=8 n=5
	// 000020 0s note loop 1: OnWriteComplete fd=8
	// 000021 0s turn p3 [8:R]
	// 000022 0s read fd=8 n=0 EOF
	// 000023 0s note loop 1: OnClose fd=8 err=<nil>
	// 000024 0s close fd=8
	// 000025 0s turn p2 [] wake
	// 000026 0s note loop 0: OnOpen fd=7 peer=192.0.2.1:40000
	// 000027 0s turn p2 [7:R]
	// 000028 0s fault fd=7 #1 read short
	// 000029 0s read fd=7 n=5
	// 000030 0s note loop 0: OnMessage fd=7 in=5
	// 000031 0s turn p2 [7:R]
	// 000032 0s read fd=7 n=1
	// 000033 0s note loop 0: OnMessage fd=7 in=6
	// 000034 0s write fd=7 n=6
	// 000035 0s note loop 0: OnWriteComplete fd=7
	// 000036 0s read c1 n=6
	// 000037 0s read c2 n=5
	// 000038 0s write c1 n=5
	// 000039 0s turn p2 [7:R]
	// 000040 0s read fd=7 n=5
	// 000041 0s note loop 0: OnMessage fd=7 in=5
	// 000042 0s write fd=7 n=4
	// 000043 0s note loop 0: OnWriteComplete fd=7
	// 000044 0s shutdown fd=7 SHUT_WR
	// 000045 0s note loop 0: linger fd=7
	// 000046 0s read c1 n=4
	// 000047 0s close c1
	// 000048 0s turn p2 [7:RW]
	// 000049 0s read fd=7 n=0 EOF
	// 000050 0s note loop 0: OnClose fd=7 err=<nil>
	// 000051 0s close fd=7
	// 000052 0s turn p1 [] wake
	// 000053 0s close fd=6
	// 000054 0s turn p3 [] wake
	// 000055 0s poller p3 fd=5 closed
	// 000056 0s turn p1 [] wake
	// 000057 0s turn p2 [] wake
	// 000058 0s poller p2 fd=4 closed
	// 000059 0s turn p1 [] wake
	// 000060 0s poller p1 fd=3 closed
}

// Markers around the trace that docs/tour.md embeds.
const (
	tourDoc        = "docs/tour.md"
	tourTraceBegin = "<!-- tour-trace:begin -->"
	tourTraceEnd   = "<!-- tour-trace:end -->"
)

// TestTourDoc checks that the trace docs/tour.md walks through is the one
// the code prints today: a change to the loop that moves a read, a write
// or a callback shows here, and the tour's walk-through must be updated
// with it. With -v it prints the trace.
func TestTourDoc(t *testing.T) {
	doc, err := os.ReadFile(tourDoc)
	require.NoError(t, err)
	embedded, err := fencedBetween(string(doc), tourTraceBegin, tourTraceEnd)
	require.NoError(t, err)
	seen, trace := tourRun()
	if testing.Verbose() {
		t.Logf("what the clients saw:\n%s\nthe trace:\n%s", seen, trace)
	}
	if !assert.Equal(t, trace, embedded, "the trace in %s differs from what the code prints", tourDoc) {
		t.Logf("paste this trace between the markers in %s, then fix the walk-through that cites its lines:\n%s", tourDoc, trace)
	}
}

// fencedBetween returns the body of the one fenced code block that lies
// between the begin and end markers in doc.
func fencedBetween(doc, begin, end string) (string, error) {
	_, rest, ok := strings.Cut(doc, begin)
	if !ok {
		return "", fmt.Errorf("marker %q not found", begin)
	}
	block, _, ok := strings.Cut(rest, end)
	if !ok {
		return "", fmt.Errorf("marker %q not found after %q", end, begin)
	}
	_, body, ok := strings.Cut(block, "```text\n")
	if !ok {
		return "", fmt.Errorf("no ```text block between the markers")
	}
	body, _, ok = strings.Cut(body, "```")
	if !ok {
		return "", fmt.Errorf("the ```text block between the markers is not closed")
	}
	return body, nil
}

func TestFencedBetween(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want, err string
	}{
		{name: "ok", doc: "x\n" + tourTraceBegin + "\n```text\na\nb\n```\n" + tourTraceEnd, want: "a\nb\n"},
		{name: "no begin", doc: "```text\na\n```", err: "not found"},
		{name: "no end", doc: tourTraceBegin + "\n```text\na\n```\n", err: "not found after"},
		{name: "no block", doc: tourTraceBegin + "\nplain\n" + tourTraceEnd, err: "no ```text block"},
		{name: "unclosed", doc: tourTraceBegin + "\n```text\na\n" + tourTraceEnd, err: "not closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fencedBetween(tc.doc, tourTraceBegin, tourTraceEnd)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// This file holds the trace: the records the kernel keeps of what happened,
// and their stable text form for comparing runs. Guarded by the Kernel's
// mutex.

package sim

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Kind says what a trace Record records.
type Kind uint8

// The kinds of trace records. Operations of a client Conn use the same
// kinds as the descriptor operations, with Client set and FD -1.
const (
	KindListen     Kind = iota + 1 // Listen: FD, Text = address, backlog, reuseport
	KindDial                       // Dial: Client, FD = the listener, Text = from > to; Err if refused
	KindAccept                     // Accept: FD = the listener, N = the new descriptor, Client, Text = peer
	KindRead                       // read/readv: FD or Client, N bytes (0 = EOF), or Err
	KindWrite                      // write/writev: FD or Client, N bytes, or Err
	KindShutdown                   // shutdown: FD or Client, Text = how
	KindClose                      // close: FD or Client; Err if an injected error was returned
	KindReset                      // a connection was reset: FD (server end), Client, Text = cause[, N bytes in flight lost]
	KindSocketpair                 // Socketpair: FD and N are the two descriptors
	KindFault                      // an injected fault fired: FD, N = fault id, Err, Text = op
	KindTurn                       // a poller got the turn: Poller, N events, Text = events, "wake", "timeout"
	KindPoller                     // a poller was created or closed: Poller, FD, Text
	KindClock                      // the virtual clock moved (At is the new time)
	KindNote                       // Tracef: Text
	KindConnect                    // Connect: FD, Text = from > to (Err EINPROGRESS); then how it ended: Text, Err if it failed
	KindPeek                       // recv with MSG_PEEK: FD, N bytes copied and left queued (0 = EOF), or Err
)

var kindNames = [...]string{
	KindListen:     "listen",
	KindDial:       "dial",
	KindAccept:     "accept",
	KindRead:       "read",
	KindWrite:      "write",
	KindShutdown:   "shutdown",
	KindClose:      "close",
	KindReset:      "reset",
	KindSocketpair: "socketpair",
	KindFault:      "fault",
	KindTurn:       "turn",
	KindPoller:     "poller",
	KindClock:      "clock",
	KindNote:       "note",
	KindConnect:    "connect",
	KindPeek:       "peek",
}

// String returns the kind's name as the trace shows it ("read", "turn").
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Record is one thing the kernel did. It holds virtual time and counters
// only, never real time or pointers, so the traces of two runs compare byte
// for byte. Which fields mean something depends on Kind (see the Kind
// constants).
type Record struct {
	Seq    uint64        // 1, 2, 3, ... in the order things happened
	At     time.Duration // virtual time
	Kind   Kind
	Poller int        // poller number (p1, p2, ...), or 0
	Client int        // client Conn number (c1, c2, ...), or 0
	FD     int        // descriptor, or -1
	N      int        // bytes, a descriptor or a count, by Kind
	Err    unix.Errno // error returned, or 0
	Text   string     // the rest, formatted
}

// String formats the record on one line, in a stable form:
//
//	000042 1.5s read fd=5 n=12
//	000043 1.5s turn p2 [5:R 7:RW] wake
func (r Record) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%06d %v %v", r.Seq, r.At, r.Kind)
	if r.Poller > 0 {
		fmt.Fprintf(&b, " p%d", r.Poller)
	}
	if r.Client > 0 {
		fmt.Fprintf(&b, " c%d", r.Client)
	}
	if r.FD >= 0 && r.Kind != KindClock && r.Kind != KindNote && r.Kind != KindTurn {
		fmt.Fprintf(&b, " fd=%d", r.FD)
	}
	switch r.Kind {
	case KindRead, KindWrite, KindPeek:
		if r.Err == 0 {
			fmt.Fprintf(&b, " n=%d", r.N)
			if r.N == 0 && r.Kind != KindWrite {
				b.WriteString(" EOF")
			}
		}
	case KindAccept:
		if r.Err == 0 {
			fmt.Fprintf(&b, " nfd=%d", r.N)
		}
	case KindSocketpair:
		fmt.Fprintf(&b, " fd=%d", r.N)
	case KindFault:
		fmt.Fprintf(&b, " #%d", r.N)
	}
	if r.Err != 0 {
		name := unix.ErrnoName(r.Err)
		if name == "" {
			name = fmt.Sprintf("errno(%d)", uintptr(r.Err))
		}
		b.WriteString(" " + name)
	}
	if r.Text != "" {
		b.WriteString(" " + r.Text)
	}
	return b.String()
}

// recordLocked appends r to the trace, stamped with the next sequence
// number and the virtual time, if tracing is on.
func (k *Kernel) recordLocked(r Record) {
	if !k.traceOn {
		return
	}
	k.seq++
	r.Seq = k.seq
	r.At = k.now
	k.trace = append(k.trace, r)
}

// Trace returns a copy of the records made so far.
func (k *Kernel) Trace() []Record {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Record(nil), k.trace...)
}

// TraceText returns the trace, one Record.String per line, each ending in
// a newline. Two runs of the same script with the same seed give the same
// text.
func (k *Kernel) TraceText() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	for _, r := range k.trace {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Tracef adds a line of the caller's to the trace (KindNote), so a layer
// above (the server's callbacks, a test) can interleave its own events with
// the kernel's. It does nothing while tracing is off. Called from an event
// loop during its turn, or from the test goroutine between steps, it keeps
// the trace deterministic.
func (k *Kernel) Tracef(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.traceOn {
		k.recordLocked(Record{Kind: KindNote, FD: -1, Text: fmt.Sprintf(format, args...)})
	}
}

// SetTrace turns tracing on or off (it is on unless Config.NoTrace).
// Records made so far are kept.
func (k *Kernel) SetTrace(on bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.traceOn = on
}

// This file holds fault injection: the faults a test adds to the simulated
// socket calls and the bookkeeping that fires them. Guarded by the Kernel's
// mutex; safe from any goroutine.

package sim

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Op names the kernel operation a Fault applies to.
type Op uint8

// Operations a fault can target.
const (
	OpRead     Op = iota + 1 // Read and Readv
	OpWrite                  // Write and Writev
	OpAccept                 // Accept
	OpShutdown               // Shutdown
	OpClose                  // Close: the descriptor is closed anyway, then the error returned
	OpConnect                // Connect: the attempt ends with the error (ETIMEDOUT: never ends)
)

var opNames = [...]string{OpRead: "read", OpWrite: "write", OpAccept: "accept", OpShutdown: "shutdown", OpClose: "close", OpConnect: "connect"}

// String returns the operation's name ("read", ...).
func (o Op) String() string {
	if o >= OpRead && o <= OpConnect {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// AnyFD in Fault.FD makes a fault apply to every descriptor. (Descriptor
// numbers start at 3, so 0 never names a simulated descriptor.)
const AnyFD = 0

// Fault describes an error or a short transfer to inject into an operation
// of the kernel. Faults apply to the server side only (the kernel.Interface
// methods), never to a client Conn's methods.
//
// An error fault makes a matching call return Err, after the descriptor is
// checked (a bad descriptor still gets EBADF) and before anything else.
// Only ECONNRESET and EPIPE on a connected socket change state: they reset
// the connection, so the peer sees ECONNRESET and later calls on this end
// see EOF and EPIPE. Every other error (EAGAIN, EINTR, EMFILE on Accept,
// ...) is transient and changes nothing: an accept that fails this way
// leaves the connection queued. Close closes the descriptor in any case.
// A Connect fault ends the attempt with its error, reported as the socket's
// SO_ERROR (Connect itself still returns EINPROGRESS, as a real connect
// whose SYN is answered by an RST or an ICMP error does), except ETIMEDOUT,
// which loses the SYN: the connect never ends (see Kernel.Connect).
//
// A Short fault makes a read or write that would move n ≥ 2 bytes move a
// random count from 1 to n-1 instead (drawn from the kernel's random
// source); calls that would move fewer bytes, or fail, are not affected
// and do not count towards Times.
//
// When several faults match a call, the one injected first fires; error
// faults are considered before Short ones.
type Fault struct {
	Op Op
	// FD is the descriptor the fault applies to, or AnyFD.
	FD int
	// Conn, if not nil, makes the fault apply to the server end of that
	// client's connection, whatever its descriptor (it need not be
	// accepted yet). FD must then be AnyFD.
	Conn *Conn
	// Err is the error to return (unix.EAGAIN, unix.EINTR, ...); 0 with
	// Short.
	Err unix.Errno
	// Short makes reads or writes come up short instead of failing
	// (OpRead and OpWrite only).
	Short bool
	// Times is how many times the fault fires before it is spent; 0 means
	// until it is removed.
	Times int
	// Probability is the chance that a matching call fires the fault,
	// drawn from the kernel's random source; 0 (and 1) mean always.
	Probability float64
}

// FaultID identifies an injected fault.
type FaultID int

// faultState is an injected fault and how often it fired.
type faultState struct {
	id   FaultID
	f    Fault
	hits int
	done bool // spent or removed
}

// Inject adds a fault and returns its id. It panics if f is malformed (no
// Op, neither or both of Err and Short, Short on an operation other than
// read or write, both FD and Conn, negative Times, Probability outside
// [0, 1]): a fault is part of a test script, and a wrong one is a bug in
// it.
func (k *Kernel) Inject(f Fault) FaultID {
	switch {
	case f.Op < OpRead || f.Op > OpConnect:
		panic(fmt.Sprintf("sim: Inject: unknown Op %d", f.Op))
	case (f.Err == 0) == !f.Short:
		panic("sim: Inject: a fault needs exactly one of Err and Short")
	case f.Short && f.Op != OpRead && f.Op != OpWrite:
		panic("sim: Inject: Short applies to OpRead and OpWrite only")
	case f.Conn != nil && f.FD != AnyFD:
		panic("sim: Inject: set FD or Conn, not both")
	case f.Conn != nil && f.Op == OpConnect:
		panic("sim: Inject: a connect fault cannot name a Conn (the connection does not exist yet)")
	case f.FD < 0 || f.Times < 0 || f.Probability < 0 || f.Probability > 1:
		panic(fmt.Sprintf("sim: Inject: out of range: FD %d, Times %d, Probability %v", f.FD, f.Times, f.Probability))
	case f.Conn != nil && f.Conn.k != k:
		panic("sim: Inject: Conn belongs to another kernel")
	}
	k.lock()
	defer k.unlock()
	fs := &faultState{id: FaultID(len(k.faults) + 1), f: f}
	k.faults = append(k.faults, fs)
	k.activeFaults++
	return fs.id
}

// RemoveFault removes a fault; it stops firing. Unknown or spent ids are
// ignored.
func (k *Kernel) RemoveFault(id FaultID) {
	k.lock()
	defer k.unlock()
	if id >= 1 && int(id) <= len(k.faults) {
		k.retireLocked(k.faults[id-1])
	}
}

// ClearFaults removes every fault.
func (k *Kernel) ClearFaults() {
	k.lock()
	defer k.unlock()
	for _, fs := range k.faults {
		k.retireLocked(fs)
	}
}

// FaultHits returns how many times a fault has fired (also after it is
// spent or removed).
func (k *Kernel) FaultHits(id FaultID) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if id >= 1 && int(id) <= len(k.faults) {
		return k.faults[id-1].hits
	}
	return 0
}

func (k *Kernel) retireLocked(fs *faultState) {
	if !fs.done {
		fs.done = true
		k.activeFaults--
	}
}

// faultLocked returns the fault that fires for op on f (error faults, or
// Short ones if short), having counted and traced it, or nil. Each
// candidate with a probability draws from the random source, in injection
// order, so which fault fires is a function of the seed.
func (k *Kernel) faultLocked(op Op, f *file, short bool) *faultState {
	if k.activeFaults == 0 {
		return nil
	}
	for _, fs := range k.faults {
		ft := &fs.f
		if fs.done || ft.Op != op || ft.Short != short {
			continue
		}
		if ft.Conn != nil {
			if f.kind != fileSocket || f.ep.peer != ft.Conn.ep {
				continue
			}
		} else if ft.FD != AnyFD && ft.FD != f.fd {
			continue
		}
		if p := ft.Probability; p > 0 && p < 1 && k.rng.Float64() >= p {
			continue
		}
		fs.hits++
		if ft.Times > 0 && fs.hits >= ft.Times {
			k.retireLocked(fs)
		}
		text := op.String()
		if short {
			text += " short"
		}
		k.recordLocked(Record{Kind: KindFault, FD: f.fd, N: int(fs.id), Err: ft.Err, Text: text})
		return fs
	}
	return nil
}

// injectErrLocked applies what an injected errno implies for op on f (see
// Fault) and returns it. ECONNRESET and EPIPE reset the connection as if
// RSTs had crossed: each end receives one (receiveReset), keeping what it
// has received and losing its bytes in flight. The descriptor's end
// reports the reset now, so its pending error is spent; after a read it
// also loses its unread bytes, since Linux reports a reset to read only
// once the receive queue is empty.
func (k *Kernel) injectErrLocked(op Op, f *file, errno unix.Errno) unix.Errno {
	if f.kind == fileSocket && (errno == unix.ECONNRESET || errno == unix.EPIPE) && !f.ep.reset {
		e, p := f.ep, f.ep.peer
		finE, finP := e.finArrived(), p.finArrived() // before either changes
		lost := e.receiveReset(finE) + p.receiveReset(finP)
		e.err = 0 // this call reports it
		if op == OpRead {
			e.recv.clear()
		}
		k.recordResetLocked(e, "injected "+unix.ErrnoName(errno)+" on "+op.String(), lost)
	}
	return errno
}

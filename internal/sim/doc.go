// Package sim is a small deterministic simulated kernel: virtual sockets,
// virtual epoll instances, a virtual clock, injected faults and a scheduler,
// so that the event loop, acceptor and connection code that runs over epoll
// runs unchanged over it. The same seed and the same script give the same
// sequence of events, byte for byte, even with several event loops on
// several goroutines.
//
// It does not import the root package (whose tests import it): Kernel
// implements internal/kernel.Interface, Poller keeps the root package's
// Dispatcher contract with its own readiness bits (Read, Write, of the same
// values), and the root package's mock dispatcher adapts one to the other.
//
// # The model
//
// A Kernel holds a descriptor table (the lowest free number ≥ 3 is always
// taken, so numbers are reused at once, as on Linux; SetFDLimit makes
// creation fail with EMFILE like RLIMIT_NOFILE, SetMaxOpen the same by a
// count of open descriptors), listening sockets with
// accept queues, and connections. A connection joins a server end, which
// has a descriptor once accepted, to a client end, a *Conn that the test
// drives; or, from Socketpair, two descriptors. Each end has a bounded
// receive buffer (Config.ReceiveBuffer, 64 KiB by default). A server end
// also has a bounded send buffer (Config.SendBuffer, 16 KiB by default): a
// write takes as much as the peer's receive buffer has room for, which
// arrives at once, plus as much as the send buffer has room for, which
// waits there in flight and moves into the peer's receive buffer as the
// peer reads; EAGAIN when both are full. A client's writes wait in an
// unbounded send queue that the kernel drains into the server end the same
// way, so scripts need not loop. (A socketpair has no send buffer, like
// AF_UNIX.)
//
// The other direction is modelled too: a descriptor connects out with
// Connect, a non-blocking connect(2), to a Listener the test holds (the
// upstream of a proxy under test, whose accepted ends are Conns like a
// client's) or to another descriptor's listener. The attempt is
// established at once when the accept queue has room, stays in progress
// while it is full (a dropped SYN that is retried when room appears), is
// refused with no listener, and fails or never ends as a fault on
// OpConnect says; SO_ERROR (GetsockoptInt) tells the descriptor how it
// ended.
//
// TCP is modelled where a server can observe it, as Linux has it: FIN
// (shutdown, close) is read as EOF after the bytes before it, including
// the bytes still in flight; closing with unread bytes, or with SO_LINGER
// 0 (SetLinger), sends RST instead, and writing to a peer that has closed
// is accepted and answered with RST. An RST loses the bytes in flight from
// the end that sends it and to the end that receives it, but not what the
// receiver already has: its reads return that first, then ECONNRESET once,
// then EOF; its writes return ECONNRESET once (the one pending error goes
// to whichever call comes first), then EPIPE. An RST that follows the
// peer's FIN is EPIPE instead, reported to writes only, while reads return
// EOF (Linux's CLOSE_WAIT). EMFILE on accept leaves the connection queued;
// readiness follows epoll, with a failure (reset, or both directions
// finished) reported as Read|Write whatever the interest and a peer's
// half-close as Read only to Read interest. The comments on endpoint,
// Read, Write, Shutdown and Close give the rules, and compare_test.go runs
// the same scripts over loopback to check them against the real kernel.
// Not modelled: latency, packet loss, retransmission, the handshake (a
// Dial is established at once), urgent data, a close that blocks for
// SO_LINGER, socket options other than SO_RCVBUF, SO_SNDBUF and SO_LINGER
// (they are recorded, see Sockopt), and options a listener would pass on
// to the sockets it accepts.
//
// Faults (Inject) make chosen calls fail with a chosen errno or come up
// short, always, a number of times, or with a probability; see Fault.
//
// # Determinism
//
// Everything random — the order of events within a Wait, which poller runs
// next, which SO_REUSEPORT listener takes a connection, fault
// probabilities, short counts — is drawn from one PCG source seeded with
// Config.Seed. Time is virtual: it starts at 0 and moves only by Advance and
// AdvanceTo; nothing reads the real clock for behaviour. The trace
// (Trace, TraceText, Tracef) records every operation with its virtual time
// and a sequence number, never real time or pointers, so two runs compare
// byte for byte.
//
// # Two modes
//
// Free (the default): a Poller's Wait blocks, like epoll_wait, until a
// registered descriptor is ready, Wake is called, or the virtual clock
// reaches its deadline. Advance moves the clock and wakes the waiters.
// Poller.Blocked tells a test when Wait has started to wait. This is for
// one poller driven by one goroutine (the Dispatcher contract tests), where
// it is deterministic.
//
// Stepped (Config.Stepped): event loops run on their own goroutines, but a
// poller's Wait does not return until a driver gives that poller a turn,
// and only one poller holds the turn at a time. The turn ends when its loop
// calls Wait again (it parks) or closes its poller. So loop code runs
// strictly one loop at a time, in an order drawn from the random source,
// and every hand-off goes through the kernel's mutex. The drivers, called
// from the test's goroutine (or a Server's Shutdown):
//
//   - Step waits until every live poller is parked, picks one of those with
//     work and runs its turn;
//   - RunUntilIdle steps until no poller has work;
//   - Advance and AdvanceTo run until idle and move the clock from deadline
//     to deadline, so every timer fires at exactly its virtual time, in
//     order;
//   - RunUntil steps until a condition holds, blocking while idle until
//     something changes from outside.
//
// Client operations (Dial, Conn.Write, ...) and Wake only change state; no
// loop reacts until the test steps.
//
// # Invariants
//
//   - One mutex (Kernel.mu) guards all state of the kernel and of every
//     Poller and Conn it made; each kernel call is atomic.
//   - Stepped: at most one poller holds the turn; a turn is given only when
//     no poller is running (every live poller is parked in Wait); the
//     result of a Wait is decided under the mutex when its turn is given.
//   - A poller has work when it has a pending Wake, its Wait's deadline is
//     at or before Now, or a registered descriptor is ready for its
//     interest (or failed). Only pollers with work get turns.
//   - A poller that has been created but has not yet called Wait counts as
//     running: drivers wait for it to park (and panic with a diagnostic
//     after Config.ParkTimeout of real time rather than hang).
//
// # Limits of the guarantee
//
// A run is a function of (seed, script) when everything that touches the
// kernel happens either inside a loop's turn or on the goroutine that
// drives the simulation, between driver calls. Goroutines outside the
// simulation that call into it concurrently (a client writing from its own
// goroutine while loops run, a timer of the real clock) make the order
// depend on the Go scheduler. So does loop code that runs before its
// poller's first Wait (it runs outside any turn, concurrently with other
// loops starting): keep it to registering descriptors. Code that runs
// after a loop closes its poller runs outside any turn too. A loop must
// never block on anything but Wait: it would hold the turn forever. And
// the code under test must itself be deterministic: ranging over a Go map,
// say, makes the order of what a loop does depend on the runtime's random
// map order instead of the seed.
package sim

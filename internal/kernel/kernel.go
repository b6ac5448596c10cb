// Package kernel is the one seam between reactor and the operating system's
// socket calls. Every syscall that the event loop, the acceptor and the
// connections make on a socket goes through an Interface, so the
// deterministic simulation (internal/sim) can stand in for the kernel
// entirely. The readiness backends (epoll, poll) are a separate seam: the
// Dispatcher interface in the root package.
//
// The real implementation, OS, is stateless and safe for concurrent use.
package kernel

import (
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Interface is the set of socket calls reactor makes. Implementations must
// be safe for concurrent use: every event loop calls them from its own
// goroutine.
//
// Errors are returned raw, as unix.Errno values (unix.EAGAIN,
// unix.ECONNRESET, ...), exactly as the system call reported them; callers
// wrap them (os.NewSyscallError) where they leave the package. A read that
// returns (0, nil) means the peer has shut down its write side (EOF).
// Descriptors are non-blocking and close-on-exec.
type Interface interface {
	// Listen creates a non-blocking listening socket. network is "tcp",
	// "tcp4" or "tcp6", with address "host:port" (port 0 picks a free one),
	// SO_REUSEADDR set and SO_REUSEPORT too when reusePort is true; or
	// "unix", with address a file system path or "@name" for Linux's
	// abstract namespace (reusePort must then be false). It returns the
	// descriptor and the bound address.
	Listen(network, address string, reusePort bool, backlog int) (fd int, sa unix.Sockaddr, err error)
	// DupListener takes over a listening socket opened elsewhere (inherited
	// from a parent process, or held by a net.Listener): it duplicates fd as
	// a non-blocking, close-on-exec descriptor of its own, after checking
	// that fd is a listening stream socket of a family reactor serves
	// (AF_INET, AF_INET6 or AF_UNIX), and returns the duplicate and the
	// address it is bound to. fd stays open and remains the caller's.
	DupListener(fd int) (nfd int, sa unix.Sockaddr, err error)
	// Accept takes one pending connection from a listening socket, as
	// accept4(SOCK_NONBLOCK|SOCK_CLOEXEC), and returns it with the peer's
	// address (IPv4-mapped IPv6 addresses unmapped). With none pending it
	// returns unix.EAGAIN. It allocates nothing: the address is a value, not
	// a unix.Sockaddr, because a server that holds many connections pays
	// for every byte accepting one leaves behind.
	Accept(fd int) (nfd int, peer netip.AddrPort, err error)
	// Connect creates a non-blocking, close-on-exec stream socket of sa's
	// family (*unix.SockaddrInet4, *unix.SockaddrInet6 or
	// *unix.SockaddrUnix) and starts connect(2) to sa. It returns the
	// descriptor and nil when the connection is established at once (as a
	// Unix-domain connect is), the descriptor and exactly unix.EINPROGRESS
	// while it is being established (the descriptor becomes writable when
	// the attempt ends; GetsockoptInt(SO_ERROR) then tells how), or -1 and
	// the error, wrapped with os.NewSyscallError ("socket" or "connect"),
	// when it failed at once; no descriptor is left open then.
	Connect(sa unix.Sockaddr) (fd int, err error)
	// Socketpair returns a connected pair of non-blocking stream sockets.
	// The dispatcher contract tests use it.
	Socketpair() (fds [2]int, err error)
	// Read, Readv, Write and Writev behave as read(2), readv(2), write(2)
	// and writev(2) on a non-blocking socket (the real implementation makes
	// them as recvfrom, recvmsg, sendto and sendmsg, which take a shorter
	// path through the kernel). A negative count from the kernel is
	// returned as 0. Write never raises SIGPIPE.
	Read(fd int, p []byte) (n int, err error)
	Readv(fd int, iov [][]byte) (n int, err error)
	// Peek is recv(2) with MSG_PEEK: it copies the bytes at the front of
	// the socket's receive queue into p and leaves them there, for a
	// later Read. Otherwise as Read: 0 and nil at the peer's end of file,
	// unix.EAGAIN with nothing queued.
	Peek(fd int, p []byte) (n int, err error)
	Write(fd int, p []byte) (n int, err error)
	Writev(fd int, iov [][]byte) (n int, err error)
	// Shutdown is shutdown(2); how is unix.SHUT_RD, SHUT_WR or SHUT_RDWR.
	Shutdown(fd int, how int) error
	// Close is close(2). It is never retried: after EINTR the descriptor is
	// already gone on Linux, and retrying could close a descriptor another
	// goroutine has just been given.
	Close(fd int) error
	// SetsockoptInt is setsockopt(2) with an int value (TCP_NODELAY,
	// SO_KEEPALIVE, TCP_KEEPIDLE, ...).
	SetsockoptInt(fd, level, opt, value int) error
	// GetsockoptInt is getsockopt(2) for an int value. With SOL_SOCKET and
	// SO_ERROR it returns the socket's pending error as an errno value (0
	// for none) and clears it, as the kernel does: how a non-blocking
	// connect ended.
	GetsockoptInt(fd, level, opt int) (int, error)
	// SetLinger sets SO_LINGER: sec < 0 turns it off (the default); sec >= 0
	// turns it on with a timeout of sec seconds. With 0 seconds, close(2)
	// aborts the connection: it sends RST instead of FIN and discards what
	// is still unsent, and the peer's reads return what had already reached
	// it, then ECONNRESET. (A timeout above 0 makes close block, even on a
	// non-blocking socket, until the unsent bytes are acknowledged or the
	// time is up: rarely what an event loop wants.)
	SetLinger(fd int, sec int) error
	// Getsockname and Getpeername return a socket's local and remote
	// addresses. For an AF_UNIX socket the address is a *unix.SockaddrUnix
	// whose Name is the path, "@name" for an abstract address, or empty for
	// an unnamed socket (a client's, unless it bound one).
	Getsockname(fd int) (unix.Sockaddr, error)
	Getpeername(fd int) (unix.Sockaddr, error)
	// Now is the clock that event loops schedule timers on: monotonic time
	// since an arbitrary origin. The simulation returns virtual time.
	Now() time.Duration
}

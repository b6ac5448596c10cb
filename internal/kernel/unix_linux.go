// This file holds what OS does for Unix domain sockets and for listeners
// inherited from elsewhere: listening on a path or an abstract name,
// recognising a socket file left behind by a dead process, removing only the
// file a server created, and taking over a listening descriptor.

package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxUnixPath is the longest path a Unix domain socket can be bound to on
// Linux: sun_path holds 108 bytes, and a path needs its terminating NUL.
// An abstract name needs none, but its first byte is the NUL that marks it
// abstract, so it too has at most 107 after its '@'.
const MaxUnixPath = len(unix.RawSockaddrUnix{}.Path) - 1

// listenUnix creates a listening AF_UNIX stream socket, non-blocking and
// close-on-exec, bound to address: a file system path, or "@name" for
// Linux's abstract namespace, where names are not files and vanish with
// the last socket bound to them.
//
// bind(2) creates the socket file with the permissions 0777 masked by the
// process's umask, in the directory the path names; connecting needs write
// permission on it. A path that is taken fails with EADDRINUSE, unless the
// file is a socket nothing listens on any more (a server that died without
// removing it): connecting to it is then refused, and listenUnix removes it
// and binds again. Finding that out costs the live server, if there is one,
// a connection that opens and closes at once. A file that is not a socket
// is never removed.
func listenUnix(address string, backlog int) (fd int, sa unix.Sockaddr, err error) {
	if err := checkUnixAddress(address); err != nil {
		return -1, nil, err
	}
	fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, os.NewSyscallError("socket", err)
	}
	defer func() {
		if err != nil {
			_ = unix.Close(fd) // already failing; err says why
			fd = -1
		}
	}()
	bound := &unix.SockaddrUnix{Name: address}
	err = unix.Bind(fd, bound)
	if err == unix.EADDRINUSE && address[0] != '@' && removeStale(address) {
		err = unix.Bind(fd, bound)
	}
	if err != nil {
		return fd, nil, os.NewSyscallError("bind", err)
	}
	if err = unix.Listen(fd, backlog); err != nil {
		return fd, nil, os.NewSyscallError("listen", err)
	}
	if sa, err = getname(unix.SYS_GETSOCKNAME, fd); err != nil {
		return fd, nil, os.NewSyscallError("getsockname", err)
	}
	return fd, sa, nil
}

// checkUnixAddress rejects what bind(2) would refuse with a bare EINVAL.
func checkUnixAddress(address string) error {
	switch {
	case address == "":
		return errors.New("reactor: empty Unix socket path")
	case address == "@":
		return errors.New("reactor: empty abstract Unix socket name")
	case address[0] == '@' && len(address)-1 > MaxUnixPath:
		// sun_path's first byte is the NUL that marks the name abstract.
		return fmt.Errorf("reactor: abstract Unix socket name of %d bytes: Linux takes at most %d", len(address)-1, MaxUnixPath)
	case address[0] != '@' && len(address) > MaxUnixPath:
		return fmt.Errorf("reactor: Unix socket path of %d bytes: Linux takes at most %d", len(address), MaxUnixPath)
	case address[0] != '@' && strings.IndexByte(address, 0) >= 0:
		return errors.New("reactor: Unix socket path contains a NUL byte")
	}
	return nil
}

// removeStale removes path if it is a socket file that nothing listens on,
// and reports whether it did (or the file vanished meanwhile, so that
// binding again may succeed). Connecting to a socket file that no socket is
// bound to any more is refused (ECONNREFUSED, from unix_find_other in
// net/unix/af_unix.c); a live listener accepts the connection, or reports
// EAGAIN when its queue is full. Connecting to a file that is not a socket
// is refused too, so the file's type is checked first: such a file is
// somebody's data and stays.
//
// The check and the removal cannot be one atomic step: a server that has
// bound the path but not yet called listen(2) is refused as well. The file
// is removed only if it is still the one that was probed (same device and
// inode), which leaves that window to the microseconds between bind and
// listen of a server starting at the same moment.
func removeStale(path string) bool {
	probed, ok := socketFileID(path)
	if !ok {
		return false
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	_ = unix.Close(fd) // a probe: nothing was sent
	switch err {
	case unix.ENOENT:
		return true // gone meanwhile: bind again
	case unix.ECONNREFUSED:
	default:
		return false // nil or EAGAIN: alive; anything else: do not touch it
	}
	return RemoveSocketFile(probed) == nil
}

// SocketFile identifies the socket file a listener created: its path, and
// the device and inode it had then, so that the file is removed only while
// it is still that one and never a file another server has put at the same
// path since.
type SocketFile struct {
	Path     string
	Dev, Ino uint64
}

// StatSocketFile returns the identity of the socket file at path, or false
// if there is none (an abstract name, or the file is gone or not a socket).
func StatSocketFile(path string) (SocketFile, bool) {
	if path == "" || path[0] == '@' {
		return SocketFile{}, false
	}
	id, ok := socketFileID(path)
	return id, ok
}

// socketFileID is StatSocketFile for a path already known not to be
// abstract.
func socketFileID(path string) (SocketFile, bool) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return SocketFile{}, false
	}
	return SocketFile{Path: path, Dev: st.Dev, Ino: st.Ino}, true
}

// RemoveSocketFile unlinks f.Path if it is still the socket file f (same
// device and inode); a file that is gone or that is another one is left
// alone without an error.
//
// Call it before closing the socket bound to f: the bound socket holds the
// file's inode, so while it is open the inode number cannot have been given
// to a file created since at the same path; once the socket is closed and
// its file removed, the number is free to be reused, and the check could
// mistake a newer file for f. Between the check and the unlink another
// process could still replace the file; nothing on Linux closes that window
// (unlinkat has no "only if this inode" flag), but it is as narrow as a
// system call.
func RemoveSocketFile(f SocketFile) error {
	path := f.Path
	now, ok := socketFileID(path)
	if !ok || now.Dev != f.Dev || now.Ino != f.Ino {
		return nil
	}
	if err := unix.Unlink(path); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "unlink", Path: path, Err: err}
	}
	return nil
}

// DupListener duplicates the listening socket fd with
// fcntl(F_DUPFD_CLOEXEC), makes the duplicate non-blocking and returns it
// with its bound address (see Interface.DupListener). O_NONBLOCK belongs to
// the open file description, which the two descriptors share: fd becomes
// non-blocking too. Go's net listeners are so already; a descriptor
// inherited from a parent process may not be, and a blocking accept would
// stall the event loop.
func (OS) DupListener(fd int) (nfd int, sa unix.Sockaddr, err error) {
	nfd, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, nil, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err)
	}
	defer func() {
		if err != nil {
			_ = unix.Close(nfd) // our duplicate; fd stays the caller's
			nfd = -1
		}
	}()
	typ, err := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nfd, nil, os.NewSyscallError("getsockopt SO_TYPE", err) // ENOTSOCK: not a socket
	}
	if typ != unix.SOCK_STREAM {
		return nfd, nil, fmt.Errorf("reactor: descriptor %d is not a stream socket (SO_TYPE %d)", fd, typ)
	}
	switch dom, err := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_DOMAIN); {
	case err != nil:
		return nfd, nil, os.NewSyscallError("getsockopt SO_DOMAIN", err)
	case dom != unix.AF_INET && dom != unix.AF_INET6 && dom != unix.AF_UNIX:
		return nfd, nil, fmt.Errorf("reactor: descriptor %d is a socket of address family %d, not TCP or Unix", fd, dom)
	}
	switch on, err := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); {
	case err != nil:
		return nfd, nil, os.NewSyscallError("getsockopt SO_ACCEPTCONN", err)
	case on == 0:
		return nfd, nil, fmt.Errorf("reactor: descriptor %d is not a listening socket (listen(2) was not called)", fd)
	}
	if err = unix.SetNonblock(nfd, true); err != nil {
		return nfd, nil, os.NewSyscallError("fcntl O_NONBLOCK", err)
	}
	if sa, err = getname(unix.SYS_GETSOCKNAME, nfd); err != nil {
		return nfd, nil, os.NewSyscallError("getsockname", err)
	}
	return nfd, sa, nil
}

// unixName decodes the sun_path of an AF_UNIX address of size bytes, as
// getsockname(2), getpeername(2) and accept(2) return it (see unix(7)): an
// unnamed socket has no path at all (size is just the family), an abstract
// name starts with a NUL and runs to size, and a path runs to its NUL.
func unixName(rsa *unix.RawSockaddrUnix, size uint32) string {
	n := min(int(size)-int(unsafe.Offsetof(rsa.Path)), len(rsa.Path))
	if n <= 0 {
		return ""
	}
	path := unsafe.Slice((*byte)(unsafe.Pointer(&rsa.Path[0])), n)
	if path[0] == 0 {
		return "@" + string(path[1:])
	}
	if i := bytes.IndexByte(path, 0); i >= 0 {
		path = path[:i]
	}
	return string(path)
}

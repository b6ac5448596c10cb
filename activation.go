// This file reads the listening sockets that systemd passes to a service it
// starts by socket activation, for WithListener. It touches no server state:
// it turns inherited descriptors into net.Listeners, once, at start-up.

package reactor

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// listenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START
// in sd-daemon.h): 0, 1 and 2 are stdin, stdout and stderr.
const listenFDsStart = 3

// SystemdListeners returns the listening sockets systemd passed to this
// process by socket activation (sd_listen_fds(3)), in the order of the
// socket unit's Listen*= lines, for use with WithListener:
//
//	lns, err := reactor.SystemdListeners()
//	if err != nil || len(lns) != 1 {
//		log.Fatalf("want one socket from systemd: %v", err)
//	}
//	srv, err := reactor.NewServer("", h, reactor.WithListener(lns[0]))
//	lns[0].Close() // the server holds its own descriptor
//
// with a socket unit such as
//
//	# echo.socket                   # echo.service
//	[Socket]                        [Service]
//	ListenStream=9000               ExecStart=/usr/local/bin/echo
//	ListenStream=/run/echo.sock
//
// systemd sets LISTEN_PID to the service's process ID and LISTEN_FDS to the
// number of descriptors, which start at 3. SystemdListeners returns nil and
// no error when LISTEN_PID is unset or names another process (the variables
// were inherited by a child, whose descriptors are not the parent's): the
// program was not socket-activated and binds its own address. It leaves the
// variables set; the descriptors it reads are made close-on-exec, and the
// listeners returned hold duplicates of them (net.FileListener), so the
// originals are closed. Call it once: a second call finds them closed.
// Datagram sockets (ListenDatagram=) are an error: a Server serves streams.
func SystemdListeners() ([]net.Listener, error) {
	return listenersFromEnv(os.Getenv, os.Getpid(), listenFDsStart)
}

// listenersFromEnv is SystemdListeners with its inputs passed in, so a test
// can give it descriptors other than 3 onwards.
func listenersFromEnv(getenv func(string) string, pid, first int) ([]net.Listener, error) {
	lpid := getenv("LISTEN_PID")
	if lpid == "" {
		return nil, nil
	}
	if p, err := strconv.Atoi(lpid); err != nil || p <= 0 {
		return nil, fmt.Errorf("reactor: LISTEN_PID=%q is not a process ID", lpid)
	} else if p != pid {
		return nil, nil
	}
	n, err := strconv.Atoi(getenv("LISTEN_FDS"))
	if err != nil || n < 0 {
		return nil, fmt.Errorf("reactor: LISTEN_FDS=%q is not a number of descriptors", getenv("LISTEN_FDS"))
	}
	lns := make([]net.Listener, 0, n)
	for fd := first; fd < first+n; fd++ {
		ln, err := fileListener(fd)
		if err != nil {
			for _, ln := range lns {
				_ = ln.Close() // already failing; err says why
			}
			return nil, fmt.Errorf("reactor: socket activation: descriptor %d: %w", fd, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// fileListener makes a net.Listener of the inherited descriptor fd and
// closes fd (the listener holds a duplicate).
func fileListener(fd int) (net.Listener, error) {
	unix.CloseOnExec(fd) // no child process inherits it from here on
	f := os.NewFile(uintptr(fd), "LISTEN_FDS:"+strconv.Itoa(fd))
	defer f.Close() // the listener has its own descriptor, or failed
	return net.FileListener(f)
}

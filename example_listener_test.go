package reactor_test

import (
	"context"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/tcpreactor/reactor"
)

// A server on a Unix domain socket. Only the owner and its group may
// connect: the umask decides the socket file's permissions when it is
// created, and the file is removed when the server stops.
func ExampleNewServer_unix() {
	h := reactor.HandlerFuncs{Message: func(c *reactor.Conn, in *reactor.Buffer) {
		c.Write(in.Next(in.Len()))
	}}
	old := syscall.Umask(0o007) // process-wide: set it before other files are created
	srv, err := reactor.NewServer("unix:/run/echo/echo.sock", h)
	syscall.Umask(old)
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve()
	defer srv.Shutdown(context.Background())
	// ...
}

// A service started by systemd's socket activation serves the socket
// systemd passed it, and binds its own address when started by hand.
func ExampleSystemdListeners() {
	var h reactor.Handler = reactor.HandlerFuncs{}
	lns, err := reactor.SystemdListeners()
	if err != nil {
		log.Fatal(err)
	}
	var srv *reactor.Server
	if len(lns) == 1 {
		srv, err = reactor.NewServer("", h, reactor.WithListener(lns[0]))
		lns[0].Close() // the server holds its own descriptor
	} else {
		srv, err = reactor.NewServer("127.0.0.1:9000", h)
	}
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve()
	// ...
}

// A restart that refuses no connection: the running process hands its
// listener to the process replacing it, which serves it while the old one
// finishes its connections.
func ExampleWithListener() {
	var h reactor.Handler = reactor.HandlerFuncs{}
	var ln net.Listener
	var err error
	if os.Getenv("INHERITED_LISTENER") == "1" {
		ln, err = net.FileListener(os.NewFile(3, "listener")) // from the old process
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:9000")
	}
	if err != nil {
		log.Fatal(err)
	}
	srv, err := reactor.NewServer("", h, reactor.WithListener(ln))
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	<-hup
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), "INHERITED_LISTENER=1")
	cmd.ExtraFiles = []*os.File{f} // descriptor 3 in the new process
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	f.Close()
	ln.Close()
	srv.Shutdown(context.Background())
}

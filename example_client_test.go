package reactor_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/tcpreactor/reactor"
)

// A client of a line-based service: each connection's replies arrive in
// OnMessage on its event loop, as they would on a server's. Dial returns
// once the connection is open and OnOpen has run; writes are safe from any
// goroutine.
func ExampleClient() {
	replies := make(chan string, 1)
	h := reactor.HandlerFuncs{
		Message: func(c *reactor.Conn, in *reactor.Buffer) {
			if i := in.IndexCRLF(); i >= 0 {
				replies <- string(in.Next(i + 2))
			}
		},
	}
	cl, err := reactor.NewClient(h, reactor.WithLoops(2), reactor.WithDialTimeout(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Shutdown(context.Background()) // flushes, closes, waits for the loops

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cl.Dial(ctx, "tcp", "127.0.0.1:6379") // or "unix", "/run/redis.sock"
	if err != nil {
		log.Fatal(err) // a *net.OpError: refused, timed out, ...; or ctx.Err()
	}
	c.Write([]byte("PING\r\n"))
	fmt.Print(<-replies)
}

// A TCP proxy: each accepted connection dials its upstream from OnOpen, on
// its own event loop, so both ends of the pair run on one goroutine and
// relay to each other without locks. The dial reports to the upstream's
// handler: OnOpen when connected, OnDialError if not (no OnClose follows a
// failed dial). examples/proxy adds backpressure across the pair and
// half-close.
func ExampleEventLoop_Dial() {
	srv, err := reactor.NewServer("127.0.0.1:6380", reactor.HandlerFuncs{
		Open: func(down *reactor.Conn) {
			down.PauseRead() // until the upstream is there
			up := &upstreamEnd{down: down}
			down.SetContext(up)
			if err := down.Loop().Dial("tcp", "127.0.0.1:6379", up, reactor.DialTimeout(time.Second)); err != nil {
				down.Close()
			}
		},
		Message: func(down *reactor.Conn, in *reactor.Buffer) {
			down.Context().(*upstreamEnd).up.Write(in.Next(in.Len()))
		},
		Close: func(down *reactor.Conn, err error) {
			if up := down.Context().(*upstreamEnd).up; up != nil {
				up.Close()
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve())
}

// upstreamEnd is the handler of a proxied pair's upstream connection.
type upstreamEnd struct {
	reactor.HandlerFuncs
	down, up *reactor.Conn
}

func (u *upstreamEnd) OnOpen(up *reactor.Conn) {
	u.up = up
	u.down.ResumeRead()
}

func (u *upstreamEnd) OnMessage(_ *reactor.Conn, in *reactor.Buffer) {
	u.down.Write(in.Next(in.Len()))
}

func (u *upstreamEnd) OnClose(*reactor.Conn, error) { u.down.Close() }

func (u *upstreamEnd) OnDialError(err error) { u.down.Close() }

// A Client tested over the simulated network: the test holds the server
// (Sim.Listen), accepts the client's connection as a SimConn, and answers
// it. No ports, no sleeps; Dial drives the simulation until the connection
// is open.
func ExampleSim_Listen() {
	s := reactor.NewSim(1)
	up, _ := s.Listen("10.0.0.2:6379") // the server the client talks to
	got := make(chan string, 1)
	cl, _ := reactor.NewClient(reactor.HandlerFuncs{
		Message: func(c *reactor.Conn, in *reactor.Buffer) { got <- string(in.Next(in.Len())) },
	}, reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(1))

	c, err := cl.Dial(context.Background(), "tcp", "10.0.0.2:6379")
	fmt.Println("dial:", err, c.RemoteAddr())
	c.Write([]byte("PING\r\n"))
	s.RunUntilIdle()

	server, _ := up.Accept()
	fmt.Printf("server read %q from %v\n", server.ReadAll(), server.RemoteAddr())
	server.WriteString("+PONG\r\n")
	s.RunUntilIdle()
	fmt.Printf("client read %q\n", <-got)

	// Nothing listens on port 6380: refused, as by a real kernel.
	_, err = cl.Dial(context.Background(), "tcp", "10.0.0.2:6380")
	fmt.Println("dial:", err)
	server.Close()
	cl.Close()
	// Output:
	// dial: <nil> 10.0.0.2:6379
	// server read "PING\r\n" from 198.51.100.1:32768
	// client read "+PONG\r\n"
	// dial: dial tcp 10.0.0.2:6380: connect: connection refused
}

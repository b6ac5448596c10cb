package reactor_test

import (
	"fmt"
	"strings"

	"github.com/tcpreactor/reactor"
)

// kvHandler serves a line-based key-value protocol: "SET k v\r\n" answers
// "OK", "GET k\r\n" answers the value (empty if unset), anything else
// "ERR". It consumes whole lines only, leaving a partial line in the buffer
// for the next OnMessage. The map is not locked: the server runs with one
// loop, so every callback runs on the same goroutine.
func kvHandler() reactor.Handler {
	kv := map[string]string{}
	return reactor.HandlerFuncs{Message: func(c *reactor.Conn, in *reactor.Buffer) {
		for i := in.IndexCRLF(); i >= 0; i = in.IndexCRLF() {
			f := strings.Fields(string(in.Next(i + 2)))
			switch {
			case len(f) == 3 && f[0] == "SET":
				kv[f[1]] = f[2]
				c.Write([]byte("OK\r\n"))
			case len(f) == 2 && f[0] == "GET":
				c.Write([]byte(kv[f[1]] + "\r\n"))
			default:
				c.Write([]byte("ERR\r\n"))
			}
		}
	}}
}

// A test of a line-based key-value handler over the simulated network:
// no sockets, no sleeps, the same output on every run. The injected fault
// cuts the server's first read short, so the last line arrives in two
// pieces and the handler must wait for the rest; the trace shows the two
// reads and what OnMessage was given each time. The shutdown's close
// lingers for the client's EOF; this client never closes, so after the
// linger timeout (5 s of virtual time, which stop lets pass) the server
// reads once more, finds nothing, and closes.
func ExampleSim() {
	s := reactor.NewSim(1) // the seed: the same run every time
	srv, _ := reactor.NewServer("127.0.0.1:6379", kvHandler(),
		reactor.WithDispatcher(s.Dispatcher), reactor.WithLoops(0))
	stop := s.Start(srv) // Serve on a goroutine; stop shuts it down

	c, _ := s.Dial("127.0.0.1:6379")
	s.Inject(reactor.Fault{Op: reactor.FaultRead, Conn: c, Short: true, Times: 1})
	c.WriteString("SET lang go\r\nGET lang\r\nGET nope\r\nHELLO\r\n")
	s.RunUntilIdle() // the server reads, handles and replies
	fmt.Printf("%q\n", c.ReadAll())
	fmt.Println(stop(), c.EOF()) // graceful shutdown: the client sees FIN
	for _, line := range strings.Split(s.Trace(), "\n") {
		if strings.Contains(line, "read fd=") || strings.Contains(line, "OnMessage") {
			fmt.Println(line)
		}
	}
	// Output:
	// "OK\r\ngo\r\n\r\nERR\r\n"
	// <nil> true
	// 000011 0s read fd=5 n=37
	// 000012 0s note loop 0: OnMessage fd=5 in=37
	// 000016 0s read fd=5 n=3
	// 000017 0s note loop 0: OnMessage fd=5 in=7
	// 000027 5s read fd=5 EAGAIN
}

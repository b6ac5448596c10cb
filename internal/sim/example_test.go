package sim_test

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpreactor/reactor/internal/sim"
)

// An event loop runs on its own goroutine over a stepped kernel; the test
// drives it from its own goroutine. Nothing runs until the test steps, so
// the output, trace included, is the same on every run.
func ExampleKernel_RunUntilIdle() {
	k := sim.New(sim.Config{Seed: 1, Stepped: true})
	p, _ := k.NewPoller() // before the loop's goroutine starts
	lfd, _, _ := k.Listen("tcp", "127.0.0.1:80", false, 0)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the event loop: accept, then echo in upper case
		defer wg.Done()
		_ = p.Add(lfd, sim.Read)
		events := make([]sim.Ready, 8)
		buf := make([]byte, 64)
		for {
			n, err := p.Wait(events, -1)
			if err != nil {
				return // closed
			}
			for _, ev := range events[:n] {
				if ev.FD == lfd {
					fd, _, err := k.Accept(lfd)
					if err == nil {
						_ = p.Add(fd, sim.Read)
					}
					continue
				}
				m, err := k.Read(ev.FD, buf)
				switch {
				case err == unix.EAGAIN:
				case err != nil || m == 0: // the client is done: close, and stop
					_ = p.Delete(ev.FD)
					_ = k.Close(ev.FD)
					_ = k.Close(lfd)
					_ = p.Close() // last: it ends this loop's turn
					return
				default:
					for i, b := range buf[:m] {
						if 'a' <= b && b <= 'z' {
							buf[i] = b - 'a' + 'A'
						}
					}
					_, _ = k.Write(ev.FD, buf[:m])
				}
			}
		}
	}()

	c, _ := k.Dial("127.0.0.1:80")
	_, _ = c.Write([]byte("hello"))
	fmt.Printf("before stepping: %q\n", c.ReadAll())
	k.RunUntilIdle()
	fmt.Printf("after: %q\n", c.ReadAll())
	_ = c.CloseWrite()
	k.Advance(time.Second)
	_, err := c.Read(make([]byte, 1))
	fmt.Println("then:", err)
	wg.Wait()
	fmt.Print(k.TraceText())
	// Output:
	// before stepping: ""
	// after: "HELLO"
	// then: EOF
	// 000001 0s poller p1 fd=3 created
	// 000002 0s listen fd=4 127.0.0.1:80 backlog=128
	// 000003 0s dial c1 fd=4 192.0.2.1:40000 > 127.0.0.1:80
	// 000004 0s write c1 n=5
	// 000005 0s turn p1 [4:R]
	// 000006 0s accept c1 fd=4 nfd=5 192.0.2.1:40000
	// 000007 0s turn p1 [5:R]
	// 000008 0s read fd=5 n=5
	// 000009 0s write fd=5 n=5
	// 000010 0s read c1 n=5
	// 000011 0s shutdown c1 SHUT_WR
	// 000012 0s turn p1 [5:R]
	// 000013 0s read fd=5 n=0 EOF
	// 000014 0s close fd=5
	// 000015 0s close fd=4
	// 000016 0s poller p1 fd=3 closed
	// 000017 1s clock
}

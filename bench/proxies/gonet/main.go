// Command gonet is the Go net proxy of the proxy benchmarks: the way a Go
// program usually relays TCP, a goroutine per direction per pair, each an
// io.Copy (which on Linux splices through a pipe, socket to socket, without
// the bytes entering user space). A direction that ends passes its EOF on
// with CloseWrite; the pair closes when both have ended, or at once when one
// fails.
//
//	gonet -listen 127.0.0.1:9100 -upstream 127.0.0.1:9000
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9100", "address to listen on")
	upstream := flag.String("upstream", "127.0.0.1:9000", "address to relay to")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	for {
		down, err := ln.Accept()
		if err != nil {
			// Out of descriptors, say: back off briefly and go on, as
			// net/http's Server does, rather than exit.
			log.Print(err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go relay(down.(*net.TCPConn), *upstream)
	}
}

func relay(down *net.TCPConn, upstream string) {
	defer down.Close()
	c, err := net.DialTimeout("tcp", upstream, 5*time.Second)
	if err != nil {
		return
	}
	up := c.(*net.TCPConn)
	defer up.Close()
	done := make(chan struct{})
	go func() {
		copyHalf(down, up)
		close(done)
	}()
	copyHalf(up, down)
	<-done
}

// copyHalf copies src to dst until src's EOF, then half-closes dst so that
// the EOF reaches the other side. On an error (a reset) it closes both, which
// ends the other direction too.
func copyHalf(dst, src *net.TCPConn) {
	if _, err := io.Copy(dst, src); err != nil {
		_ = src.Close()
		_ = dst.Close()
		return
	}
	_ = dst.CloseWrite()
}

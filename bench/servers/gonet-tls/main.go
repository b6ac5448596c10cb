// Command gonet-tls is the Go standard library TLS echo peer for the
// side-by-side benchmarks: the gonet server (one goroutine per connection,
// a read/write loop with a 4 KiB buffer) on a crypto/tls listener
// (tls.NewListener), with a self-signed ECDSA P-256 certificate made at
// start. The handshake runs in the connection's goroutine on its first
// Read, as in net/http. -loops sets GOMAXPROCS.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"log"
	"net"
	"runtime"
	"time"

	"github.com/tcpreactor/reactor/internal/selfsigned"
)

const bufSize = 4096

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, bufSize)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // io.EOF, a reset or a failed handshake: done either way
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "GOMAXPROCS (Go's net has no event-loop count)")
	flag.Parse()
	if *loops < 1 {
		log.Fatalf("-loops must be at least 1, got %d", *loops)
	}
	runtime.GOMAXPROCS(*loops)
	cert, err := selfsigned.New("127.0.0.1")
	if err != nil {
		log.Fatal(err)
	}
	raw, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	ln := tls.NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}})
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				log.Fatal(err)
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			log.Printf("accept: %v; retrying in %v", err, pause)
			time.Sleep(pause)
			continue
		}
		pause = 0
		go serve(c)
	}
}

// Package peer holds what several benchmark servers share, so that a
// server and its TLS form differ only in what TLS changes: the Go net echo
// loop and its accept loop, the fasthttp handler, and the self-signed
// certificate every TLS peer presents.
package peer

import (
	"crypto/tls"
	"errors"
	"flag"
	"log"
	"net"
	"runtime"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tcpreactor/reactor/internal/selfsigned"
)

// Listen parses the two flags every peer built on Go's runtime poller takes
// and listens on TCP: -addr, and -loops, which sets GOMAXPROCS because lib
// (the library's name, for the flag's help) has no event-loop count.
func Listen(lib string) net.Listener {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "GOMAXPROCS ("+lib+" has no event-loop count)")
	flag.Parse()
	if *loops < 1 {
		log.Fatalf("-loops must be at least 1, got %d", *loops)
	}
	runtime.GOMAXPROCS(*loops)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	return ln
}

// echoBufSize is the Go net echo servers' buffer: bufio's default size.
const echoBufSize = 4096

// Echo serves one connection of the Go net echo servers: a read/write loop
// with one 4 KiB buffer, until the peer ends it or an error does.
func Echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, echoBufSize)
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

// Accept runs serve on a goroutine of its own for every connection ln
// accepts. Accept errors other than a closed listener (EMFILE,
// ECONNABORTED) are retried after a growing pause, as net/http's Server
// does, so a burst past the descriptor limit does not end the server.
func Accept(ln net.Listener, serve func(net.Conn)) {
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

var hello = []byte("Hello, World!")

// Hello is the fasthttp peers' handler: GET / answers "Hello, World!"
// (text/plain), other paths 404.
func Hello(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Error("Method Not Allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	if string(ctx.Path()) != "/" {
		ctx.Error("Not Found", fasthttp.StatusNotFound)
		return
	}
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBody(hello)
}

// Cert returns the certificate every TLS peer presents: self-signed ECDSA
// P-256 for 127.0.0.1, made at start, so that no peer has a cheaper key.
func Cert() tls.Certificate {
	c, err := selfsigned.New("127.0.0.1")
	if err != nil {
		log.Fatal(err)
	}
	return c
}

// TLSConfig is the crypto/tls configuration of the TLS peers that use
// crypto/tls, with ALPN protos (none for the echo peers).
func TLSConfig(protos ...string) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{Cert()}, NextProtos: protos}
}

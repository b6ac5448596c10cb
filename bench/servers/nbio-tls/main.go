// Command nbio-tls is nbio's TLS echo peer for the side-by-side benchmarks:
// nbio's engine with its TLS extension (nbio/extension/tls, over
// lesismal/llib's fork of crypto/tls, which nbio's TLS needs), set up as
// nbio's own TLS example does: WrapOpen makes the TLS connection, and the
// data handler appends the ciphertext to it and reads the plaintext back
// out, echoing it. Unlike WrapData, which allocates a 2 KiB buffer per
// call, the handler reads into a pooled 16 KiB buffer, so that nbio is not
// charged for an allocation its users can avoid. The certificate is a
// self-signed ECDSA P-256 one made at start, as for every TLS peer here;
// -loops sets Config.NPoller.
package main

import (
	"flag"
	"log"
	"sync"

	"github.com/lesismal/llib/std/crypto/tls"
	"github.com/lesismal/nbio"
	ntls "github.com/lesismal/nbio/extension/tls"

	"github.com/tcpreactor/reactor/bench/internal/peer"
	"github.com/tcpreactor/reactor/internal/selfsigned"
)

var bufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	loops := flag.Int("loops", 1, "pollers")
	flag.Parse()
	if *loops < 1 {
		log.Fatalf("-loops must be at least 1, got %d", *loops)
	}
	certPEM, keyPEM, err := selfsigned.PEM(peer.Cert())
	if err != nil {
		log.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	engine := nbio.NewEngine(nbio.Config{
		Network: "tcp",
		Addrs:   []string{*addr},
		NPoller: *loops,
	})
	engine.OnOpen(ntls.WrapOpen(cfg, false, nil))
	engine.OnClose(ntls.WrapClose(nil))
	engine.OnData(func(c *nbio.Conn, data []byte) {
		tc, ok := c.Session().(*ntls.Conn)
		if !ok {
			return
		}
		if _, err := tc.Append(data); err != nil {
			_ = c.Close()
			return
		}
		bp := bufs.Get().(*[]byte)
		defer bufs.Put(bp)
		for {
			n, err := tc.Read(*bp)
			if err != nil {
				_ = c.Close()
				return
			}
			if n == 0 {
				return
			}
			if _, err := tc.Write((*bp)[:n]); err != nil {
				_ = c.Close()
				return
			}
		}
	})
	if err := engine.Start(); err != nil {
		log.Fatalf("nbio: %v", err)
	}
	select {} // serve until killed
}

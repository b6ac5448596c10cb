// Package tlsflag gives the examples their -tls, -cert and -key flags and
// turns them into a *tls.Config for reactor.WithTLS: the certificate and
// key from PEM files, or, without them, a self-signed certificate made at
// start for 127.0.0.1, ::1 and localhost (clients must then skip
// verification: curl -k, openssl s_client without -verify_return_error).
package tlsflag

import (
	"crypto/tls"
	"errors"
	"flag"

	"github.com/tcpreactor/reactor/internal/selfsigned"
)

// Flags are the TLS flags of one command.
type Flags struct {
	On        bool
	Cert, Key string
}

// Register defines -tls, -cert and -key on fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.BoolVar(&f.On, "tls", false, "serve TLS (with -cert and -key, or a self-signed certificate made at start)")
	fs.StringVar(&f.Cert, "cert", "", "TLS certificate chain, PEM (with -tls)")
	fs.StringVar(&f.Key, "key", "", "TLS private key, PEM (with -tls)")
}

// Config returns the server's TLS configuration, nil without -tls. ALPN
// offers protos (nil: none). selfSigned reports that the certificate was
// made at start.
func (f *Flags) Config(protos ...string) (cfg *tls.Config, selfSigned bool, err error) {
	if !f.On {
		if f.Cert != "" || f.Key != "" {
			return nil, false, errors.New("-cert and -key need -tls")
		}
		return nil, false, nil
	}
	var cert tls.Certificate
	switch {
	case f.Cert != "" && f.Key != "":
		cert, err = tls.LoadX509KeyPair(f.Cert, f.Key)
	case f.Cert != "" || f.Key != "":
		err = errors.New("-cert and -key go together")
	default:
		selfSigned = true
		cert, err = selfsigned.New("127.0.0.1", "::1", "localhost")
	}
	if err != nil {
		return nil, false, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: protos}, selfSigned, nil
}

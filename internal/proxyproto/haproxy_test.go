package proxyproto

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tcpreactor/reactor/internal/haproxytest"
)

// TestParseHAProxy checks the parser against the headers a real HAProxy
// sends with send-proxy (version 1) and send-proxy-v2: clients bound to
// distinct loopback addresses connect through it, and the header names
// exactly their address and port.
func TestParseHAProxy(t *testing.T) {
	haproxytest.Require(t)
	ports, err := haproxytest.FreePorts(3)
	require.NoError(t, err)
	backend, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
	require.NoError(t, err)
	defer backend.Close()
	v1 := fmt.Sprintf("127.0.0.1:%d", ports[1])
	v2 := fmt.Sprintf("127.0.0.1:%d", ports[2])
	cfg := haproxytest.SendProxyConfig(v1, v2, backend.Addr().String(), "")
	p, err := haproxytest.Start(t.TempDir(), cfg, []string{v1, v2}, 30*time.Second)
	require.NoError(t, err)
	defer p.Stop()

	// Every connection haproxy makes to the backend is read here and its
	// header (and the bytes after it) reported, keyed by the source it
	// names: the ones haproxytest.Start made to see the frontends listen
	// come first and are never asked for.
	type relayed struct {
		h    Header
		rest string
	}
	got := make(chan relayed, 16)
	go func() {
		for {
			s, err := backend.Accept()
			if err != nil {
				return
			}
			go func() {
				defer s.Close()
				_ = s.SetDeadline(time.Now().Add(30 * time.Second))
				var b []byte
				buf := make([]byte, 512)
				for {
					m, err := s.Read(buf)
					b = append(b, buf[:m]...)
					h, n, perr := Parse(b, 4096)
					if perr != nil || (n > 0 && len(b)-n >= len("hello")) || err != nil {
						if perr == nil && n > 0 {
							got <- relayed{h, string(b[n:])}
						}
						return
					}
				}
			}()
		}
	}()

	for _, tt := range []struct {
		frontend string
		version  int
		from     string
	}{
		{v1, 1, "127.0.0.2"},
		{v1, 1, "127.0.0.3"},
		{v2, 2, "127.0.0.2"},
		{v2, 2, "127.0.0.3"},
	} {
		t.Run(fmt.Sprintf("v%d from %s", tt.version, tt.from), func(t *testing.T) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tt.from)}, Timeout: 10 * time.Second}
			c, err := d.Dial("tcp", tt.frontend)
			require.NoError(t, err)
			defer c.Close()
			_, err = c.Write([]byte("hello"))
			require.NoError(t, err)
			want := netip.MustParseAddrPort(c.LocalAddr().String())
			for {
				select {
				case r := <-got:
					if r.h.Source != want {
						continue // a probe, or an earlier subtest's
					}
					assert.Equal(t, tt.version, r.h.Version)
					assert.False(t, r.h.Local)
					assert.Equal(t, netip.MustParseAddrPort(tt.frontend), r.h.Dest, "the address the client connected to")
					assert.Equal(t, "hello", r.rest, "the bytes after the header are the client's")
					return
				case <-time.After(30 * time.Second):
					t.Fatal("no header from haproxy naming the client")
				}
			}
		})
	}
}

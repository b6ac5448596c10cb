package main

import (
	"log/slog"
	"strings"
	"time"

	"github.com/tcpreactor/reactor"
)

// Proxy is the Handler of the connections the proxy accepts (downstream).
// For each, it dials the upstream on the same event loop and relays between
// the two. Both ends of a pair live on one loop, so every callback of both
// runs on one goroutine: the pair needs no lock, and the relay is a Write
// of what arrived (which copies it) to the other end.
//
// Three rules make it a faithful TCP relay:
//
//   - Backpressure across the pair. When one end's output passes the
//     high-water mark (the other end sends faster than this end's peer
//     reads), the other end stops reading (PauseRead) until this end's
//     output has drained to the low-water mark (ResumeRead). The kernel's
//     receive window then stops the fast sender, and the proxy holds at
//     most about one high-water mark plus one read per direction.
//   - Half-close in both directions. A peer's FIN is passed on as a FIN
//     (CloseWrite) once everything before it has been written, and the
//     other direction goes on until its own FIN: a client that sends its
//     request and shuts down its write side still gets the whole reply.
//   - Failure of one end closes the other: when one end closes, for any
//     reason, the other is closed once its pending output is flushed.
type Proxy struct {
	Upstream    string        // "host:port" of the upstream server, or "unix:/path"
	DialTimeout time.Duration // bound on each upstream dial; 0: the server's WithDialTimeout
	Log         *slog.Logger  // per-connection events at Debug, failures at Info
}

// pair is one proxied connection: the client's end (down) and the upstream
// server's end (up). Owned by their common loop.
type pair struct {
	proxy    *Proxy
	down, up *reactor.Conn // up is nil until the upstream dial completes
	downGone bool          // down has closed (its OnClose ran)
}

// upstream is the Handler of a pair's upstream connection.
type upstream pair

var (
	_ reactor.Handler          = (*Proxy)(nil)
	_ reactor.WatermarkHandler = (*Proxy)(nil)
	_ reactor.HalfCloseHandler = (*Proxy)(nil)
	_ reactor.Handler          = (*upstream)(nil)
	_ reactor.WatermarkHandler = (*upstream)(nil)
	_ reactor.HalfCloseHandler = (*upstream)(nil)
	_ reactor.DialErrorHandler = (*upstream)(nil)
)

// OnOpen starts the pair: the client's bytes wait in the kernel (reading is
// paused) until the upstream is connected, so nothing is buffered for a
// connection that may never open.
func (p *Proxy) OnOpen(down *reactor.Conn) {
	pr := &pair{proxy: p, down: down}
	down.SetContext(pr)
	down.PauseRead()
	var opts []reactor.DialOption
	if p.DialTimeout > 0 {
		opts = append(opts, reactor.DialTimeout(p.DialTimeout))
	}
	network, address := "tcp", p.Upstream
	if path, ok := strings.CutPrefix(address, "unix:"); ok {
		network, address = "unix", path
	}
	if err := down.Loop().Dial(network, address, (*upstream)(pr), opts...); err != nil {
		p.Log.Info("proxy: cannot dial", "upstream", p.Upstream, "err", err)
		_ = down.Close()
	}
}

// OnMessage relays the client's bytes upstream.
func (p *Proxy) OnMessage(down *reactor.Conn, in *reactor.Buffer) {
	relay(in, down.Context().(*pair).up)
}

// OnWriteComplete does nothing: the watermarks carry the flow control.
func (p *Proxy) OnWriteComplete(*reactor.Conn) {}

// OnClose closes the upstream once its pending output (the client's last
// bytes) is flushed.
func (p *Proxy) OnClose(down *reactor.Conn, err error) {
	pr := down.Context().(*pair)
	pr.downGone = true
	if err != nil {
		p.Log.Debug("proxy: client connection failed", "client", down.RemoteAddr(), "err", err)
	}
	if pr.up != nil {
		_ = pr.up.Close() // ErrConnClosed: it is closing already
	}
}

// OnHighWater stops reading from the upstream while the client is slow.
func (p *Proxy) OnHighWater(down *reactor.Conn, _ int) { pauseRead(down.Context().(*pair).up) }

// OnLowWater resumes reading from the upstream.
func (p *Proxy) OnLowWater(down *reactor.Conn, _ int) { resumeRead(down.Context().(*pair).up) }

// OnHalfClose passes the client's FIN on to the upstream.
func (p *Proxy) OnHalfClose(down *reactor.Conn) { closeWrite(down.Context().(*pair).up) }

// OnOpen completes the pair and lets the client's bytes flow.
func (u *upstream) OnOpen(up *reactor.Conn) {
	u.up = up
	if u.downGone {
		_ = up.Close() // the client left while we dialled
		return
	}
	u.down.ResumeRead()
}

// OnMessage relays the upstream's bytes to the client.
func (u *upstream) OnMessage(_ *reactor.Conn, in *reactor.Buffer) { relay(in, u.down) }

// OnWriteComplete does nothing (see Proxy.OnWriteComplete).
func (u *upstream) OnWriteComplete(*reactor.Conn) {}

// OnClose closes the client's connection once the upstream's last bytes
// have reached it.
func (u *upstream) OnClose(up *reactor.Conn, err error) {
	if err != nil {
		u.proxy.Log.Debug("proxy: upstream connection failed", "upstream", up.RemoteAddr(), "err", err)
	}
	_ = u.down.Close()
}

// OnHighWater stops reading from the client while the upstream is slow.
func (u *upstream) OnHighWater(*reactor.Conn, int) { u.down.PauseRead() }

// OnLowWater resumes reading from the client.
func (u *upstream) OnLowWater(*reactor.Conn, int) { u.down.ResumeRead() }

// OnHalfClose passes the upstream's FIN on to the client.
func (u *upstream) OnHalfClose(*reactor.Conn) { closeWrite(u.down) }

// OnDialError ends the client's connection: there is no upstream for it.
func (u *upstream) OnDialError(err error) {
	u.proxy.Log.Info("proxy: upstream dial failed", "upstream", u.proxy.Upstream, "err", err)
	_ = u.down.Close()
}

// relay writes what arrived on one end to the other. Write copies, so the
// input is consumed at once. Write fails only with ErrConnClosed: the other
// end is gone (and is closing this one), and its bytes are dropped, as a
// TCP proxy whose other side has gone must.
func relay(in *reactor.Buffer, to *reactor.Conn) {
	if to != nil {
		_, _ = to.Write(in.Bytes())
	}
	in.Discard(in.Len())
}

// closeWrite half-closes c, if it is there.
func closeWrite(c *reactor.Conn) {
	if c != nil {
		_ = c.CloseWrite() // ErrConnClosed: it is closing already
	}
}

func pauseRead(c *reactor.Conn) {
	if c != nil {
		c.PauseRead()
	}
}

func resumeRead(c *reactor.Conn) {
	if c != nil {
		c.ResumeRead()
	}
}

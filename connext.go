// This file holds connExt, the side struct behind Conn.x: everything a
// connection may need that a plain one does not — its part in the timeout
// lists, the TLS layer, and the PROXY protocol header. A plain connection
// without timeouts keeps x nil and pays one pointer for all of it; Conn
// stays in the allocator's 128-byte size class.
// (The alternative, shrinking channel.fd to int32 to free room for a second
// pointer, would spread conversions through every system call for a
// saving of one allocation per connection that uses a timeout and TLS.)

package reactor

// connExt is a connection's optional state. It is owned by the
// connection's loop. The pointer to it is written only under Conn.mu, so
// that Buffered and TLS, which other goroutines call, may read it under
// the same lock; the loop reads it without. Its tls and proxy fields, and
// the TLS layer's conn, are set on the loop before OnOpen and not changed
// after: a goroutine that has the *Conn (from OnOpen or Client.Dial, which
// returns after it) sees them set.
type connExt struct {
	connTimeouts             // idle, write, linger and handshake deadlines
	tls          *tlsLayer   // nil on a plain connection
	proxy        *proxyState // the PROXY header (WithProxyProtocol); nil without
}

// ext returns the connection's extension, allocating it on first use.
// Loop goroutine.
func (c *Conn) ext() *connExt {
	if c.x == nil {
		x := new(connExt)
		c.mu.Lock()
		c.x = x
		c.mu.Unlock()
	}
	return c.x
}

// tlsOf returns the connection's TLS layer, or nil for a plain connection.
// Loop goroutine.
func (c *Conn) tlsOf() *tlsLayer {
	if x := c.x; x != nil {
		return x.tls
	}
	return nil
}

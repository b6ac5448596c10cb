// Package proxyproto parses the PROXY protocol header (versions 1 and 2)
// that a load balancer such as HAProxy puts in front of a connection it
// relays, to tell the server the addresses of the client it relays for.
// The specification is HAProxy's doc/proxy-protocol.txt; the rules quoted in
// the comments below are from it.
//
// Parse is incremental in the simplest way: it is given every byte received
// so far and either finds a complete header, or asks for more, or rejects
// the bytes as soon as they cannot start a valid header. A header is small
// (107 bytes at most in version 1, and a bound the caller chooses in
// version 2), so parsing again from the start when more bytes arrive costs
// little, and keeps no state between calls.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
)

// Limits and constants of the specification.
const (
	// MaxV1 is the longest version 1 line, CRLF included: "PROXY UNKNOWN"
	// with two full IPv6 addresses and two five-digit ports.
	MaxV1 = 107
	// v2Fixed is the length of version 2's fixed part: the signature,
	// version and command, family and transport, length.
	v2Fixed = 16
)

// v1Prefix starts a version 1 header; v2Signature starts a version 2 one.
var (
	v1Prefix    = []byte("PROXY ")
	v2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// Command is what a version 2 header says about the connection.
type Command uint8

const (
	// Local: the proxy made the connection itself (a health check): the
	// connection's own addresses are the real ones.
	Local Command = 0x0
	// Proxy: the connection is relayed; the header has the original
	// addresses.
	Proxy Command = 0x1
)

// TLV is one type-length-value entry of a version 2 header.
type TLV struct {
	Type  byte
	Value []byte
}

// TLV types registered by the specification.
const (
	TypeALPN      = 0x01
	TypeAuthority = 0x02
	TypeCRC32C    = 0x03
	TypeNoop      = 0x04
	TypeUniqueID  = 0x05
	TypeSSL       = 0x20
	TypeNetNS     = 0x30
)

// Header is a parsed PROXY header.
type Header struct {
	Version int // 1 or 2
	// Local reports that the header carries no addresses to use: version 2
	// LOCAL, version 1 UNKNOWN, or version 2 PROXY with an unspecified
	// family. The connection's own addresses stand.
	Local bool
	// Source and Dest are the client's and the proxy's addresses (for
	// TCP over IPv4 or IPv6); zero when Local or for Unix addresses.
	Source, Dest netip.AddrPort
	// UnixSource and UnixDest are the addresses of a relayed AF_UNIX
	// connection (version 2).
	UnixSource, UnixDest string
	// TLVs are the version 2 extensions, in order; their values alias the
	// bytes given to Parse.
	TLVs []TLV
}

// Errors. Every rejection wraps ErrInvalid.
var (
	ErrInvalid = errors.New("invalid PROXY protocol header")
	// ErrTooLong wraps ErrInvalid: a version 1 line without CRLF in its
	// first 107 bytes, or a version 2 header longer than the bound.
	ErrTooLong = fmt.Errorf("%w: too long", ErrInvalid)
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Parse looks for a PROXY header at the start of b, the bytes received so
// far. It returns the header and its length n when b holds a complete and
// valid one (the bytes after it belong to the connection); n == 0 and a nil
// error when b is a valid beginning and more bytes are needed; and an error
// wrapping ErrInvalid as soon as b cannot start a valid header: the receiver
// must then drop the connection. The spec allows no guessing: a connection
// that does not begin with a header is rejected, never taken as one without.
//
// maxV2 bounds the length of a version 2 header, its fixed part, addresses
// and TLVs together (at least v2Fixed+216, enough for Unix addresses).
func Parse(b []byte, maxV2 int) (Header, int, error) {
	// "if the incoming byte count is 16 or above and the 13 first bytes
	// match the protocol signature block followed by the protocol version
	// 2 ... otherwise, if ... the 5 first characters match ... "PROXY"
	// then the protocol must be parsed as version 1" -- checked here on
	// the bytes there are, so that a wrong first byte is rejected at once.
	switch {
	case len(b) == 0:
		return Header{}, 0, nil
	case b[0] == v2Signature[0]:
		return parseV2(b, maxV2)
	case b[0] == v1Prefix[0]:
		return parseV1(b)
	}
	return Header{}, 0, invalid("no PROXY signature")
}

// parseV1 parses "PROXY TCP4|TCP6 src dst sport dport\r\n" or
// "PROXY UNKNOWN...\r\n".
func parseV1(b []byte) (Header, int, error) {
	n := min(len(b), len(v1Prefix))
	if !bytes.Equal(b[:n], v1Prefix[:n]) {
		return Header{}, 0, invalid("no PROXY signature")
	}
	end := bytes.IndexByte(b[:min(len(b), MaxV1)], '\n')
	if end < 0 {
		if len(b) >= MaxV1 {
			return Header{}, 0, ErrTooLong
		}
		// "The receiver must not tolerate a single CR or LF character to
		// end the line": a CR can only be followed by the LF.
		if i := bytes.IndexByte(b, '\r'); i >= 0 && i < len(b)-1 {
			return Header{}, 0, invalid("CR without LF")
		}
		return Header{}, 0, nil
	}
	if end == 0 || b[end-1] != '\r' {
		return Header{}, 0, invalid("LF without CR")
	}
	line := b[len(v1Prefix) : end-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return Header{}, 0, invalid("CR inside the line")
	}
	h := Header{Version: 1}
	proto, rest, _ := bytes.Cut(line, []byte(" "))
	switch string(proto) {
	case "UNKNOWN":
		// "the receiver must ignore anything presented before the CRLF".
		h.Local = true
		return h, end + 1, nil
	case "TCP4", "TCP6":
	default:
		return Header{}, 0, invalid("unknown protocol %q", proto)
	}
	f := bytes.Split(rest, []byte(" "))
	if len(f) != 4 {
		return Header{}, 0, invalid("want 4 fields after %s, have %d", proto, len(f))
	}
	v6 := string(proto) == "TCP6"
	src, err := parseV1Addr(f[0], v6)
	if err != nil {
		return Header{}, 0, err
	}
	dst, err := parseV1Addr(f[1], v6)
	if err != nil {
		return Header{}, 0, err
	}
	sport, err := parseV1Port(f[2])
	if err != nil {
		return Header{}, 0, err
	}
	dport, err := parseV1Port(f[3])
	if err != nil {
		return Header{}, 0, err
	}
	h.Source = netip.AddrPortFrom(src, sport)
	h.Dest = netip.AddrPortFrom(dst, dport)
	return h, end + 1, nil
}

// parseV1Addr parses an address "in its canonical format": for IPv4
// exactly four decimal numbers 0-255 without heading zeroes, for IPv6 groups
// of hexadecimal digits with at most one "::" (no zone, no embedded IPv4).
func parseV1Addr(s []byte, v6 bool) (netip.Addr, error) {
	if !v6 {
		var a [4]byte
		parts := bytes.Split(s, []byte("."))
		if len(parts) != 4 {
			return netip.Addr{}, invalid("IPv4 address %q", s)
		}
		for i, p := range parts {
			v, ok := decimal(p, 255)
			if !ok {
				return netip.Addr{}, invalid("IPv4 address %q", s)
			}
			a[i] = byte(v)
		}
		return netip.AddrFrom4(a), nil
	}
	if len(s) == 0 || len(s) > 39 || bytes.ContainsAny(s, ".%") {
		return netip.Addr{}, invalid("IPv6 address %q", s)
	}
	a, err := netip.ParseAddr(string(s))
	if err != nil || !a.Is6() {
		return netip.Addr{}, invalid("IPv6 address %q", s)
	}
	return a, nil
}

// parseV1Port parses a port: a decimal number 0-65535 without heading
// zeroes.
func parseV1Port(s []byte) (uint16, error) {
	v, ok := decimal(s, 65535)
	if !ok {
		return 0, invalid("port %q", s)
	}
	return uint16(v), nil
}

// decimal parses a decimal number no larger than limit, with no sign and
// no heading zero ("0" itself is fine).
func decimal(s []byte, limit int) (int, bool) {
	if len(s) == 0 || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	v := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, v <= limit
}

// parseV2 parses the binary header.
func parseV2(b []byte, maxV2 int) (Header, int, error) {
	n := min(len(b), len(v2Signature))
	if !bytes.Equal(b[:n], v2Signature[:n]) {
		return Header{}, 0, invalid("bad version 2 signature")
	}
	if len(b) > 12 {
		// "The highest four bits contains the version ... the receiver
		// must only accept this value"; "Receivers must drop connections
		// presenting unexpected values" of the command.
		if vc := b[12]; vc>>4 != 2 || vc&0xf > 1 {
			return Header{}, 0, invalid("version/command byte %#x", vc)
		}
	}
	if len(b) > 13 {
		// Family 0-3 and transport 0-2; "other values ... must be rejected
		// as invalid by receivers".
		if ft := b[13]; ft>>4 > 3 || ft&0xf > 2 {
			return Header{}, 0, invalid("family/transport byte %#x", ft)
		}
	}
	if len(b) < v2Fixed {
		return Header{}, 0, nil
	}
	total := v2Fixed + int(binary.BigEndian.Uint16(b[14:16]))
	if total > maxV2 {
		return Header{}, 0, ErrTooLong
	}
	if len(b) < total {
		return Header{}, 0, nil
	}
	hdr := b[:total]
	h := Header{Version: 2}
	if Command(b[12]&0xf) == Local {
		// "The receiver must accept this connection as valid and must use
		// the real connection endpoints and discard the protocol block
		// including the family which is ignored."
		h.Local = true
		return h, total, nil
	}
	family, transport := b[13]>>4, b[13]&0xf
	block := hdr[v2Fixed:]
	var alen int
	switch {
	case family == 0 || transport == 0:
		// UNSPEC: "the receiver is free to accept the connection anyway
		// and use the real endpoint addresses"; the length still says how
		// much to skip, and there are no addresses to read.
		h.Local = true
		return h, total, nil
	case transport != 1:
		// A datagram flow relayed to a stream server is no connection
		// this server can serve.
		return Header{}, 0, invalid("transport %d is not STREAM", transport)
	case family == 1:
		alen = 12
	case family == 2:
		alen = 36
	default: // 3, AF_UNIX
		alen = 216
	}
	if len(block) < alen {
		return Header{}, 0, invalid("address block of %d bytes for family %d", len(block), family)
	}
	switch family {
	case 1:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(block[0:4])), binary.BigEndian.Uint16(block[8:10]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(block[4:8])), binary.BigEndian.Uint16(block[10:12]))
	case 2:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(block[0:16])), binary.BigEndian.Uint16(block[32:34]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(block[16:32])), binary.BigEndian.Uint16(block[34:36]))
	case 3:
		h.UnixSource, h.UnixDest = cString(block[:108]), cString(block[108:216])
	}
	tlvs, err := parseTLVs(block[alen:])
	if err != nil {
		return Header{}, 0, err
	}
	if err := checkCRC(hdr, v2Fixed+alen); err != nil {
		return Header{}, 0, err
	}
	h.TLVs = tlvs
	return h, total, nil
}

// cString returns the bytes of a NUL-padded Unix socket path.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parseTLVs splits the bytes after the addresses into TLVs, each a type
// byte, a two-byte length and that many bytes of value; they must fill the
// bytes exactly.
func parseTLVs(b []byte) ([]TLV, error) {
	var tlvs []TLV
	for len(b) > 0 {
		if len(b) < 3 {
			return nil, invalid("truncated TLV")
		}
		n := int(binary.BigEndian.Uint16(b[1:3]))
		if len(b) < 3+n {
			return nil, invalid("TLV %#x of %d bytes overruns the header", b[0], n)
		}
		tlvs = append(tlvs, TLV{Type: b[0], Value: b[3 : 3+n : 3+n]})
		b = b[3+n:]
	}
	return tlvs, nil
}

// checkCRC verifies a PP2_TYPE_CRC32C TLV, if there is one: "replace the
// 32 bits of the checksum field in the received PROXY header with all '0's
// and calculate a CRC32c checksum value of the whole PROXY header", which
// must equal the value received. tlvStart is where the TLVs begin in hdr
// (parseTLVs has checked that they fill the rest exactly).
func checkCRC(hdr []byte, tlvStart int) error {
	for off := tlvStart; off < len(hdr); {
		n := int(binary.BigEndian.Uint16(hdr[off+1 : off+3]))
		if hdr[off] == TypeCRC32C {
			if n != 4 {
				return invalid("CRC32C TLV of %d bytes", n)
			}
			want := binary.BigEndian.Uint32(hdr[off+3 : off+7])
			zeroed := append([]byte(nil), hdr...)
			clear(zeroed[off+3 : off+7])
			if crc32.Checksum(zeroed, castagnoli) != want {
				return invalid("CRC32C mismatch")
			}
		}
		off += 3 + n
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const maxV2 = 1024

// v2 builds a version 2 header: command, family/transport byte, the
// address block and TLVs.
func v2(cmd Command, ft byte, addrs []byte, tlvs ...TLV) []byte {
	var body []byte
	body = append(body, addrs...)
	for _, t := range tlvs {
		body = append(body, t.Type, byte(len(t.Value)>>8), byte(len(t.Value)))
		body = append(body, t.Value...)
	}
	h := append([]byte(nil), v2Signature...)
	h = append(h, 0x20|byte(cmd), ft, byte(len(body)>>8), byte(len(body)))
	return append(h, body...)
}

func inet4(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b := append(s[:], d[:]...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func inet6(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	b := append(s[:], d[:]...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func unixAddrs(src, dst string) []byte {
	b := make([]byte, 216)
	copy(b, src)
	copy(b[108:], dst)
	return b
}

// withCRC appends a CRC32C TLV computed over the whole header.
func withCRC(cmd Command, ft byte, addrs []byte, tlvs ...TLV) []byte {
	h := v2(cmd, ft, addrs, append(tlvs, TLV{TypeCRC32C, make([]byte, 4)})...)
	binary.BigEndian.PutUint32(h[len(h)-4:], crc32.Checksum(h, castagnoli))
	return h
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

var valid = []struct {
	name   string
	header []byte
	want   Header
}{
	{"v1 TCP4", []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
		Header{Version: 1, Source: ap("192.168.0.1:56324"), Dest: ap("192.168.0.11:443")}},
	{"v1 TCP4 longest", []byte("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"),
		Header{Version: 1, Source: ap("255.255.255.255:65535"), Dest: ap("255.255.255.255:65535")}},
	{"v1 TCP4 zeroes", []byte("PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n"),
		Header{Version: 1, Source: ap("0.0.0.0:0"), Dest: ap("10.0.0.1:0")}},
	{"v1 TCP6", []byte("PROXY TCP6 2001:db8::1 ::1 40000 8443\r\n"),
		Header{Version: 1, Source: ap("[2001:db8::1]:40000"), Dest: ap("[::1]:8443")}},
	{"v1 TCP6 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff FFFF:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		Header{Version: 1, Source: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Dest: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},
	{"v1 UNKNOWN short", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Local: true}},
	{"v1 UNKNOWN long", []byte("PROXY UNKNOWN ffff:f::f:ffff ffff:f::f:ffff 65535 65535\r\n"), Header{Version: 1, Local: true}},
	{"v2 PROXY IPv4", v2(Proxy, 0x11, inet4("10.1.2.3", "10.9.8.7", 1234, 80)),
		Header{Version: 2, Source: ap("10.1.2.3:1234"), Dest: ap("10.9.8.7:80")}},
	{"v2 PROXY IPv6", v2(Proxy, 0x21, inet6("2001:db8::5", "2001:db8::6", 5555, 443)),
		Header{Version: 2, Source: ap("[2001:db8::5]:5555"), Dest: ap("[2001:db8::6]:443")}},
	{"v2 LOCAL", v2(Local, 0x00, nil), Header{Version: 2, Local: true}},
	{"v2 LOCAL with an address block to skip", v2(Local, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2)),
		Header{Version: 2, Local: true}},
	{"v2 PROXY UNSPEC", v2(Proxy, 0x00, []byte("whatever")), Header{Version: 2, Local: true}},
	{"v2 Unix", v2(Proxy, 0x31, unixAddrs("/run/client.sock", "/run/server.sock")),
		Header{Version: 2, UnixSource: "/run/client.sock", UnixDest: "/run/server.sock"}},
	{"v2 TLVs", v2(Proxy, 0x11, inet4("10.0.0.1", "10.0.0.2", 1, 2),
		TLV{TypeALPN, []byte("h2")}, TLV{TypeAuthority, []byte("example.com")}, TLV{TypeNoop, nil}, TLV{0xE0, []byte{1, 2, 3}}),
		Header{Version: 2, Source: ap("10.0.0.1:1"), Dest: ap("10.0.0.2:2"), TLVs: []TLV{
			{TypeALPN, []byte("h2")}, {TypeAuthority, []byte("example.com")}, {TypeNoop, []byte{}}, {0xE0, []byte{1, 2, 3}}}}},
	{"v2 CRC32C", withCRC(Proxy, 0x11, inet4("10.0.0.1", "10.0.0.2", 1, 2), TLV{TypeUniqueID, []byte("abc")}),
		Header{Version: 2, Source: ap("10.0.0.1:1"), Dest: ap("10.0.0.2:2")}},
}

// TestParseValid parses each valid header followed by the connection's
// first bytes, given all at once and split at every byte: every prefix
// shorter than the header asks for more, and the header is found, with its
// exact length, as soon as it is complete.
func TestParseValid(t *testing.T) {
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			stream := append(append([]byte(nil), tt.header...), "GET / HTTP/1.1\r\n"...)
			for i := 0; i < len(tt.header); i++ {
				h, n, err := Parse(stream[:i], maxV2)
				require.NoError(t, err, "prefix of %d bytes", i)
				require.Zero(t, n, "prefix of %d bytes", i)
				require.Equal(t, Header{}, h)
			}
			for _, end := range []int{len(tt.header), len(stream)} {
				h, n, err := Parse(stream[:end], maxV2)
				require.NoError(t, err)
				require.Equal(t, len(tt.header), n)
				if tt.want.TLVs == nil && h.Version == 2 && len(h.TLVs) > 0 {
					// CRC32C and unique-id cases: compare the rest.
					h.TLVs = nil
				}
				assert.Equal(t, tt.want, h)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	longV1 := "PROXY UNKNOWN " + strings.Repeat("x", 92) + "\r\n" // 108 bytes
	badCRC := withCRC(Proxy, 0x11, inet4("10.0.0.1", "10.0.0.2", 1, 2))
	badCRC[len(badCRC)-1] ^= 1
	tests := []struct {
		name  string
		input []byte
		early bool // rejected before the whole input is seen (by the first byte that cannot fit)
	}{
		{"no signature: HTTP", []byte("GET / HTTP/1.1\r\n\r\n"), true},
		{"no signature: TLS", []byte("\x16\x03\x01\x02\x00\x01"), true},
		{"v1 lowercase", []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), true},
		{"v1 no space", []byte("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"), true},
		{"v1 over 107 bytes", []byte(longV1), true},
		{"v1 LF only", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), false},
		{"v1 CR only", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"), false},
		{"v1 unknown protocol", []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), false},
		{"v1 TCP4 with IPv6", []byte("PROXY TCP4 ::1 ::2 1 2\r\n"), false},
		{"v1 TCP6 with IPv4", []byte("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), false},
		{"v1 TCP6 with embedded IPv4", []byte("PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n"), false},
		{"v1 TCP6 with a zone", []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), false},
		{"v1 heading zero in address", []byte("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), false},
		{"v1 octet over 255", []byte("PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n"), false},
		{"v1 heading zero in port", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), false},
		{"v1 port over 65535", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), false},
		{"v1 signed port", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), false},
		{"v1 missing field", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), false},
		{"v1 extra field", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), false},
		{"v1 two spaces", []byte("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), false},
		{"v2 bad signature", append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 12), true},
		{"v2 version 1", func() []byte { h := v2(Proxy, 0x11, inet4("1.1.1.1", "2.2.2.2", 1, 2)); h[12] = 0x11; return h }(), true},
		{"v2 command 2", func() []byte { h := v2(Proxy, 0x11, inet4("1.1.1.1", "2.2.2.2", 1, 2)); h[12] = 0x22; return h }(), true},
		{"v2 family 4", v2(Proxy, 0x41, make([]byte, 12)), true},
		{"v2 transport 3", v2(Proxy, 0x13, make([]byte, 12)), true},
		{"v2 UDP", v2(Proxy, 0x12, inet4("1.1.1.1", "2.2.2.2", 1, 2)), false},
		{"v2 IPv4 block too short", v2(Proxy, 0x11, make([]byte, 8)), false},
		{"v2 IPv6 block too short", v2(Proxy, 0x21, make([]byte, 12)), false},
		{"v2 length beyond the bound", v2(Proxy, 0x11, append(inet4("1.1.1.1", "2.2.2.2", 1, 2), make([]byte, maxV2)...)), true},
		{"v2 truncated TLV", v2(Proxy, 0x11, append(inet4("1.1.1.1", "2.2.2.2", 1, 2), TypeALPN, 0)), false},
		{"v2 TLV overruns", v2(Proxy, 0x11, append(inet4("1.1.1.1", "2.2.2.2", 1, 2), TypeALPN, 0, 9, 'h')), false},
		{"v2 CRC32C mismatch", badCRC, false},
		{"v2 CRC32C of 3 bytes", v2(Proxy, 0x11, inet4("1.1.1.1", "2.2.2.2", 1, 2), TLV{TypeCRC32C, []byte{1, 2, 3}}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, n, err := Parse(tt.input, maxV2)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrInvalid), "%v", err)
			assert.Zero(t, n)
			// Fed byte by byte, it is never accepted, and a header that
			// goes wrong early is rejected before its end.
			rejectedAt := -1
			for i := 1; i <= len(tt.input); i++ {
				_, n, err := Parse(tt.input[:i], maxV2)
				require.Zero(t, n, "accepted at %d bytes", i)
				if err != nil {
					rejectedAt = i
					break
				}
			}
			require.Positive(t, rejectedAt)
			if tt.early {
				assert.Less(t, rejectedAt, len(tt.input), "rejected only at the end")
			}
		})
	}
}

// FuzzProxyHeader checks, for any input, that Parse neither panics nor
// reads past what it was given, that an accepted header is found again in
// exactly its own bytes, and that no prefix of it is rejected.
func FuzzProxyHeader(f *testing.F) {
	for _, tt := range valid {
		f.Add(tt.header)
	}
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n"))
	f.Add([]byte("PROXY "))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b, maxV2)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || n != 0 {
				t.Fatalf("error %v with n=%d", err, n)
			}
			return
		}
		if n == 0 {
			return
		}
		if n > len(b) || (h.Version != 1 && h.Version != 2) {
			t.Fatalf("n=%d of %d, version %d", n, len(b), h.Version)
		}
		again, n2, err := Parse(b[:n:n], maxV2)
		if err != nil || n2 != n || again.Version != h.Version || again.Source != h.Source || again.Dest != h.Dest || again.Local != h.Local {
			t.Fatalf("header not found again in its own %d bytes: %v", n, err)
		}
		for i := range n {
			if _, m, err := Parse(b[:i], maxV2); err != nil || m != 0 {
				t.Fatalf("prefix of %d bytes: n=%d err=%v", i, m, err)
			}
		}
		if h.Version == 1 && n > MaxV1 {
			t.Fatalf("a version 1 header of %d bytes", n)
		}
		if h.Version == 2 && !bytes.HasPrefix(b, v2Signature) {
			t.Fatal("a version 2 header without its signature")
		}
	})
}

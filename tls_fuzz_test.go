package reactor

import (
	"bytes"
	"crypto/tls"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzTLSRecords sends arbitrary bytes as records after a real handshake
// over the simulation, cut into pieces the fuzzer chooses, and checks that
// the connection ends cleanly or carries on: no panic, no hang, OnClose
// once (the rig checks the callbacks and the descriptors at shutdown), no
// goroutine left (goleak, at the end of the package's tests).
func FuzzTLSRecords(f *testing.F) {
	f.Add([]byte{0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5}, uint8(3), false)                              // application data that fails to decrypt
	f.Add([]byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00}, uint8(1), true)                                  // a plaintext close_notify
	f.Add([]byte{0x14, 0x03, 0x03, 0x00, 0x01, 0x01}, uint8(2), false)                                       // ChangeCipherSpec
	f.Add([]byte{0x17, 0x03, 0x03, 0xff, 0xff}, uint8(0), false)                                             // oversized record
	f.Add([]byte{0x16, 0x03, 0x03, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00}, uint8(4), true)                      // a second ClientHello, empty
	f.Add(bytes.Repeat([]byte{0x17, 0x03, 0x03, 0x00, 0x00}, 40), uint8(7), false)                           // empty records
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint8(5), true)                                                  // not TLS at all
	f.Add([]byte{0x17, 0x03, 0x03, 0x40, 0x11}, uint8(9), true)                                              // a header, then the FIN
	f.Add(append([]byte{0x17, 0x03, 0x03, 0x00, 0x20}, bytes.Repeat([]byte{0xaa}, 32)...), uint8(11), false) // a tag that does not match
	f.Fuzz(func(t *testing.T, data []byte, cut uint8, fin bool) {
		rec := newRecorder()
		r := startTLSSim(t, int64(cut), rec, WithLingerTimeout(time.Second))
		cl, _, tc := r.client(simTLSClientConfig())
		require.NoError(t, tc.Handshake())
		echoTLS(t, tc, []byte("before"))
		sc := rec.conn(cl)
		require.NotNil(t, sc)
		step := int(cut)%17 + 1
		for i := 0; i < len(data); i += step {
			if _, err := cl.Write(data[i:min(i+step, len(data))]); err != nil {
				break // the server reset it
			}
			r.s.k.RunUntilIdle()
		}
		if fin {
			_ = cl.CloseWrite()
		} else {
			_ = cl.Close()
		}
		r.s.k.RunUntilIdle()
		r.s.k.Advance(2 * time.Second) // past the linger
		_, closed := rec.closeOf(sc)
		assert.True(t, closed, "the connection ended")
		assert.Equal(t, int64(1), r.srv.Stats().TLS.Handshakes)
	})
}

// TestTLSRecordsAfterHandshake is FuzzTLSRecords's seeds as a test, with
// the outcome each must have: a record that fails to decrypt or breaks
// the protocol ends the connection with an error.
func TestTLSRecordsAfterHandshake(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"bad-tag", append([]byte{0x17, 0x03, 0x03, 0x00, 0x20}, bytes.Repeat([]byte{0xaa}, 32)...)},
		{"oversized", []byte{0x17, 0x03, 0x03, 0xff, 0xff}},
		{"plaintext-alert", []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			r := startTLSSim(t, 1, rec)
			cfg := simTLSClientConfig()
			cfg.MinVersion = tls.VersionTLS13
			cl, _, tlc := r.client(cfg)
			require.NoError(t, tlc.Handshake())
			echoTLS(t, tlc, []byte("before"))
			sc := rec.conn(cl)
			_, err := cl.Write(tc.data)
			require.NoError(t, err)
			r.s.k.RunUntilIdle()
			cr, ok := rec.closeOf(sc)
			require.True(t, ok, "ended")
			assert.Error(t, cr.err)
		})
	}
}

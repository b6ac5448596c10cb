package tour

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func upper(line []byte) []byte { return bytes.ToUpper(line) }

func TestLines(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string // each followed by RunUntilIdle
		want   string
		closed bool
	}{
		{name: "one line", writes: []string{"hello\n"}, want: "HELLO\n"},
		{name: "pipelined", writes: []string{"a\nb\r\nc\n"}, want: "A\nB\nC\n"},
		{name: "split", writes: []string{"hel", "lo\nwor", "ld\n"}, want: "HELLO\nWORLD\n"},
		{name: "byte by byte", writes: strings.Split("ab\ncd\n", ""), want: "AB\nCD\n"},
		{name: "empty line", writes: []string{"\n"}, want: "\n"},
		{name: "quit", writes: []string{"x\nQUIT\ny\n"}, want: "X\nBYE\n", closed: true},
		{name: "too long", writes: []string{strings.Repeat("z", 17)}, want: "ERR line too long\n", closed: true},
		{name: "too long with end", writes: []string{strings.Repeat("z", 17) + "\n"}, want: "ERR line too long\n", closed: true},
		{name: "longest", writes: []string{strings.Repeat("z", 16) + "\n"}, want: strings.Repeat("Z", 16) + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, 1, &Lines{MaxLine: 16, Reply: upper})
			c := dial(t, s)
			var got []byte
			for _, w := range tc.writes {
				send(t, s, c, w)
				got = append(got, c.ReadAll()...)
			}
			assert.Equal(t, tc.want, string(got))
			assert.Equal(t, tc.closed, closed(c), "closed by the server")
		})
	}
}

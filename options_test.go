package reactor

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestDurationOptions: durations at the edge of what each option can take.
// The connection timeouts take anything up to math.MaxInt64 (the usual
// "never"; see TestSimTimeoutsOfForeverNeverFire); keep-alive stops at the
// kernel's limit, which setsockopt would otherwise refuse for every
// connection, quietly.
func TestDurationOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
		ok   bool
	}{
		{"idle forever", WithIdleTimeout(math.MaxInt64), true},
		{"write forever", WithWriteTimeout(math.MaxInt64), true},
		{"keep-alive at the kernel's limit", WithKeepAlive(32767 * time.Second), true},
		{"keep-alive a second over", WithKeepAlive(32768 * time.Second), false},
		{"keep-alive forever", WithKeepAlive(math.MaxInt64), false},
		{"keep-alive off", WithKeepAlive(0), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaultConfig()
			tt.opt(&cfg)
			err := cfg.validate()
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

//go:build reactor_poll

package reactor

// wantDefaultDispatcher is the backend a build with -tags reactor_poll uses
// by default (see TestDefaultDispatcherFollowsBuildTag).
const wantDefaultDispatcher = "*reactor.pollDispatcher"

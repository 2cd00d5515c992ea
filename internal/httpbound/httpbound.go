// Package httpbound bounds what net/http leaves unbounded on a server that
// sets no ReadTimeout (the frontend's, the relay's and the admin listener's
// do not, as it would also cut long answers: a long poll, a CPU profile):
// once a request's headers are in, net/http clears the read deadline and,
// before it answers, reads whatever body the handler left (up to 256 KB)
// with none, so a body trickled to any path, even one that reads no body,
// holds the connection and its goroutine for ever.
package httpbound

import (
	"net/http"
	"time"
)

// Body gives r's body, if it has one, until d from now to arrive. A
// request without a body (most GETs, WebSocket upgrades) is left as it is,
// so that long answers and upgraded connections keep their own deadlines.
func Body(w http.ResponseWriter, r *http.Request, d time.Duration) {
	if r.Body != nil && r.Body != http.NoBody {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
	}
}

// Handler wraps h with Body.
func Handler(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Body(w, r, d)
		h.ServeHTTP(w, r)
	})
}

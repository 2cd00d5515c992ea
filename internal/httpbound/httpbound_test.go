package httpbound

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A server with only the header timeout, as the programs' are: a request
// whose body never arrives is cut off by Handler, on a path that reads the
// body and on one that does not; one without a body is not touched.
func TestHandler(t *testing.T) {
	t.Parallel()
	const d = 300 * time.Millisecond
	mux := http.NewServeMux()
	mux.HandleFunc("POST /read", func(w http.ResponseWriter, r *http.Request) { _, _ = io.ReadAll(r.Body) })
	mux.HandleFunc("GET /ignore", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(3 * d) // longer than d: a request without a body keeps no deadline
		_, _ = io.WriteString(w, "done")
	})
	srv := httptest.NewUnstartedServer(Handler(mux, d))
	srv.Config.ReadHeaderTimeout = 10 * time.Second
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	for _, head := range []string{"POST /read HTTP/1.1", "GET /ignore HTTP/1.1"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		fmt.Fprintf(c, "%s\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx", head)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("%s with a trickled body: the connection was not closed: %v after %s", head, err, time.Since(start))
		}
	}

	resp, err := http.Get(srv.URL + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "done" {
		t.Fatalf("a slow answer to a request without a body: %q, %v", b, err)
	}
}

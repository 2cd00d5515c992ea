package relay_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openpassport/prover-fleet/api/internal/relay"
)

// These tests read the relay's frames as they are on the wire (Engine.IO
// 4 packets carrying Socket.IO 5 packets), which is what socket.io-client
// in the app decodes: "42" + ["status", payload]. They speak the
// protocol's few framing characters themselves, to see bytes the Go client
// would hide.

// rawWS opens a websocket the way socket.io-client does with transports
// ['websocket'] and path '/', and connects to namespace "/".
func rawWS(t *testing.T, url string, header http.Header) *websocket.Conn {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.DialContext(t.Context(),
		strings.Replace(url, "http://", "ws://", 1)+"/?EIO=4&transport=websocket", header)
	if err != nil {
		t.Fatalf("websocket: %v (%v)", err, resp)
	}
	t.Cleanup(func() { ws.Close() })
	open := readFrame(t, ws)
	if !strings.HasPrefix(open, "0{") {
		t.Fatalf("first frame %q, want an Engine.IO open packet", open)
	}
	var hs struct {
		Sid          string `json:"sid"`
		PingInterval int    `json:"pingInterval"`
		PingTimeout  int    `json:"pingTimeout"`
		MaxPayload   int    `json:"maxPayload"`
	}
	must(t, json.Unmarshal([]byte(open[1:]), &hs))
	if hs.Sid == "" || hs.PingInterval != 25000 || hs.PingTimeout != 20000 || hs.MaxPayload != 16384 {
		t.Errorf("handshake %+v", hs)
	}
	must(t, ws.WriteMessage(websocket.TextMessage, []byte("40")))
	if got := readFrame(t, ws); !strings.HasPrefix(got, `40{"sid":"`) {
		t.Fatalf("connect answer %q", got)
	}
	return ws
}

// readFrame reads the next text frame, answering Engine.IO pings.
func readFrame(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	for {
		must(t, ws.SetReadDeadline(time.Now().Add(wait)))
		typ, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if typ == websocket.TextMessage && string(data) == "2" {
			must(t, ws.WriteMessage(websocket.TextMessage, []byte("3")))
			continue
		}
		return string(data)
	}
}

// The exact frames the app receives: a JSON object with a numeric status
// (the app compares with ===), error_code and reason only when set.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{})
	pending := e.insert(t)
	failed := e.insert(t)
	e.fail(t, failed, "cancelled")
	registered := e.insert(t)
	e.witness(t, registered)
	e.proof(t, registered)
	e.verdict(t, registered, 5, ptr("REGISTERED_COMMITMENT"))
	verified := e.insert(t)
	e.witness(t, verified)
	e.proof(t, verified)
	e.verdict(t, verified, 4, nil)

	// An app from any origin (the upgrade does not insist on the same one).
	ws := rawWS(t, e.url, http.Header{"Origin": {"https://app.example"}})
	for _, tc := range []struct {
		arg  string
		want string
	}{
		{`"` + pending + `"`, `42["status",{"uuid":"` + pending + `","status":0}]`},
		{`"` + failed + `"`, `42["status",{"uuid":"` + failed + `","status":3,"reason":"cancelled"}]`},
		{`"` + registered + `"`, `42["status",{"uuid":"` + registered + `","status":5,"error_code":"REGISTERED_COMMITMENT","reason":"REGISTERED_COMMITMENT"}]`},
		{`"` + verified + `"`, `42["status",{"uuid":"` + verified + `","status":4}]`},
		{`"nope"`, `42["status",{"uuid":"nope","status":3,"error_code":"INVALID_UUID","reason":"uuid is not a UUID"}]`},
	} {
		must(t, ws.WriteMessage(websocket.TextMessage, []byte(`42["subscribe",`+tc.arg+`]`)))
		if got := readFrame(t, ws); got != tc.want {
			t.Errorf("subscribe %s:\n got %s\nwant %s", tc.arg, got, tc.want)
		}
	}
	// With an acknowledgement id, the answer is also an ACK packet
	// ("43" + id) carrying the same payload.
	must(t, ws.WriteMessage(websocket.TextMessage, []byte(`427["subscribe","`+verified+`"]`)))
	frames := []string{readFrame(t, ws), readFrame(t, ws)}
	want := map[string]bool{
		`42["status",{"uuid":"` + verified + `","status":4}]`: true,
		`437[{"uuid":"` + verified + `","status":4}]`:         true,
	}
	for _, f := range frames {
		if !want[f] {
			t.Errorf("unexpected frame %s", f)
		}
		delete(want, f)
	}
}

// Long polling (the library gives it): the same packets over GET and POST,
// with the handshake by hand.
func TestPollingTransport(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{})
	id := e.insert(t)
	hc := &http.Client{Timeout: wait}
	get := func(query string) string {
		t.Helper()
		resp, err := hc.Get(e.url + "/?EIO=4&transport=polling" + query)
		must(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET: %d %s", resp.StatusCode, body)
		}
		return string(body)
	}
	post := func(query, payload string) {
		t.Helper()
		resp, err := hc.Post(e.url+"/?EIO=4&transport=polling"+query, "text/plain;charset=UTF-8", strings.NewReader(payload))
		must(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "ok" {
			t.Fatalf("POST: %d %s", resp.StatusCode, body)
		}
	}
	open := get("")
	var hs struct {
		Sid string `json:"sid"`
	}
	if !strings.HasPrefix(open, "0") || json.Unmarshal([]byte(open[1:]), &hs) != nil || hs.Sid == "" {
		t.Fatalf("open %q", open)
	}
	sid := "&sid=" + hs.Sid
	post(sid, "40")
	if got := get(sid); !strings.HasPrefix(got, `40{"sid":"`) {
		t.Fatalf("connect answer %q", got)
	}
	post(sid, `42["subscribe","`+id+`"]`)
	if got, want := get(sid), `42["status",{"uuid":"`+id+`","status":0}]`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	e.witness(t, id)
	if got, want := get(sid), `42["status",{"uuid":"`+id+`","status":1}]`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// Nothing a client sends takes the relay down: each garbage message gets
// either an answer or the connection closed, and afterwards the relay
// still serves, without a handler panic in its logs.
func TestGarbage(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	e := setupLogged(t, relay.Config{}, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	garbage := []struct {
		name string
		typ  int
		data string
	}{
		{"cut JSON", websocket.TextMessage, `42[`},
		{"bare message", websocket.TextMessage, `4`},
		{"not an array", websocket.TextMessage, `42{}`},
		{"subscribe without argument", websocket.TextMessage, `42["subscribe"]`},
		{"uuid of the wrong type", websocket.TextMessage, `42["subscribe",{"uuid":{"a":[1,2]}}]`},
		{"event name a number", websocket.TextMessage, `42[1,2,3]`},
		{"unknown event", websocket.TextMessage, `42["status",1]`},
		{"unsubscribe garbage", websocket.TextMessage, `42["unsubscribe",null]`},
		{"unknown packet type", websocket.TextMessage, `49`},
		{"unknown namespace", websocket.TextMessage, `40/admin,`},
		{"ack without id", websocket.TextMessage, `43`},
		{"binary event without attachments", websocket.TextMessage, `451-["subscribe",{"_placeholder":true,"num":0}]`},
		{"binary frame", websocket.BinaryMessage, "\xff\x00\x01"},
		{"engine noise", websocket.TextMessage, `9zzz`},
		{"not UTF-8", websocket.TextMessage, "42[\"subscribe\",\"\xff\xfe\"]"},
		{"over the size limit", websocket.TextMessage, `42["subscribe","` + strings.Repeat("a", 20<<10) + `"]`},
	}
	for _, g := range garbage {
		t.Run(g.name, func(t *testing.T) {
			ws := rawWS(t, e.url, nil)
			if err := ws.WriteMessage(g.typ, []byte(g.data)); err != nil {
				// The relay may close before it has read all of a large
				// message: the rest of the write meets a reset or a broken
				// pipe. Closed by the relay: fine.
				var ce *websocket.CloseError
				if !asCloseOrEOF(err, &ce) && !strings.Contains(err.Error(), "broken pipe") {
					t.Fatalf("write: %v", err)
				}
				return
			}
			// Then a probe: answered if the connection lives on.
			_ = ws.WriteMessage(websocket.TextMessage, []byte(`42["subscribe","probe"]`))
			for {
				must(t, ws.SetReadDeadline(time.Now().Add(wait)))
				_, data, err := ws.ReadMessage()
				if err != nil {
					var ce *websocket.CloseError
					if !asCloseOrEOF(err, &ce) {
						t.Fatalf("read: %v", err)
					}
					return // closed by the relay: fine
				}
				if strings.Contains(string(data), `"uuid":"probe"`) {
					return // answered: fine
				}
				if string(data) == "2" {
					_ = ws.WriteMessage(websocket.TextMessage, []byte("3"))
				}
			}
		})
	}
	id := e.insert(t)
	c := dial(t, e.url)
	c.subscribe(id)
	c.expect(t, id, 0)
	if strings.Contains(logs.String(), "panicked") {
		t.Errorf("a handler panicked:\n%s", logs.String())
	}
}

func asCloseOrEOF(err error, ce **websocket.CloseError) bool {
	if e, ok := err.(*websocket.CloseError); ok {
		*ce = e
		return true
	}
	return err == io.EOF || err == io.ErrUnexpectedEOF || strings.Contains(err.Error(), "connection reset") ||
		strings.Contains(err.Error(), "use of closed")
}

// Anything but path "/" is not the relay.
func TestOtherPaths(t *testing.T) {
	t.Parallel()
	e := setup(t, relay.Config{})
	for _, path := range []string{"/socket.io/?EIO=4&transport=polling", "/x", "/metrics"} {
		resp, err := http.Get(e.url + path)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
	// An Engine.IO 3 client (Socket.IO v2) is refused.
	resp, err := http.Get(e.url + "/?EIO=3&transport=polling")
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("EIO=3: %d %s, want 400", resp.StatusCode, body)
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

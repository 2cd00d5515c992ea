// Package rpc is the frontend's wire: JSON-RPC 2.0 over WebSocket and over
// HTTP POST on the same paths ("/" and "/ws"), plus GET /v1/proofs/{uuid}.
//
// The messages are sourcegraph/jsonrpc2's types, but the server reads them
// with its own loop rather than jsonrpc2.Conn, for three reasons measured or
// read in jsonrpc2 v0.2.3: Request.UnmarshalJSON decodes params into a tree
// of interface values and encodes them again (about 1 s and 330 MB of
// garbage for one 10 MiB submit on the reference machine; here the text is
// validated once and the params split without decoding); a
// malformed frame makes Conn close the socket, where JSON-RPC wants a
// -32700 reply and the socket kept; and its ID cannot echo a null id. The
// Go client (api/client) does use jsonrpc2.Conn.
//
// Every request gets exactly one response (notifications none): panics in
// a method are recovered into -32603, oversized bodies (over the limit, 10
// MiB by default) into -32600, and the connection keeps serving.
package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sourcegraph/jsonrpc2"

	"github.com/openpassport/prover-fleet/api/internal/admission"
	"github.com/openpassport/prover-fleet/api/internal/handshake"
	"github.com/openpassport/prover-fleet/api/internal/intake"
	"github.com/openpassport/prover-fleet/api/internal/jsonvalid"
	"github.com/openpassport/prover-fleet/api/internal/params"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/internal/httpbound"
	"github.com/openpassport/prover-fleet/shared/attest"
)

// Config tunes the wire.
type Config struct {
	// MaxBodyBytes bounds one request body or WebSocket message
	// (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// MaxSubscriptions bounds the subscriptions of one WebSocket
	// (default 64).
	MaxSubscriptions int
	// PingInterval is how often a WebSocket is pinged (default 30 s), and
	// PongTimeout how long the pong may take before the socket is closed
	// (default 15 s).
	PingInterval time.Duration
	PongTimeout  time.Duration
	// IdleTimeout closes a WebSocket whose client has sent nothing for
	// that long (default 60 s) — unless a session it opened is still open
	// (it then stays until the session expires, SessionTTL after its
	// hello) or it holds a subscription (it then stays while it answers
	// pings). It is also the HTTP server's keep-alive idle timeout.
	IdleTimeout time.Duration
	// SessionTTL is the session table's TTL (default 120 s).
	SessionTTL time.Duration
	// ReadTimeout bounds reading one WebSocket message, or one POST body,
	// once it has begun (default 60 s: 10 MiB at 175 KB/s).
	ReadTimeout time.Duration
	// WriteTimeout bounds one write (default 10 s): a client that does not
	// read is disconnected once its buffers are full for that long.
	WriteTimeout time.Duration
	// ReadBufferSize is the read buffer of one WebSocket (default 512
	// bytes: an idle socket keeps it; larger messages are read straight
	// into their own buffer). Write buffers (16 KiB) come from a pool
	// shared by all sockets, only while a message is written.
	ReadBufferSize int
}

// DefaultMaxBodyBytes is the app's 10 MiB.
const DefaultMaxBodyBytes = 10 << 20

// Observer hears about every call, refusal and closed WebSocket (for
// metrics). Its methods must not block.
type Observer interface {
	// Call is told the method (or "" when the message was not a request),
	// the JSON-RPC error code (0 on success) and the time it took.
	Call(method string, code int64, d time.Duration)
	// Refused is told why a connection, WebSocket or hello was refused.
	Refused(reason string)
	// WebSocketClosed is told why a WebSocket closed: client, idle,
	// pong_timeout, read_timeout, write_failed or shutdown.
	WebSocketClosed(reason string)
}

// Server serves the frontend's methods. Create it with New.
type Server struct {
	svc  *intake.Service
	adm  *admission.Admission
	cfg  Config
	log  *slog.Logger
	obs  Observer
	base context.Context // parent of the WebSockets' contexts (no values, never cancelled)

	mux      *http.ServeMux
	upgrader websocket.Upgrader
	// messageBuffers are WebSocket messages' read buffers, reused.
	messageBuffers sync.Pool

	mu       sync.Mutex
	conns    map[*wsConn]struct{}
	closed   bool
	inflight sync.WaitGroup // WebSocket messages being handled
}

// New returns a Server for svc, admitting clients with adm. obs may be nil.
func New(svc *intake.Service, adm *admission.Admission, log *slog.Logger, obs Observer, cfg Config) (*Server, error) {
	switch {
	case svc == nil:
		return nil, errors.New("rpc: service is nil")
	case adm == nil:
		return nil, errors.New("rpc: admission is nil")
	case log == nil:
		return nil, errors.New("rpc: logger is nil")
	case cfg.MaxBodyBytes < 0 || cfg.MaxSubscriptions < 0 || cfg.PingInterval < 0 || cfg.PongTimeout < 0 ||
		cfg.IdleTimeout < 0 || cfg.SessionTTL < 0 || cfg.ReadTimeout < 0 || cfg.WriteTimeout < 0 || cfg.ReadBufferSize < 0:
		return nil, errors.New("rpc: Config values must not be negative")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxSubscriptions == 0 {
		cfg.MaxSubscriptions = 64
	}
	if cfg.ReadBufferSize == 0 {
		cfg.ReadBufferSize = 512
	}
	def(&cfg.PingInterval, 30*time.Second)
	def(&cfg.PongTimeout, 15*time.Second)
	def(&cfg.IdleTimeout, 60*time.Second)
	def(&cfg.SessionTTL, 120*time.Second)
	def(&cfg.ReadTimeout, 60*time.Second)
	def(&cfg.WriteTimeout, 10*time.Second)
	if obs == nil {
		obs = nopObserver{}
	}
	s := &Server{
		svc:   svc,
		adm:   adm,
		cfg:   cfg,
		log:   log.With("component", "rpc"),
		obs:   obs,
		base:  context.Background(),
		conns: make(map[*wsConn]struct{}),
		upgrader: websocket.Upgrader{
			HandshakeTimeout: 10 * time.Second,
			ReadBufferSize:   cfg.ReadBufferSize,
			// Write buffers come from the pool only while a message is
			// written, so their size costs an idle socket nothing. 16 KiB
			// holds a hello's answer (about 11 KB): one frame, one write
			// call. With gorilla's default 4 KiB the rest went out in a
			// second write, as the listener's connection wrapper cannot
			// take writev.
			WriteBufferSize: 16 << 10,
			WriteBufferPool: &sync.Pool{},
			// The app is not a browser page: there are no cookies or
			// ambient credentials for a foreign origin to ride on.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
	s.mux = http.NewServeMux()
	for _, path := range []string{"/{$}", "/ws"} {
		s.mux.HandleFunc("GET "+path, s.serveWebSocket)
		s.mux.HandleFunc("POST "+path, s.servePost)
	}
	s.mux.HandleFunc("GET /v1/proofs/{uuid}", s.serveProof)
	return s, nil
}

type nopObserver struct{}

func (nopObserver) Call(string, int64, time.Duration) {}
func (nopObserver) Refused(string)                    {}
func (nopObserver) WebSocketClosed(string)            {}

func (s *Server) closedObserved(reason string) { s.obs.WebSocketClosed(reason) }

// Config is the configuration in use, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// ServeHTTP routes: POST / and POST /ws take one JSON-RPC request; a
// WebSocket upgrade on GET / or GET /ws opens a JSON-RPC session;
// GET /v1/proofs/{uuid} returns a request's status.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Every body, whatever the path, must arrive within ReadTimeout (see
	// httpbound), and every answer leave within WriteTimeout: handlers
	// that work before they answer move the deadline to when the answer
	// is ready (answerBy). An upgraded WebSocket sets its own.
	httpbound.Body(w, r, s.cfg.ReadTimeout)
	s.answerBy(w)
	s.mux.ServeHTTP(w, r)
}

// answerBy gives the answer about to be written WriteTimeout to leave.
func (s *Server) answerBy(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
}

// Shutdown closes every open WebSocket with "going away", refuses new
// ones, and waits until the messages being handled are done or ctx is
// done. http.Server.Shutdown does not track hijacked connections, so the
// program calls this after it. (A submit in flight completes: recording
// and enqueueing run detached from the connection.) The sockets are closed
// at once, each close frame within a second, so clients that do not read
// cannot hold the shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var closing sync.WaitGroup
	for _, c := range conns {
		closing.Go(func() {
			c.setReason(closeShutdown)
			c.close(websocket.CloseGoingAway, "server shutting down")
		})
	}
	done := make(chan struct{})
	go func() {
		closing.Wait()
		s.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rpc: websocket calls still running: %w", ctx.Err())
	}
}

// begin counts a WebSocket message in flight; false once shutting down.
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.inflight.Add(1)
	return true
}

// message is a JSON-RPC request as read off the wire. ID stays raw so the
// reply echoes it exactly (number, string or null); nil means absent (a
// notification).
type message struct {
	ID     json.RawMessage
	Method string
	Params json.RawMessage
}

// parseMessage checks that data is one JSON-RPC request. The text is
// validated once (jsonvalid, as json.Valid) and then split without
// decoding the params, which can be 10 MiB of byte arrays, and without
// building a map of the members.
func parseMessage(data []byte) (message, *jsonrpc2.Error) {
	if !jsonvalid.Valid(data) {
		var v any
		return message{}, rpcError(protocol.CodeParseError, "Parse error", describeSyntax(json.Unmarshal(data, &v)))
	}
	data = bytes.TrimSpace(data)
	switch data[0] {
	case '{':
	case '[':
		return message{}, rpcError(protocol.CodeInvalidRequest, "Invalid Request: batch requests are not supported", "")
	default:
		return message{}, rpcError(protocol.CodeInvalidRequest, "Invalid Request", "a request must be a JSON object")
	}
	var m message
	var method json.RawMessage
	err := params.Members(data, func(key []byte, v json.RawMessage) {
		switch string(key) { // a repeated key keeps its last value
		case "id":
			m.ID = v
		case "method":
			method = v
		case "params":
			m.Params = v
		}
	})
	if err != nil {
		return message{}, rpcError(protocol.CodeInvalidRequest, "Invalid Request", "a request must be a JSON object")
	}
	if !validID(m.ID) {
		return message{}, rpcError(protocol.CodeInvalidRequest, "Invalid Request", "id must be a string, a number or null")
	}
	if method == nil {
		return m, rpcError(protocol.CodeInvalidRequest, "Invalid Request", "method is required")
	}
	name, ok := params.String(method)
	if !ok {
		return m, rpcError(protocol.CodeInvalidRequest, "Invalid Request", "method must be a string")
	}
	m.Method = name
	return m, nil
}

// validID accepts an absent id, null, a string or a number.
func validID(raw json.RawMessage) bool {
	if raw == nil {
		return true
	}
	switch raw[0] {
	case 'n', '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// response is a JSON-RPC response. Result is omitted on error.
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *jsonrpc2.Error `json:"error,omitempty"`
}

var nullID = json.RawMessage("null")

func errorResponse(id json.RawMessage, e *jsonrpc2.Error) *response {
	if len(id) == 0 {
		id = nullID
	}
	return &response{JSONRPC: "2.0", ID: id, Error: e}
}

// call is one method call.
type call struct {
	method string
	params json.RawMessage
	ws     *wsConn      // nil over HTTP
	src    netip.Prefix // the client's source (admission); zero when unknown
}

// handle decodes and runs one message. It returns the response to send (nil
// for a notification) and, for openpassport_subscribe, a function to run
// once the response is written.
func (s *Server) handle(ctx context.Context, data []byte, c call) (*response, func()) {
	start := time.Now()
	m, perr := parseMessage(data)
	if perr != nil {
		s.observe("", perr.Code, start)
		return errorResponse(m.ID, perr), nil
	}
	notification := m.ID == nil

	c.method, c.params = m.Method, m.Params
	result, after, err := s.dispatch(ctx, c)
	var resp *response
	var code int64
	if err != nil {
		e, internal := toRPCError(err)
		code = e.Code
		if internal {
			s.log.ErrorContext(ctx, "call failed", "method", m.Method, "err", err)
		}
		resp = errorResponse(m.ID, e)
		after = nil
	} else {
		resp = &response{JSONRPC: "2.0", ID: m.ID, Result: result}
	}
	s.observe(m.Method, code, start)
	if notification {
		return nil, after
	}
	return resp, after
}

func (s *Server) observe(method string, code int64, start time.Time) {
	s.obs.Call(method, code, time.Since(start))
}

func describeSyntax(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	}
	return "invalid JSON"
}

// errPanic is what a client sees when a method panicked.
var errPanic = errors.New("method panicked")

// dispatch runs one method, turning a panic into an internal error.
func (s *Server) dispatch(ctx context.Context, c call) (result any, after func(), err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(ctx, "method panicked", "method", c.method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			result, after, err = nil, nil, errPanic
		}
	}()
	switch c.method {
	case protocol.MethodHealth:
		return protocol.HealthOK, nil, nil
	case protocol.MethodHello:
		if err := s.adm.AllowHello(c.src); err != nil {
			return nil, nil, err
		}
		var p protocol.HelloParams
		if err := params.Decode(c.params,
			params.Field{Name: "user_pubkey", Dst: &p.UserPubkey},
			params.Field{Name: "uuid", Dst: &p.UUID}); err != nil {
			return nil, nil, err
		}
		res, err := s.svc.Hello(ctx, c.src, p.UUID, p.UserPubkey)
		switch {
		case errors.Is(err, handshake.ErrBusy):
			s.obs.Refused(admission.ReasonSessions)
		case errors.Is(err, handshake.ErrSourceBusy):
			s.obs.Refused(admission.ReasonSourceSessions)
		case err == nil && c.ws != nil:
			c.ws.opened(res.UUID, time.Now().Add(s.cfg.SessionTTL))
		}
		return res, nil, err
	case protocol.MethodSubmit:
		var p protocol.SubmitParams
		if err := params.Decode(c.params,
			params.Field{Name: "uuid", Dst: &p.UUID},
			params.Field{Name: "nonce", Dst: &p.Nonce},
			params.Field{Name: "cipher_text", Dst: &p.CipherText},
			params.Field{Name: "auth_tag", Dst: &p.AuthTag}); err != nil {
			return nil, nil, err
		}
		id, err := s.svc.Submit(ctx, p.UUID, p.Nonce, p.CipherText, p.AuthTag)
		if c.ws != nil {
			if norm, perr := intake.ParseUUID(p.UUID); perr == nil {
				c.ws.submitted(norm)
			}
		}
		return id, nil, err
	case protocol.MethodAttestation:
		// A document is a signature: the same budget as a hello.
		if err := s.adm.AllowHello(c.src); err != nil {
			return nil, nil, err
		}
		var p protocol.AttestationParams
		if err := params.Decode(c.params,
			params.Field{Name: "user_data", Dst: &p.UserData, Optional: true},
			params.Field{Name: "nonce", Dst: &p.Nonce, Optional: true},
			params.Field{Name: "public_key", Dst: &p.PublicKey, Optional: true}); err != nil {
			return nil, nil, err
		}
		doc, err := s.svc.Attestation(ctx, attest.Request{UserData: p.UserData, Nonce: p.Nonce, PublicKey: p.PublicKey})
		return protocol.Bytes(doc), nil, err
	case protocol.MethodStatus:
		id, err := decodeUUID(c.params)
		if err != nil {
			return nil, nil, err
		}
		st, err := s.svc.Status(ctx, id)
		return st, nil, err
	case protocol.MethodCancel:
		var p protocol.CancelParams
		if err := params.Decode(c.params,
			params.Field{Name: "uuid", Dst: &p.UUID},
			params.Field{Name: "cancel_token", Dst: &p.CancelToken}); err != nil {
			return nil, nil, err
		}
		res, err := s.svc.Cancel(ctx, p.UUID, p.CancelToken)
		return res, nil, err
	case protocol.MethodSubscribe:
		return s.subscribe(ctx, c)
	}
	return nil, nil, rpcError(protocol.CodeMethodNotFound, "Method not found", fmt.Sprintf("no method %q", truncate(c.method, 64)))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func decodeUUID(raw json.RawMessage) (string, error) {
	var p protocol.UUIDParams
	err := params.Decode(raw, params.Field{Name: "uuid", Dst: &p.UUID})
	return p.UUID, err
}

// subscribe answers with the current status and, unless it is terminal,
// forwards every change as an openpassport_status_update notification
// once the answer is written.
func (s *Server) subscribe(ctx context.Context, c call) (any, func(), error) {
	if c.ws == nil {
		return nil, nil, rpcError(protocol.CodeInvalidRequest, "openpassport_subscribe needs a WebSocket connection", "")
	}
	id, err := decodeUUID(c.params)
	if err != nil {
		return nil, nil, err
	}
	if !c.ws.addSubscription(s.cfg.MaxSubscriptions) {
		return nil, nil, rpcError(protocol.CodeServerBusy,
			fmt.Sprintf("Too many subscriptions on this connection (at most %d)", s.cfg.MaxSubscriptions), "")
	}
	w, err := s.svc.Subscribe(ctx, id)
	if err != nil {
		c.ws.doneSubscription()
		return nil, nil, err
	}
	cur := w.Current()
	after := func() {
		go func() {
			defer c.ws.doneSubscription()
			err := w.Forward(c.ws.ctx, func(st protocol.Status) error {
				return c.ws.notify(protocol.NotifyStatusUpdate, st)
			})
			if err != nil && c.ws.ctx.Err() == nil {
				s.log.WarnContext(ctx, "subscription ended", "request_id", cur.UUID, "err", err)
			}
		}()
	}
	return cur, after, nil
}

// servePost answers one JSON-RPC request sent as an HTTP POST body. Every
// JSON-RPC answer, error or not, is HTTP 200; a body over the limit is 413
// and a notification 204.
func (s *Server) servePost(w http.ResponseWriter, r *http.Request) {
	// The body must arrive within ReadTimeout (ServeHTTP) and the answer
	// leave within WriteTimeout of being ready.
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	data, err := readBody(body, r.ContentLength, s.cfg.MaxBodyBytes)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.observe("", protocol.CodeInvalidRequest, time.Now())
			s.answerBy(w)
			writeJSON(w, http.StatusRequestEntityTooLarge, errorResponse(nil, s.tooLarge()))
			return
		}
		s.log.DebugContext(r.Context(), "reading body failed", "err", err)
		return
	}
	resp, _ := s.handle(r.Context(), data, call{src: s.adm.Source(r)})
	s.answerBy(w)
	if resp == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// bodyPrealloc is what a POST body's announced length reserves before any
// of it arrives: a header alone must not make the frontend hold its
// limit (10 MiB) for ReadTimeout.
const bodyPrealloc = 64 << 10

// readBody reads a POST body. When its length is known and allowed, the
// buffer is sized to it (no regrowing beyond it as io.ReadAll does), but
// grows only as bytes arrive: bodyPrealloc first, then doubling.
func readBody(r io.Reader, length, limit int64) ([]byte, error) {
	if length <= 0 || length > limit {
		return io.ReadAll(r)
	}
	want := int(length) + 1 // +1: room for the read that finds the end
	buf := make([]byte, 0, min(want, bodyPrealloc))
	for {
		if len(buf) == cap(buf) {
			// Double, up to the announced length; past it (a body longer
			// than announced), double again.
			next := min(want, 2*cap(buf))
			if next <= cap(buf) {
				next = 2 * cap(buf)
			}
			buf = append(make([]byte, 0, next), buf...)
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF): // a short body is answered as it is
			return buf, nil
		case err != nil:
			return nil, err
		}
	}
}

func (s *Server) tooLarge() *jsonrpc2.Error {
	return rpcError(protocol.CodeInvalidRequest,
		fmt.Sprintf("Request too large: the limit is %d bytes", s.cfg.MaxBodyBytes), "")
}

// serveProof answers GET /v1/proofs/{uuid} with the Status JSON, or an
// error object {"error": {"code", "message"}} with 400, 404 or 500.
func (s *Server) serveProof(w http.ResponseWriter, r *http.Request) {
	st, err := s.svc.Status(r.Context(), r.PathValue("uuid"))
	s.answerBy(w)
	if err == nil {
		writeJSON(w, http.StatusOK, st)
		return
	}
	e, internal := toRPCError(err)
	status := http.StatusBadRequest
	switch {
	case internal:
		s.log.ErrorContext(r.Context(), "status lookup failed", "err", err)
		status = http.StatusInternalServerError
	case errors.Is(err, intake.ErrNotFound):
		status = http.StatusNotFound
	}
	writeJSON(w, status, struct {
		Error *jsonrpc2.Error `json:"error"`
	}{e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, release, err := encode(v)
	if err != nil {
		data, _ = json.Marshal(errorResponse(nil, rpcError(protocol.CodeInternalError, "Internal error", "")))
		status = http.StatusInternalServerError
	} else {
		defer release() // Write copies into the response's buffer
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// A known length: net/http sends a body over 2 KB unchunked.
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

package main

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/api/protocol"
	"github.com/openpassport/prover-fleet/shared/attest"
)

// loadgenRole is the first argument that makes this program the load
// generator: it reads a loadConfig as JSON on stdin and writes a
// loadResult as JSON on stdout.
const loadgenRole = "loadgen"

// loadConfig is what the load generator is asked to do.
type loadConfig struct {
	HTTPURL   string `json:"http_url"`
	WSURL     string `json:"ws_url"`
	AttestDir string `json:"attest_dir"`
	// APIBinary is the frontend's program: a development document's PCR0
	// measures it, and the legitimate client pins that.
	APIBinary string `json:"api_binary"`
	Circuit   string `json:"circuit"`

	SingleHellos int `json:"single_hellos"` // hellos from one source
	ManyHellos   int `json:"many_hellos"`   // hellos from ManySources sources
	ManySources  int `json:"many_sources"`

	IdleConns      int `json:"idle_conns"` // idle WebSockets that answer pings
	IdleSources    int `json:"idle_sources"`
	NoPongConns    int `json:"no_pong_conns"`    // WebSockets that never read
	OneSourceConns int `json:"one_source_conns"` // WebSockets one source tries to open
	SlowReaders    int `json:"slow_readers"`     // clients that send but never read

	IdleTimeout  time.Duration `json:"idle_timeout"`
	PingInterval time.Duration `json:"ping_interval"`
	PongTimeout  time.Duration `json:"pong_timeout"`

	// LegitEvery is the legitimate client's period between requests.
	LegitEvery time.Duration `json:"legit_every"`
	Verbose    bool          `json:"verbose"`
}

// loadResult is what happened.
type loadResult struct {
	Phases []phase       `json:"phases"`
	Floods []floodResult `json:"floods"`
	Legit  legitResult   `json:"legit"`
	Idle   socketResult  `json:"idle_websockets"`
	NoPong socketResult  `json:"no_pong_websockets"`
	One    oneSource     `json:"one_source_websockets"`
	Slow   slowResult    `json:"slow_readers"`
}

type phase struct {
	Name  string    `json:"name"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// floodResult is one hello flood's outcome, per source.
type floodResult struct {
	Name    string         `json:"name"`
	Sources int            `json:"sources"`
	Sent    int            `json:"sent"`
	Served  int            `json:"served"`
	Refused map[string]int `json:"refused"` // by message
	Errors  int            `json:"errors"`  // no JSON-RPC answer
	// MaxServedPerSource is the most hellos served to one source.
	MaxServedPerSource int           `json:"max_served_per_source"`
	Seconds            float64       `json:"seconds"`
	PerSource          []sourceCount `json:"per_source,omitempty"` // the first sources, for the report
}

type sourceCount struct {
	Source  string `json:"source"`
	Served  int    `json:"served"`
	Refused int    `json:"refused"`
}

// legitResult is the legitimate client's record.
type legitResult struct {
	Attempts  int       `json:"attempts"`
	OK        int       `json:"ok"`
	Failures  []string  `json:"failures,omitempty"`
	LatencyMS []float64 `json:"latency_ms"` // dial → submit answered, each OK attempt
}

// socketResult is a group of WebSockets held open by the load generator.
type socketResult struct {
	Opened int `json:"opened"`
	// Refused are dial attempts answered with something else than 101.
	Refused int `json:"refused"`
	// ClosedByServer is how many the frontend closed; StillOpen how many
	// it had not when the group gave up waiting.
	ClosedByServer int            `json:"closed_by_server"`
	StillOpen      int            `json:"still_open"`
	CloseCodes     map[string]int `json:"close_codes"`
	// MaxHeldS is the longest a socket stayed open after its last
	// message; DeadlineS what the frontend's settings allow.
	MaxHeldS  float64 `json:"max_held_s"`
	DeadlineS float64 `json:"deadline_s"`
}

type oneSource struct {
	Attempted int `json:"attempted"`
	Accepted  int `json:"accepted"`
	Refused   int `json:"refused"`
	MaxOpen   int `json:"max_open"`
}

type slowResult struct {
	Clients      int     `json:"clients"`
	Dropped      int     `json:"dropped"`
	MaxRequests  int     `json:"max_requests_sent"`
	MaxSeconds   float64 `json:"max_seconds_to_drop"`
	NotDropped   int     `json:"not_dropped"`
	WriteTimeout float64 `json:"write_timeout_s"`
}

func runLoadgen(in io.Reader, out, errw io.Writer) int {
	var cfg loadConfig
	if err := json.NewDecoder(in).Decode(&cfg); err != nil {
		fmt.Fprintln(errw, "loadgen: config:", err)
		return 2
	}
	res, err := generate(context.Background(), cfg, errw)
	if err != nil {
		fmt.Fprintln(errw, "loadgen:", err)
		return 1
	}
	if err := json.NewEncoder(out).Encode(res); err != nil {
		fmt.Fprintln(errw, "loadgen:", err)
		return 1
	}
	return 0
}

// Source addresses: every flood and group has its own range of 127/8.
func addr(group, i int) net.IP { return net.IPv4(127, byte(group), byte(i>>8), byte(i&0xff)+1) }

const (
	groupSingle = 2
	groupMany   = 3
	groupIdle   = 4
	groupNoPong = 5
	groupOne    = 6
	groupSlow   = 7
)

func generate(ctx context.Context, cfg loadConfig, logw io.Writer) (*loadResult, error) {
	logf := func(format string, args ...any) {
		if cfg.Verbose {
			fmt.Fprintf(logw, "loadgen: "+format+"\n", args...)
		}
	}
	res := &loadResult{}
	mark := func(name string, f func() error) error {
		p := phase{Name: name, Start: time.Now()}
		logf("%s", name)
		err := f()
		p.End = time.Now()
		res.Phases = append(res.Phases, p)
		return err
	}

	legitCtx, stopLegit := context.WithCancel(ctx)
	legitDone := make(chan legitResult, 1)
	go func() { legitDone <- legit(legitCtx, cfg) }()
	// Let the legitimate client start before the floods.
	time.Sleep(2 * cfg.LegitEvery)

	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		stopLegit()
		return nil, err
	}
	pub := key.PublicKey().Bytes()
	err = mark("hello flood, one source", func() error {
		r, err := flood(ctx, cfg.HTTPURL, pub, "one source", groupSingle, 1, cfg.SingleHellos, 32)
		res.Floods = append(res.Floods, r)
		return err
	})
	if err == nil {
		err = mark("hello flood, many sources", func() error {
			r, err := flood(ctx, cfg.HTTPURL, pub, "many sources", groupMany, cfg.ManySources, cfg.ManyHellos, 64)
			res.Floods = append(res.Floods, r)
			return err
		})
	}
	if err == nil {
		err = mark("idle, silent, crowded and slow WebSockets", func() error {
			var wg sync.WaitGroup
			wg.Go(func() { res.Idle = idleSockets(ctx, cfg, groupIdle, cfg.IdleConns, cfg.IdleSources, true) })
			wg.Go(func() {
				res.NoPong = idleSockets(ctx, cfg, groupNoPong, cfg.NoPongConns, max(1, cfg.NoPongConns/50), false)
			})
			wg.Go(func() { res.One = crowd(ctx, cfg) })
			wg.Go(func() { res.Slow = slowReaders(ctx, cfg) })
			wg.Wait()
			return nil
		})
	}
	stopLegit()
	res.Legit = <-legitDone
	return res, err
}

// helloBody is a hello with a fixed key and a fresh uuid: the flood's
// clients spend nothing on keys.
func helloBody(pub []byte, id string) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": protocol.MethodHello,
		"params": map[string]any{"user_pubkey": protocol.Bytes(pub), "uuid": id}})
	return b
}

type answer struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// boundClient is an HTTP client whose connections come from ip.
func boundClient(ip net.IP, conns int) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: d.DialContext, MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
	}}
}

// flood sends n hellos over HTTP POST from sources sources, with workers
// at once, and counts what each source got.
func flood(ctx context.Context, url string, pub []byte, name string, group, sources, n, workers int) (floodResult, error) {
	r := floodResult{Name: name, Sources: sources, Refused: map[string]int{}}
	clients := make([]*http.Client, sources)
	perConn := max(1, workers/sources)
	for i := range clients {
		clients[i] = boundClient(addr(group, i), perConn)
	}
	served := make([]atomic.Int64, sources)
	refused := make([]atomic.Int64, sources)
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				src := i % sources
				resp, err := clients[src].Post(url, "application/json", bytes.NewReader(helloBody(pub, uuid.NewString())))
				var a answer
				if err == nil {
					err = json.NewDecoder(resp.Body).Decode(&a)
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				r.Sent++
				switch {
				case err != nil:
					r.Errors++
				case a.Error != nil:
					r.Refused[fmt.Sprintf("%d %s", a.Error.Code, a.Error.Message)]++
					refused[src].Add(1)
				default:
					r.Served++
					served[src].Add(1)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.Seconds = time.Since(start).Seconds()
	for i := range sources {
		s := int(served[i].Load())
		r.MaxServedPerSource = max(r.MaxServedPerSource, s)
		if i < 5 {
			r.PerSource = append(r.PerSource, sourceCount{Source: addr(group, i).String(), Served: s, Refused: int(refused[i].Load())})
		}
	}
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	return r, ctx.Err()
}

// legit is the legitimate client: every LegitEvery, a fresh connection
// (WebSocket, and every third time HTTP POST) from its own address
// (127.0.0.1), the whole handshake with the attestation checked, a submit.
func legit(ctx context.Context, cfg loadConfig) legitResult {
	var r legitResult
	dev, err := attest.NewDev(attest.DevConfig{Dir: cfg.AttestDir, ModuleID: "prover-api-abuse"})
	if err != nil {
		r.Failures = append(r.Failures, err.Error())
		return r
	}
	bin, err := os.ReadFile(cfg.APIBinary)
	if err != nil {
		r.Failures = append(r.Failures, err.Error())
		return r
	}
	sum := sha512.Sum384(bin)
	verifier, err := attest.NewVerifier(attest.VerifierConfig{
		Roots: []*x509.Certificate{dev.RootCert()}, AllowedPCR0: [][]byte{attest.DevPCRs(sum[:])[0]}, MaxAge: time.Minute,
	})
	if err != nil {
		r.Failures = append(r.Failures, err.Error())
		return r
	}
	t := time.NewTicker(cfg.LegitEvery)
	defer t.Stop()
	for i := 0; ; i++ {
		url := cfg.WSURL
		if i%3 == 2 {
			url = cfg.HTTPURL
		}
		r.Attempts++
		start := time.Now()
		err := func() error {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			c, err := client.Dial(cctx, url, client.Options{Verifier: verifier})
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.SubmitReceipt(cctx, client.Request{Type: "register", Circuit: cfg.Circuit,
				Inputs: json.RawMessage(`{"a":"1"}`), EndpointType: "celo"}, nil)
			return err
		}()
		if err != nil {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %v", time.Now().Format(time.TimeOnly), err))
		} else {
			r.OK++
			r.LatencyMS = append(r.LatencyMS, float64(time.Since(start).Microseconds())/1000)
		}
		select {
		case <-ctx.Done():
			return r
		case <-t.C:
		}
	}
}

// wsDialer dials from ip with small buffers (the load generator holds
// thousands of sockets); with tinyWindow the socket's receive buffer is
// 4 KiB, so that a client that does not read stops the server's writes at
// once.
func wsDialer(ip net.IP, tinyWindow bool) *websocket.Dialer {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	if tinyWindow {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			return errors.Join(err, serr)
		}
	}
	return &websocket.Dialer{NetDialContext: d.DialContext, HandshakeTimeout: 10 * time.Second, ReadBufferSize: 256, WriteBufferSize: 256}
}

// idleSockets opens n WebSockets from sources sources and sends nothing on
// them. With read, each is read (the client library answers pings) until
// the frontend closes it; without, nobody reads. It waits until every
// socket has been closed by the frontend or the deadline has long passed.
func idleSockets(ctx context.Context, cfg loadConfig, group, n, sources int, read bool) socketResult {
	r := socketResult{CloseCodes: map[string]int{}}
	if n == 0 {
		return r
	}
	deadline := cfg.IdleTimeout
	if !read {
		deadline = cfg.PingInterval + cfg.PongTimeout
	}
	r.DeadlineS = deadline.Seconds()
	var mu sync.Mutex
	var wg sync.WaitGroup
	conns := make([]*websocket.Conn, 0, n)
	var next atomic.Int64
	var opens sync.WaitGroup
	for range 32 {
		opens.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, resp, err := wsDialer(addr(group, i%sources), false).DialContext(ctx, cfg.WSURL, nil)
				if resp != nil && resp.Body != nil {
					resp.Body.Close()
				}
				mu.Lock()
				if err != nil {
					r.Refused++
					mu.Unlock()
					continue
				}
				r.Opened++
				conns = append(conns, c)
				mu.Unlock()
				if read {
					opened := time.Now()
					wg.Go(func() {
						code := readUntilClosed(c, deadline+time.Minute)
						held := time.Since(opened).Seconds()
						mu.Lock()
						r.CloseCodes[code]++
						if code != "still open" {
							r.ClosedByServer++
							r.MaxHeldS = max(r.MaxHeldS, held)
						} else {
							r.StillOpen++
						}
						mu.Unlock()
					})
				}
			}
		})
	}
	opens.Wait()
	if !read {
		// Wait past the deadline, then see whether the frontend has closed
		// them: a read returns at once on a closed socket.
		time.Sleep(deadline + 5*time.Second)
		for _, c := range conns {
			wg.Go(func() {
				code := readUntilClosed(c, 3*time.Second)
				mu.Lock()
				r.CloseCodes[code]++
				if code != "still open" {
					r.ClosedByServer++
				} else {
					r.StillOpen++
				}
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	return r
}

// readUntilClosed reads c until the frontend closes it and says how: the
// close frame's code and text, "reset" for a connection that ended
// without one, or "still open" if nothing happened within limit.
func readUntilClosed(c *websocket.Conn, limit time.Duration) string {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		var ne net.Error
		switch {
		case errors.As(err, &ce):
			return fmt.Sprintf("%d %s", ce.Code, ce.Text)
		case errors.As(err, &ne) && ne.Timeout():
			return "still open"
		}
		return "reset"
	}
}

// crowd is one source trying to open far more WebSockets than its share,
// 32 at a time; each accepted one is read (so it answers pings) and held
// until the group is done. MaxOpen is the most open at once.
func crowd(ctx context.Context, cfg loadConfig) oneSource {
	var r oneSource
	var mu sync.Mutex
	open := 0
	var held []*websocket.Conn
	var readers, dials sync.WaitGroup
	var next atomic.Int64
	d := wsDialer(addr(groupOne, 0), false)
	for range 32 {
		dials.Go(func() {
			for int(next.Add(1)) <= cfg.OneSourceConns {
				c, resp, err := d.DialContext(ctx, cfg.WSURL, nil)
				if resp != nil && resp.Body != nil {
					resp.Body.Close()
				}
				mu.Lock()
				r.Attempted++
				if err != nil {
					r.Refused++
					mu.Unlock()
					continue
				}
				r.Accepted++
				open++
				r.MaxOpen = max(r.MaxOpen, open)
				held = append(held, c)
				mu.Unlock()
				readers.Go(func() {
					readUntilClosed(c, 5*time.Minute)
					mu.Lock()
					open--
					mu.Unlock()
				})
			}
		})
	}
	dials.Wait()
	mu.Lock()
	for _, c := range held {
		c.Close()
	}
	mu.Unlock()
	readers.Wait()
	return r
}

// slowReaders each open a WebSocket with a 4 KiB receive window and send
// health calls without reading an answer, until the frontend drops them.
func slowReaders(ctx context.Context, cfg loadConfig) slowResult {
	r := slowResult{Clients: cfg.SlowReaders}
	var mu sync.Mutex
	var wg sync.WaitGroup
	req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": protocol.MethodHealth})
	for i := range cfg.SlowReaders {
		wg.Go(func() {
			c, resp, err := wsDialer(addr(groupSlow, i), true).DialContext(ctx, cfg.WSURL, nil)
			if resp != nil && resp.Body != nil {
				resp.Body.Close()
			}
			if err != nil {
				mu.Lock()
				r.NotDropped++
				mu.Unlock()
				return
			}
			defer c.Close()
			start := time.Now()
			sent := 0
			// The frontend reads the requests until a write of its answers
			// blocks for its write timeout; then it closes, and a write
			// here fails. Give up after two minutes.
			var werr error
			for ; sent < 1_000_000 && time.Since(start) < 2*time.Minute; sent++ {
				_ = c.SetWriteDeadline(time.Now().Add(2 * time.Minute))
				if werr = c.WriteMessage(websocket.TextMessage, req); werr != nil {
					break
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if werr == nil {
				r.NotDropped++
				return
			}
			r.Dropped++
			r.MaxRequests = max(r.MaxRequests, sent)
			r.MaxSeconds = max(r.MaxSeconds, time.Since(start).Seconds())
		})
	}
	wg.Wait()
	return r
}

// quantile is the nearest-rank quantile of xs (sorted here).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

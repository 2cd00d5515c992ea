package attest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultLauncherSocket is where the Confidential Space launcher serves its
// token API inside the workload container.
const DefaultLauncherSocket = "/run/container_launcher/teeserver.sock"

// DefaultLauncherTimeout bounds one token request when
// GCPConfig.Timeout is zero. The launcher asks Google's attestation
// service, a network round trip.
const DefaultLauncherTimeout = 20 * time.Second

// GCPConfig configures a GCP attester.
type GCPConfig struct {
	// Socket is the launcher's unix socket (empty: DefaultLauncherSocket).
	Socket string
	// Audience is the aud asked for (empty: DefaultAudience).
	Audience string
	// Timeout bounds one token request (0: DefaultLauncherTimeout).
	Timeout time.Duration
}

// GCP is the production Attester of the Confidential Space format: it asks
// the launcher for a PKI token (POST /v1/token on its unix socket, body
// {"audience", "token_type": "PKI", "nonces"}); Google's attestation
// service signs it after checking the VM's measurements, and Attest
// returns its bytes unchanged. The token's chain leads to Google's
// Confidential Space root ([GCPConfidentialSpaceRootPEM]). Safe for
// concurrent use.
type GCP struct {
	socket   string
	audience string
	timeout  time.Duration
	client   *http.Client
}

// NewGCP checks cfg and that the launcher's socket exists. Outside a
// Confidential Space VM it does not, and NewGCP fails.
func NewGCP(cfg GCPConfig) (*GCP, error) {
	if cfg.Timeout < 0 {
		return nil, configErr("GCPConfig.Timeout must not be negative")
	}
	g := &GCP{socket: cfg.Socket, audience: cfg.Audience, timeout: cfg.Timeout}
	if g.socket == "" {
		g.socket = DefaultLauncherSocket
	}
	if g.audience == "" {
		g.audience = DefaultAudience
	}
	if g.timeout == 0 {
		g.timeout = DefaultLauncherTimeout
	}
	st, err := os.Stat(g.socket)
	if err != nil {
		return nil, fmt.Errorf("attest: Confidential Space launcher socket (is this running in a Confidential Space VM?): %w", err)
	}
	if st.Mode().Type() != os.ModeSocket {
		return nil, fmt.Errorf("attest: Confidential Space launcher socket %s is not a socket", g.socket)
	}
	var d net.Dialer
	g.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", g.socket)
		},
		MaxIdleConns:    4,
		IdleConnTimeout: time.Minute,
	}}
	return g, nil
}

// Format is FormatGCP.
func (g *GCP) Format() Format { return FormatGCP }

// tokenRequest is the launcher's TokenOptions; it refuses unknown fields.
type tokenRequest struct {
	Audience  string   `json:"audience"`
	TokenType string   `json:"token_type"`
	Nonces    []string `json:"nonces"`
}

// Attest asks the launcher for a token binding req (see GCPNonces), within
// the timeout. Errors from the launcher wrap ErrLauncher. A token whose
// header the app cannot decode is refused too (ErrTokenEncoding): sending
// it would only fail on the phone.
func (g *GCP) Attest(ctx context.Context, req Request) ([]byte, error) {
	nonces, err := GCPNonces(req)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(tokenRequest{Audience: g.audience, TokenType: TokenTypePKI, Nonces: nonces})
	if err != nil {
		return nil, fmt.Errorf("attest: token request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://localhost/v1/token", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("attest: token request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("%w: POST /v1/token on %s: %w", ErrLauncher, g.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxTokenLen+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read answer: %w", ErrLauncher, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: HTTP %d: %s", ErrLauncher, resp.StatusCode, snippet(data))
	}
	if len(data) > MaxTokenLen {
		return nil, fmt.Errorf("%w: answer over %d bytes", ErrLauncher, MaxTokenLen)
	}
	tok := bytes.TrimSpace(data)
	parts := strings.Split(string(tok), ".")
	if len(parts) != 3 || !utf8.Valid(tok) {
		return nil, fmt.Errorf("%w: answer is not a JWT: %s", ErrLauncher, snippet(tok))
	}
	if err := appDecodableHeader(parts[0]); err != nil {
		return nil, err
	}
	return tok, nil
}

// snippet is a short printable excerpt of a launcher answer for errors.
func snippet(b []byte) string {
	const limit = 200
	s := strings.ToValidUTF8(string(b), "?")
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// Close releases idle connections to the launcher.
func (g *GCP) Close() error {
	g.client.CloseIdleConnections()
	return nil
}

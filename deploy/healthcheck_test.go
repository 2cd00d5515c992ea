package deploy

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// deploy/docker/healthcheck.sh is what the images' HEALTHCHECK and the
// compose healthchecks run: it must pass on 200 and fail otherwise.
func TestHealthcheckScript(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash not found: the images run this script with bash: %v", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz", "/healthz":
			_, _ = w.Write([]byte("ok\n"))
		default:
			http.Error(w, "nats: not connected", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, closedPort, _ := net.SplitHostPort(closed.Addr().String())
	closed.Close()

	script := filepath.Join(root, "deploy/docker/healthcheck.sh")
	tests := []struct {
		name    string
		args    []string
		wantOK  bool
		wantErr string
	}{
		{name: "ready", args: []string{"/readyz", port}, wantOK: true},
		{name: "alive", args: []string{"/healthz", port}, wantOK: true},
		{name: "not ready", args: []string{"/other", port}, wantErr: "503"},
		{name: "nothing listening", args: []string{"/readyz", closedPort}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(bash, append([]string{script}, tt.args...)...).CombinedOutput()
			if tt.wantOK {
				if err != nil {
					t.Fatalf("healthcheck %v failed: %v\n%s", tt.args, err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("healthcheck %v passed, want a failure", tt.args)
			}
			if !strings.Contains(string(out), tt.wantErr) {
				t.Fatalf("healthcheck %v output %q, want it to contain %q", tt.args, out, tt.wantErr)
			}
		})
	}
}

package frontend

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/openpassport/prover-fleet/shared/attest"
)

func TestDecimalListLen(t *testing.T) {
	for _, b := range [][]byte{nil, {0}, {9, 10, 99, 100, 255}, []byte("a request of some length")} {
		ints := make([]int, len(b))
		for i, v := range b {
			ints[i] = int(v)
		}
		j, _ := json.Marshal(ints)
		if got, want := decimalListLen(b), len(j)-2; got != want {
			t.Errorf("decimalListLen(%v) = %d, want %d", b, got, want)
		}
	}
}

// startBare serves on a loopback port until the test ends.
func startBare(t *testing.T) string {
	t.Helper()
	dev, err := attest.NewDev(attest.DevConfig{Dir: t.TempDir(), ModuleID: "bench-test"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeBare(ctx, ln, dev) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeBare = %v after its context ended, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ServeBare did not return after its context ended")
		}
	})
	return ln.Addr().String()
}

func TestBarePairs(t *testing.T) {
	addr := startBare(t)
	plain, err := requestPlaintext("disclose", "disclose_demo", []byte(`{"x":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dialBare(t.Context(), addr, plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		if err := c.pair(t.Context()); err != nil {
			t.Fatalf("pair %d: %v", i, err)
		}
	}
	// The messages have the JSON sizes: the submit's sealed request as
	// three decimal lists is several times the plaintext.
	if c.submitSize < 2*len(plain) || c.helloSize < 65*2 {
		t.Errorf("submit padded to %d bytes for a %d-byte request, hello to %d", c.submitSize, len(plain), c.helloSize)
	}
}

// A submit the session's key did not seal is refused, so a pair's success
// says the server decrypted the request.
func TestBareRefusesForeignSubmit(t *testing.T) {
	addr := startBare(t)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := newBareConn(conn)
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c.start()
	c.out = append(c.out, k.PublicKey().Bytes()...)
	if err := c.finish(0); err != nil {
		t.Fatal(err)
	}
	if ans, err := c.read(); err != nil || len(ans) < 65+4 {
		t.Fatalf("hello answer: %d bytes, %v", len(ans), err)
	}
	sealed := make([]byte, 64) // not sealed under the session's key
	c.start()
	c.out = append(c.out, make([]byte, 12)...)
	c.out = binary.BigEndian.AppendUint32(c.out, uint32(len(sealed)))
	c.out = append(c.out, sealed...)
	if err := c.finish(0); err != nil {
		t.Fatal(err)
	}
	ans, err := c.read()
	if err != nil {
		t.Fatal(err)
	}
	if len(ans) == 0 || ans[0] != 1 || !strings.Contains(string(ans[1:]), "authentication failed") {
		t.Fatalf("answer to a foreign submit = %q, want a refusal", ans)
	}
}

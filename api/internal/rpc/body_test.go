package rpc

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadBody(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("0123456789"), 30_000) // 300 KB, past bodyPrealloc
	tests := []struct {
		name    string
		body    []byte
		length  int64
		maxCap  int // the buffer's capacity at most
		wantLen int
	}{
		{"small, announced", []byte(`{"a":1}`), 7, 8, 7},
		{"large, announced", big, int64(len(big)), len(big) + 1 + 8<<10, len(big)}, // a large allocation is rounded up to pages
		{"unknown length", big, -1, 1 << 30, len(big)},
		// A header that claims 10 MiB and a body that brings 3 bytes:
		// nothing near the claim is reserved.
		{"claims far more than it sends", []byte("abc"), 10 << 20, bodyPrealloc, 3},
		// A body longer than announced is read whole (net/http stops at
		// the announced length before this is reached).
		{"longer than announced", big, 1000, 1 << 30, len(big)},
	}
	for _, tt := range tests {
		// One byte per Read, as a slow client sends it.
		got, err := readBody(iotest.OneByteReader(bytes.NewReader(tt.body)), tt.length, 10<<20)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if len(got) != tt.wantLen || !bytes.Equal(got, tt.body[:tt.wantLen]) {
			t.Errorf("%s: read %d bytes, want %d", tt.name, len(got), tt.wantLen)
		}
		if cap(got) > tt.maxCap {
			t.Errorf("%s: buffer of %d bytes, want at most %d", tt.name, cap(got), tt.maxCap)
		}
	}

	// A connection that fails mid-body is an error; one that ends short
	// (net/http's io.ErrUnexpectedEOF) is answered with what came.
	failing := io.MultiReader(strings.NewReader("ab"), iotest.ErrReader(errors.New("reset")))
	if _, err := readBody(failing, 100, 10<<20); err == nil || err.Error() != "reset" {
		t.Errorf("failing body: err = %v, want reset", err)
	}
	short := io.MultiReader(strings.NewReader("ab"), iotest.ErrReader(io.ErrUnexpectedEOF))
	if got, err := readBody(short, 100, 10<<20); err != nil || string(got) != "ab" {
		t.Errorf("short body: %q, %v; want \"ab\", nil", got, err)
	}
}

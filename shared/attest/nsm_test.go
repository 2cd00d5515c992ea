package attest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hf/nsm"
)

// The NSM exists only inside a Nitro enclave. These tests cover what can
// run anywhere: a missing device, and the real request path up to the
// ioctl against a file that is not the NSM.

func TestNSMMissingDevice(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nsm")
	n, err := NewNSM(NSMConfig{Device: path})
	if err == nil || n != nil {
		t.Fatalf("NewNSM on a missing device = %v, %v", n, err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v should wrap fs.ErrNotExist", err)
	}
	for _, want := range []string{path, "Nitro enclave"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q should mention %q", err, want)
		}
	}
}

func TestNSMDefaultDevice(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(DefaultNSMDevice); err == nil {
		t.Skip("running inside an enclave: /dev/nsm exists")
	}
	_, err := NewNSM(NSMConfig{})
	if err == nil || !strings.Contains(err.Error(), DefaultNSMDevice) {
		t.Fatalf("NewNSM with no device: %v, want an error naming %s", err, DefaultNSMDevice)
	}
}

// TestNSMNotAnNSM opens a regular file as the device: the request is
// encoded and sent, and the kernel refuses the ioctl.
func TestNSMNotAnNSM(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "not-nsm")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := NewNSM(NSMConfig{Device: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })

	_, err = n.Attest(t.Context(), testRequest())
	var ioctl *nsm.ErrorIoctlFailed
	if !errors.As(err, &ioctl) || ioctl.Errno != syscall.ENOTTY {
		t.Fatalf("Attest on a regular file: %v, want an ioctl ENOTTY error", err)
	}

	if _, err := n.Attest(t.Context(), Request{UserData: fill(MaxUserDataLen+1, 1)}); !errors.Is(err, ErrInputTooLarge) {
		t.Errorf("oversized request: %v, want ErrInputTooLarge", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := n.Attest(ctx, testRequest()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := n.Attest(t.Context(), testRequest()); !errors.Is(err, ErrClosed) {
		t.Errorf("Attest after Close: %v, want ErrClosed", err)
	}
}

// Both implementations satisfy the interface callers hold.
var (
	_ Attester = (*NSM)(nil)
	_ Attester = (*Dev)(nil)
)

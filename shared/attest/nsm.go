package attest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/hf/nsm"
	"github.com/hf/nsm/request"
)

// DefaultNSMDevice is where the Nitro Security Module appears inside an enclave.
const DefaultNSMDevice = "/dev/nsm"

// NSMConfig configures an NSM attester.
type NSMConfig struct {
	// Device is the NSM device file (empty: DefaultNSMDevice).
	Device string
}

// NSM is the production Attester: the Nitro Security Module writes and signs
// the document, and Attest returns its bytes unchanged. One session is
// opened by NewNSM and shared; calls are serialised (the driver handles one
// request at a time anyway). Safe for concurrent use.
type NSM struct {
	mu   sync.Mutex
	sess *nsm.Session // nil once closed
}

// NSMError is an error code the NSM returned instead of a document.
type NSMError struct {
	Code string // e.g. "InvalidArgument", "InputTooLarge"
}

func (e *NSMError) Error() string { return "attest: NSM returned error " + e.Code }

// NewNSM opens a session with the NSM device. Outside a Nitro enclave the
// device does not exist and NewNSM fails (errors.Is(err, fs.ErrNotExist)).
func NewNSM(cfg NSMConfig) (*NSM, error) {
	device := cfg.Device
	if device == "" {
		device = DefaultNSMDevice
	}
	sess, err := nsm.OpenSession(nsm.Options{
		Open:    func() (nsm.FileDescriptor, error) { return os.Open(device) },
		Syscall: syscall.Syscall,
	})
	if err != nil {
		return nil, fmt.Errorf("attest: open Nitro Security Module %s (is this running inside a Nitro enclave?): %w", device, err)
	}
	return &NSM{sess: sess}, nil
}

// Attest asks the NSM for a document over req. The ioctl cannot be
// interrupted, so ctx is only checked before it starts.
func (n *NSM) Attest(ctx context.Context, req Request) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := req.validate(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sess == nil {
		return nil, ErrClosed
	}
	res, err := n.sess.Send(&request.Attestation{UserData: req.UserData, Nonce: req.Nonce, PublicKey: req.PublicKey})
	switch {
	case err != nil:
		return nil, fmt.Errorf("attest: NSM attestation request: %w", err)
	case res.Error != "":
		return nil, &NSMError{Code: string(res.Error)}
	case res.Attestation == nil || len(res.Attestation.Document) == 0:
		return nil, errors.New("attest: NSM answered without a document")
	}
	return res.Attestation.Document, nil
}

// Format is FormatNitro.
func (n *NSM) Format() Format { return FormatNitro }

// Close ends the session. Attest afterwards returns ErrClosed.
func (n *NSM) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sess == nil {
		return nil
	}
	err := n.sess.Close()
	n.sess = nil
	return err
}

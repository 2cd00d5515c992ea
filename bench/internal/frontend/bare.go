package frontend

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/openpassport/prover-fleet/bench/internal/gcm"
	"github.com/openpassport/prover-fleet/shared/attest"
)

// The bare server is the floor under any Go frontend of the app's
// protocol on this machine: a process that does, per pair, the server's
// cryptography (the same as the baseline's) and moves the same number of
// bytes through the same kind of socket, and nothing else — no WebSocket
// or HTTP framing, no JSON, no session table, no deadlines, no Postgres,
// no queue. Measured like prover-api (its own process, on prover-api's
// CPU, the same load generator), its ratio to the server crypto says how
// much of the target Go's runtime and the loopback TCP path leave for
// everything a real frontend does.
//
// Its wire: each message is a 4-byte big-endian length and a body, sized
// to the app's JSON message it stands for (byte strings as decimal
// lists, as the app sends them):
//
//	hello:         client key (65 bytes), padding
//	hello answer:  server key (65 bytes), document length (4), document, padding
//	submit:        nonce (12), sealed length (4), sealed request, padding
//	submit answer: 0 and padding, or 1 and an error's text
//
// The server keeps the shared key of the connection's last hello (one
// session per connection, as the load generator's clients use them).

// JSON sizes of the app's messages less their byte strings (a 36-character
// uuid included), from PROTOCOL.md's shapes.
var (
	bareHelloJSON        = len(`{"jsonrpc":"2.0","method":"openpassport_hello","id":1,"params":{"user_pubkey":[],"uuid":"00000000-0000-0000-0000-000000000000"}}`)
	bareHelloAnswerJSON  = len(`{"jsonrpc":"2.0","id":1,"result":{"uuid":"00000000-0000-0000-0000-000000000000","attestation":[]}}`)
	bareSubmitJSON       = len(`{"jsonrpc":"2.0","method":"openpassport_submit_request","id":2,"params":{"uuid":"00000000-0000-0000-0000-000000000000","nonce":[],"cipher_text":[],"auth_tag":[]}}`)
	bareSubmitAnswerJSON = len(`{"jsonrpc":"2.0","id":2,"result":"00000000-0000-0000-0000-000000000000"}`)
)

// decimalListLen is the length of b written as a JSON list of decimal
// byte values, brackets excluded.
func decimalListLen(b []byte) int {
	n := 0
	for _, v := range b {
		switch {
		case v >= 100:
			n += 4
		case v >= 10:
			n += 3
		default:
			n += 2
		}
	}
	return max(0, n-1)
}

// maxBareMessage bounds what either end reads.
const maxBareMessage = 16 << 20

// bareConn reads and writes one end's length-prefixed messages, reusing
// its buffers.
type bareConn struct {
	conn net.Conn
	r    *bufio.Reader
	in   []byte
	out  []byte
}

func newBareConn(c net.Conn) *bareConn {
	return &bareConn{conn: c, r: bufio.NewReaderSize(c, 16<<10)}
}

func (c *bareConn) read() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxBareMessage {
		return nil, fmt.Errorf("bare: a message of %d bytes", n)
	}
	if cap(c.in) < int(n) {
		c.in = make([]byte, n)
	}
	c.in = c.in[:n]
	_, err := io.ReadFull(c.r, c.in)
	return c.in, err
}

// start begins a message in out, the length left to finish.
func (c *bareConn) start() {
	c.out = append(c.out[:0], 0, 0, 0, 0)
}

// finish pads the message to size bytes of body and writes it.
func (c *bareConn) finish(size int) error {
	if pad := size - (len(c.out) - 4); pad > 0 {
		c.out = append(c.out, make([]byte, pad)...)
	}
	binary.BigEndian.PutUint32(c.out, uint32(len(c.out)-4))
	_, err := c.conn.Write(c.out)
	return err
}

// ServeBare answers bare clients on ln until ctx ends.
func ServeBare(ctx context.Context, ln net.Listener, attester attest.Attester) error {
	// The document's JSON size per byte, from one document: documents
	// differ by a few bytes, so each answer is padded by this factor
	// rather than by counting its digits.
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	pub := k.PublicKey().Bytes()
	doc, err := attester.Attest(ctx, attest.Request{UserData: pub, PublicKey: pub})
	if err != nil {
		return fmt.Errorf("bare: attest: %w", err)
	}
	perByte := float64(decimalListLen(doc)) / float64(len(doc))

	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			_ = serveBareConn(ctx, newBareConn(c), attester, perByte)
		})
	}
}

func serveBareConn(ctx context.Context, c *bareConn, attester attest.Attester, docPerByte float64) error {
	var shared []byte
	for {
		msg, err := c.read()
		if err != nil {
			return err
		}
		c.start()
		switch {
		case len(msg) >= 65 && shared == nil: // hello
			ckey, err := ecdh.P256().NewPublicKey(msg[:65])
			if err != nil {
				return err
			}
			spriv, err := ecdh.P256().GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			if shared, err = spriv.ECDH(ckey); err != nil {
				return err
			}
			spub := spriv.PublicKey().Bytes()
			doc, err := attester.Attest(ctx, attest.Request{UserData: msg[:65], PublicKey: spub})
			if err != nil {
				return err
			}
			c.out = append(c.out, spub...)
			c.out = binary.BigEndian.AppendUint32(c.out, uint32(len(doc)))
			c.out = append(c.out, doc...)
			if err := c.finish(bareHelloAnswerJSON + int(docPerByte*float64(len(doc)))); err != nil {
				return err
			}
		case len(msg) >= 16 && shared != nil: // submit
			n := int(binary.BigEndian.Uint32(msg[12:16]))
			if n > len(msg)-16 {
				return errors.New("bare: a submit shorter than its sealed request")
			}
			err := gcm.Open(shared, msg[:12], msg[16:16+n])
			shared = nil
			size := bareSubmitAnswerJSON
			if err != nil {
				c.out = append(c.out, 1)
				c.out = append(c.out, err.Error()...)
				size = 0
			} else {
				c.out = append(c.out, 0)
			}
			if err := c.finish(size); err != nil {
				return err
			}
		default:
			return errors.New("bare: a message out of order")
		}
	}
}

// bareClient is one load-generator connection to a bare server.
type bareClient struct {
	c          *bareConn
	plaintext  []byte
	helloSize  int
	submitSize int
}

func dialBare(ctx context.Context, addr string, plaintext []byte) (*bareClient, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// The sealed request's JSON size, from one sealing under a throwaway
	// key: every request seals the same plaintext, so only its bytes
	// differ.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		conn.Close()
		return nil, err
	}
	nonce, sealed, err := gcm.Seal(key, plaintext)
	if err != nil {
		conn.Close()
		return nil, err
	}
	body, tag := sealed[:len(sealed)-16], sealed[len(sealed)-16:]
	var pub [65]byte
	pub[0] = 4
	for i := 1; i < len(pub); i++ {
		pub[i] = 200 // three digits, as most of a random key's bytes are
	}
	return &bareClient{
		c: newBareConn(conn), plaintext: plaintext,
		helloSize:  bareHelloJSON + decimalListLen(pub[:]),
		submitSize: bareSubmitJSON + decimalListLen(nonce) + decimalListLen(body) + decimalListLen(tag),
	}, nil
}

func (b *bareClient) Close() error { return b.c.conn.Close() }

// pair does one hello and one submit; ctx's end closes the connection.
func (b *bareClient) pair(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { b.c.conn.Close() })
	defer stop()
	cpriv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	b.c.start()
	b.c.out = append(b.c.out, cpriv.PublicKey().Bytes()...)
	if err := b.c.finish(b.helloSize); err != nil {
		return err
	}
	ans, err := b.c.read()
	if err != nil {
		return err
	}
	if len(ans) < 65 {
		return errors.New("bare: a short hello answer")
	}
	skey, err := ecdh.P256().NewPublicKey(ans[:65])
	if err != nil {
		return err
	}
	shared, err := cpriv.ECDH(skey)
	if err != nil {
		return err
	}
	nonce, sealed, err := gcm.Seal(shared, b.plaintext)
	if err != nil {
		return err
	}
	b.c.start()
	b.c.out = append(b.c.out, nonce...)
	b.c.out = binary.BigEndian.AppendUint32(b.c.out, uint32(len(sealed)))
	b.c.out = append(b.c.out, sealed...)
	if err := b.c.finish(b.submitSize); err != nil {
		return err
	}
	ans, err = b.c.read()
	if err != nil {
		return err
	}
	if len(ans) == 0 || ans[0] != 0 {
		if len(ans) > 0 {
			ans = ans[1:]
		}
		return fmt.Errorf("bare: submit refused: %s", ans)
	}
	return nil
}

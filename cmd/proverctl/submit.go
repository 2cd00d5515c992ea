package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/shared/attest"
	"github.com/openpassport/prover-fleet/shared/family"
	"github.com/openpassport/prover-fleet/shared/status"
)

// defaultURL is the frontend `proverctl dev` serves.
const defaultURL = "ws://127.0.0.1:8888/"

// attestFlags configure how the attestation of a hello is checked.
type attestFlags struct {
	format    string
	rootPEM   string
	pcr0      []string
	anyPCR0   bool
	digests   []string
	anyImage  bool
	debug     bool
	maxAge    time.Duration
	verifiers client.Options
}

// Values of --attestation.
const (
	attestAuto  = "auto"
	attestGCP   = "gcp"
	attestNitro = "nitro"
)

func (a *attestFlags) register(f *flags) {
	f.StringVar(&a.format, "attestation", attestAuto, "attestation format to accept: gcp (Confidential Space token), nitro (AWS Nitro document) or auto (whichever the server sends, among those whose policy flags are given)")
	f.bind("attestation", "PROVER_ATTESTATION")
	f.StringVar(&a.rootPEM, "root-pem", "", "attestation root certificate(s) (PEM) to pin; default: Google's Confidential Space root for tokens, the AWS Nitro root for documents (`proverctl dev` prints its development root)")
	f.bind("root-pem", "PROVER_ROOT_PEM")
	f.StringSliceVar(&a.pcr0, "pcr0", nil, "Nitro: PCR0 (hex) of the enclave images to accept; repeat or separate with commas")
	f.bind("pcr0", "PROVER_PCR0")
	f.BoolVar(&a.anyPCR0, "insecure-any-pcr0", false, "Nitro: accept any PCR0 (development only: the document then vouches for no particular image)")
	f.StringSliceVar(&a.digests, "image-digest", nil, "Confidential Space: image digests (sha256:<64 hex>) to accept; repeat or separate with commas")
	f.bind("image-digest", "PROVER_IMAGE_DIGEST")
	f.BoolVar(&a.anyImage, "insecure-any-image", false, "Confidential Space: accept any image digest (development only)")
	f.BoolVar(&a.debug, "allow-debug", false, "Confidential Space: accept tokens of a debug image (dbgstat not disabled-since-boot), as development tokens are; development only")
	f.DurationVar(&a.maxAge, "attestation-max-age", 5*time.Minute, "oldest attestation accepted")
}

// build makes the verifiers --attestation asks for.
func (a *attestFlags) build() (client.Options, error) {
	var opts client.Options
	wantNitro, wantGCP := false, false
	switch a.format {
	case attestNitro:
		wantNitro = true
	case attestGCP:
		wantGCP = true
	case attestAuto:
		wantNitro = len(a.pcr0) > 0 || a.anyPCR0
		wantGCP = len(a.digests) > 0 || a.anyImage
		if !wantNitro && !wantGCP {
			return opts, usagef("--attestation auto needs the policy of a format: --image-digest (or --insecure-any-image) for Confidential Space tokens, --pcr0 (or --insecure-any-pcr0) for Nitro documents")
		}
	default:
		return opts, usagef("--attestation must be gcp, nitro or auto, got %q", a.format)
	}
	var pinned []*x509.Certificate
	if a.rootPEM != "" {
		data, err := os.ReadFile(a.rootPEM)
		if err != nil {
			return opts, fmt.Errorf("--root-pem: %w", err)
		}
		if pinned, err = parseCerts(data, a.rootPEM); err != nil {
			return opts, err
		}
	}
	roots := func(def []byte) ([]*x509.Certificate, error) {
		if pinned != nil {
			return pinned, nil
		}
		return parseCerts(def, "built-in root")
	}
	if wantNitro {
		r, err := roots(attest.AWSNitroRootPEM())
		if err != nil {
			return opts, err
		}
		var pcrs [][]byte
		for _, s := range a.pcr0 {
			b, err := hex.DecodeString(strings.TrimSpace(s))
			if err != nil {
				return opts, usagef("--pcr0 %q is not hex", s)
			}
			pcrs = append(pcrs, b)
		}
		switch {
		case len(pcrs) == 0 && !a.anyPCR0:
			return opts, usagef("--pcr0 is required (the enclave image to trust), or --insecure-any-pcr0 for development")
		case len(pcrs) > 0 && a.anyPCR0:
			return opts, usagef("--pcr0 and --insecure-any-pcr0 exclude each other")
		}
		v, err := attest.NewVerifier(attest.VerifierConfig{Roots: r, AllowedPCR0: pcrs, AllowAnyPCR0: a.anyPCR0, MaxAge: a.maxAge})
		if err != nil {
			return opts, usageError{err.Error()}
		}
		opts.Verifier = v
	}
	if wantGCP {
		r, err := roots(attest.GCPConfidentialSpaceRootPEM())
		if err != nil {
			return opts, err
		}
		var digests []string
		for _, d := range a.digests {
			digests = append(digests, strings.ToLower(strings.TrimSpace(d)))
		}
		switch {
		case len(digests) == 0 && !a.anyImage:
			return opts, usagef("--image-digest is required (the container image to trust), or --insecure-any-image for development")
		case len(digests) > 0 && a.anyImage:
			return opts, usagef("--image-digest and --insecure-any-image exclude each other")
		}
		v, err := attest.NewTokenVerifier(attest.TokenVerifierConfig{Roots: r, AllowedImageDigests: digests,
			AllowAnyImage: a.anyImage, AllowDebug: a.debug, MaxAge: a.maxAge})
		if err != nil {
			return opts, usageError{err.Error()}
		}
		opts.TokenVerifier = v
	}
	return opts, nil
}

// parseCerts reads every PEM certificate in data.
func parseCerts(data []byte, name string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("--root-pem %s: %w", name, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, usagef("--root-pem %s holds no PEM certificate", name)
	}
	return certs, nil
}

func runSubmit(ctx context.Context, args []string, std stdio) error {
	var (
		rawURL, typ, circuitName, inputsPath string
		endpointType, endpoint, id           string
		userData, selfData, tokenFile        string
		onchain, wait, compressed            bool
		version                              int
		timeout                              time.Duration
		af                                   attestFlags
	)
	f := newFlags("submit", "", "Sends one proof request the way the app does: hello, verify the attestation (a Confidential Space\n"+
		"token or a Nitro document, --attestation), derive the\n"+
		"shared key, encrypt, submit. With --wait it then follows the request (subscription, or polling over\n"+
		"HTTP) with a progress display on stderr and prints the final status JSON on stdout; without, it\n"+
		"prints {\"uuid\": ..., \"cancel_token\": ...}. The cancel token (hex) is what `proverctl cancel` needs:\n"+
		"only the submitter can cancel. --cancel-token-file also writes it to a file (mode 0600) as soon as the\n"+
		"request is accepted.", std)
	f.StringVar(&rawURL, "url", defaultURL, "frontend URL: ws:// or wss:// (WebSocket), http:// or https:// (POST)")
	f.bind("url", "PROVER_URL")
	f.StringVar(&typ, "type", "", "proof type: "+proofTypeList()+" (required)")
	f.StringVar(&circuitName, "circuit", "", "circuit name, e.g. register_demo (required)")
	f.StringVar(&inputsPath, "inputs", "", "file holding the circuit's input object (JSON; - for stdin) (required)")
	f.StringVar(&endpointType, "endpoint-type", "", "endpointType: celo, https, staging_celo, staging_https, test_celo, test_https (required for disclose types)")
	f.StringVar(&endpoint, "endpoint", "", "endpoint (required for disclose types)")
	f.StringVar(&userData, "user-defined-data", "", "userDefinedData")
	f.StringVar(&selfData, "self-defined-data", "", "selfDefinedData")
	f.BoolVar(&onchain, "onchain", true, "onchain")
	f.IntVar(&version, "version", 1, "request version")
	f.StringVar(&id, "uuid", "", "request uuid (default: a random one)")
	f.BoolVar(&compressed, "compressed-key", false, "send the client key as 33 bytes (newer app builds) instead of 65")
	f.BoolVar(&wait, "wait", false, "follow the request until its status is final and print it")
	f.StringVar(&tokenFile, "cancel-token-file", "", "write the request's cancel token (hex) to this file once it is accepted")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "give up after this long")
	af.register(f)
	if err := f.parse(args, std); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return usagef("submit takes no arguments, got %q", f.Args())
	}
	var missing []string
	for flag, v := range map[string]string{"--type": typ, "--circuit": circuitName, "--inputs": inputsPath} {
		if v == "" {
			missing = append(missing, flag)
		}
	}
	if len(missing) > 0 {
		return usagef("missing %s", strings.Join(slices.Sorted(slices.Values(missing)), ", "))
	}
	pt, err := family.ParseProofType(typ)
	if err != nil {
		return usagef("--type: %v", err)
	}
	inputs, err := readInputs(inputsPath)
	if err != nil {
		return err
	}
	opts, err := af.build()
	if err != nil {
		return err
	}
	opts.CompressedKey = compressed
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := client.Dial(ctx, rawURL, opts)
	if err != nil {
		return err
	}
	defer c.Close()

	b := newBoard(std.err, isTerminal(std.err))
	r := b.add(circuitName + " (" + string(pt.Family()) + ")")
	progress := r.progress()
	receipt, err := c.SubmitReceipt(ctx, client.Request{
		Type: pt, Circuit: circuitName, Inputs: inputs, Onchain: onchain,
		EndpointType: endpointType, Endpoint: endpoint,
		UserDefinedData: userData, SelfDefinedData: selfData, Version: version, UUID: id,
	}, progress)
	if err != nil {
		r.fail(err.Error())
		b.finish()
		return err
	}
	reqID, token := receipt.UUID, hex.EncodeToString(receipt.CancelToken)
	if tokenFile != "" {
		if err := writeFileAtomic(tokenFile, []byte(token+"\n")); err != nil {
			return fmt.Errorf("--cancel-token-file: %w (request %s was accepted)", err, reqID)
		}
	}
	if !wait {
		return printJSON(std, map[string]string{"uuid": reqID, "cancel_token": token})
	}
	drawCtx, stopDraw := context.WithCancel(ctx)
	drawn := make(chan struct{})
	go func() { defer close(drawn); b.run(drawCtx) }()
	st, err := c.Wait(ctx, reqID, progress)
	stopDraw()
	<-drawn
	b.finish()
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", reqID, err)
	}
	if perr := printJSON(std, st); perr != nil {
		return perr
	}
	if st.Status != status.ProofGenerated && st.Status != status.Verified {
		return fmt.Errorf("request %s ended with status %d", reqID, st.Status)
	}
	return nil
}

// writeFileAtomic writes a 0600 file that readers see whole or not at all.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}

func readInputs(path string) (json.RawMessage, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("--inputs: %w", err)
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("--inputs %s is not JSON", path)
	}
	return json.RawMessage(data), nil
}

func proofTypeList() string {
	var s []string
	for _, t := range family.ProofTypes() {
		s = append(s, string(t))
	}
	return strings.Join(s, ", ")
}

func printJSON(std stdio, v any) error {
	enc := json.NewEncoder(std.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// requestCommand parses the flags of status and cancel: --url and one uuid;
// more adds a command's own flags.
func requestCommand(name, about string, args []string, std stdio, more func(*flags)) (string, string, time.Duration, error) {
	var rawURL string
	var timeout time.Duration
	f := newFlags(name, "UUID", about, std)
	f.StringVar(&rawURL, "url", defaultURL, "frontend URL: ws://, wss://, http:// or https://")
	f.bind("url", "PROVER_URL")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	if more != nil {
		more(f)
	}
	if err := f.parse(args, std); err != nil {
		return "", "", 0, err
	}
	if f.NArg() != 1 {
		return "", "", 0, usagef("%s takes one request uuid, got %d arguments", name, f.NArg())
	}
	id := f.Arg(0)
	if _, err := uuid.Parse(id); err != nil {
		return "", "", 0, usagef("%q is not a UUID", id)
	}
	return rawURL, id, timeout, nil
}

func runStatus(ctx context.Context, args []string, std stdio) error {
	rawURL, id, timeout, err := requestCommand("status", "Prints a request's status (openpassport_status) as JSON.", args, std, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := client.Dial(ctx, rawURL, client.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Status(ctx, id)
	if err != nil {
		return err
	}
	return printJSON(std, st)
}

func runCancel(ctx context.Context, args []string, std stdio) error {
	var token, tokenFile string
	rawURL, id, timeout, err := requestCommand("cancel", "Cancels a queued or running request (openpassport_cancel): a running job's\n"+
		"processes are killed and its status becomes 3 with reason \"cancelled\". Only the submitter can: give\n"+
		"the cancel token `proverctl submit` printed (or wrote with --cancel-token-file). Prints the answer as JSON.",
		args, std, func(f *flags) {
			f.StringVar(&token, "token", "", "the request's cancel token (hex), as proverctl submit printed it")
			f.bind("token", "PROVER_CANCEL_TOKEN")
			f.StringVar(&tokenFile, "token-file", "", "read the cancel token (hex) from this file (proverctl submit --cancel-token-file)")
		})
	if err != nil {
		return err
	}
	switch {
	case token != "" && tokenFile != "":
		return usagef("--token and --token-file exclude each other")
	case tokenFile != "":
		data, err := os.ReadFile(tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		token = string(data)
	case token == "":
		return usagef("cancel needs the request's cancel token: --token or --token-file (proverctl submit prints it; only the submitter can cancel)")
	}
	raw, err := hex.DecodeString(strings.TrimSpace(token))
	if err != nil {
		return usagef("the cancel token is not hex")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := client.Dial(ctx, rawURL, client.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	res, err := c.Cancel(ctx, id, raw)
	if err != nil {
		return err
	}
	return printJSON(std, res)
}

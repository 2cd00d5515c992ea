// Package attest produces and checks the attestations the app verifies in
// its hello, in the two formats it has known (docs/PROTOCOL.md is the
// contract; the deployed app parses these bytes, so they must match it):
//
//   - [FormatNitro], an AWS Nitro Enclaves attestation document: an untagged
//     COSE_Sign1 structure, ES384 over a P-384 leaf key, whose payload is a
//     CBOR map with module_id, digest ("SHA384"), timestamp (ms), pcrs,
//     certificate, cabundle (root first), public_key, user_data and nonce.
//   - [FormatGCP], a Google Confidential Space PKI token: a JWT signed RS256
//     by the leaf of the x5c chain (leaf, intermediate, root) in its header,
//     whose payload binds the session keys as eat_nonce and names the
//     container's image digest and the debug status (dbgstat).
//
// Two implementations of [Attester] produce Nitro documents:
//
//   - [NSM] asks the Nitro Security Module (/dev/nsm inside an enclave) and
//     returns its document unchanged. The chain leads to the AWS Nitro
//     Enclaves root ([AWSNitroRootPEM]).
//   - [Dev] signs the same structure itself, for running outside an enclave.
//     It keeps a P-384 development root in a directory (created on first
//     use, reused afterwards), issues itself a short-lived leaf certificate
//     under it, and derives its PCRs from the SHA-384 of the running binary
//     ([DevPCRs]), so that two different builds attest different PCR0s.
//     A development root proves nothing about the machine; it exists so that
//     the one [Verifier] runs unchanged in development and in production.
//
// Two produce Confidential Space tokens:
//
//   - [GCP] asks the Confidential Space launcher (POST /v1/token on its unix
//     socket, token_type PKI) and returns Google's token unchanged.
//   - [DevGCP] signs tokens in the same format with a chain under an RSA
//     development root kept beside the Nitro one; its image digest is the
//     SHA-256 of the running binary and its dbgstat says debug ("enabled").
//
// [TokenVerifier] checks tokens as the app does and more (the full chain, the
// times, the image allow-list; see its Verify). [DetectFormat] tells the two
// formats apart.
//
// [Verifier] makes every check the app makes of a Nitro document: a 4-element COSE_Sign1 array
// (tagged or untagged); all of module_id, digest, timestamp, pcrs,
// certificate and cabundle present; digest == SHA384; PCR indexes below 32
// and lengths of 32, 48 or 64 bytes; cabundle entries of 1..1024 bytes;
// public_key up to 1024 bytes; user_data and nonce up to 512 bytes; the
// first cabundle entry is a pinned root and the certificate chains from it
// through the cabundle to the leaf at the document's own timestamp; the ES384
// signature verifies with the leaf key; PCR0 is on the allow-list. It also
// checks what the server's callers need: user_data equals the expected bytes
// and the timestamp is recent. Each failure wraps its own sentinel error
// (ErrSignature, ErrPCR0, ...), and field-level failures are a *FieldError
// naming the field. A Verifier remembers the certificate chains that
// verified (the exact bytes, with the window in which all their
// certificates are valid), so the same enclave's next document costs its
// own signature check only; everything else is checked every time.
package attest

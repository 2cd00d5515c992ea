// The phone app's proving round against the fleet, with the app's own
// published client code: @selfxyz/common (validatePKIToken, the client key,
// getPayload, encryptAES256GCM) and socket.io-client, in the order the app's
// proving machine runs them (packages/mobile-sdk-alpha/src/proving in the
// app's repository). Driven by e2e/app_test.go:
//
//   node --import ./pin-root.mjs app.mjs CONFIG.json
//
// CONFIG: {"frontend": "ws://...", "relay": "http://..." or "", "http": "http://.../",
//          "format": "gcp" | "nitro", "imageDigest": "sha256:...", "timeoutMs": N,
//          "mode": "prove" | "hello", "until": 2 | 4 (the status that ends a request: 2, or
//          4 as in the app, which waits for the downstream verifier; default 2),
//          "requests": [{"circuitType", "circuit", "inputsFile", "endpointType", "endpoint"}]}
//
// Every step is one JSON line on stdout; a failure is {"event":"error"} and
// exit status 1. Mode "hello" only checks a hello's token (the test runs it
// without the pinned development root, where the app's check must refuse).
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { decode } from '@stablelib/cbor';
import { validatePKIToken } from '@selfxyz/common/utils/attest';
import { clientKey, clientPublicKeyHex, ec, encryptAES256GCM, getPayload } from '@selfxyz/common/utils/proving';
import forge from 'node-forge';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = (event) => process.stdout.write(JSON.stringify(event) + '\n');

// rpc is the app's TEE WebSocket: one socket, JSON-RPC bodies, answers read
// in order.
class RPC {
  constructor(url) {
    this.ws = new WebSocket(url);
    this.queue = [];
    this.waiting = [];
    this.ws.addEventListener('message', (ev) => {
      const msg = JSON.parse(ev.data);
      const w = this.waiting.shift();
      if (w) w.resolve(msg);
      else this.queue.push(msg);
    });
    const fail = (err) => this.waiting.splice(0).forEach((w) => w.reject(err));
    this.ws.addEventListener('error', (ev) => fail(new Error('TEE WebSocket error: ' + (ev.message || ev.type))));
    this.ws.addEventListener('close', () => fail(new Error('TEE WebSocket closed')));
    this.open = new Promise((resolve, reject) => {
      this.ws.addEventListener('open', resolve);
      this.ws.addEventListener('error', reject);
    });
  }

  async call(body) {
    await this.open;
    this.ws.send(JSON.stringify(body));
    if (this.queue.length) return this.queue.shift();
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  close() {
    this.ws.close();
  }
}

// hello sends the app's hello: the current app's compressed key, or the
// Nitro-era app's uncompressed one ([4, ...X, ...Y]).
async function hello(rpc, nitro) {
  const keyHex = nitro ? clientKey.getPublic(false, 'hex') : clientPublicKeyHex;
  const uuid = randomUUID();
  const answer = await rpc.call({
    jsonrpc: '2.0',
    method: 'openpassport_hello',
    id: 1,
    params: { user_pubkey: [...Array.from(Buffer.from(keyHex, 'hex'))], uuid },
  });
  if (answer.error || !answer.result?.attestation) {
    throw new Error('hello failed: ' + JSON.stringify(answer.error ?? answer));
  }
  return { keyHex, uuid: answer.result.uuid, attestation: answer.result.attestation };
}

// checkToken is the current app's check (websocketHandlers.ts): the
// published validatePKIToken as a debug build runs it, the client key
// compared with its own compressed key, verified, and the image hash
// compared with the one the on-chain registry would hold (checkPCR0Mapping
// asks a Celo contract, which a test cannot reach). It also runs the check
// a release build makes, which must refuse a development token.
function checkToken(attestation) {
  const token = Buffer.from(attestation).toString('utf-8');
  const { userPubkey, serverPubkey, imageHash, verified } = validatePKIToken(token, true);
  if (clientPublicKeyHex !== userPubkey.toString('hex')) throw new Error('User public key does not match');
  if (!verified) throw new Error('Attestation verification failed');
  if ('sha256:' + imageHash !== cfg.imageDigest) throw new Error(`image hash ${imageHash} is not ${cfg.imageDigest}`);
  const release = validatePKIToken(token, false);
  if (release.verified) throw new Error('a release build accepted a token from a debug image');
  return { serverPubkey, imageHash };
}

// checkDocument is the Nitro-era app's reading of the COSE_Sign1 document
// (app/src/utils/proving/attest.ts then: @stablelib/cbor, public_key and
// user_data); the document's signature chain is checked by the Go test with
// the project's Nitro verifier, since @selfxyz/common no longer publishes
// the app's Nitro verifier.
function checkDocument(attestation, keyHex) {
  const sign1 = decode(Buffer.from(attestation));
  if (!Array.isArray(sign1) || sign1.length !== 4) throw new Error('Invalid COSE_Sign1 format');
  const doc = decode(sign1[2]);
  if (Buffer.from(doc.user_data).toString('hex') !== keyHex) throw new Error('user_data is not the client key');
  return { serverPubkey: Buffer.from(doc.public_key) };
}

// follow listens as the app does: Socket.IO to the relay, path '/',
// websocket transport, emit subscribe(uuid), 'status' events as objects or
// JSON strings (statusHandlers.ts parseStatusMessage), 4 success, 3 and 5
// failure, anything else progress; with cfg.until 2 it stops at the fleet's
// last status instead of waiting for the downstream verifier's 4 or 5.
function follow(uuid) {
  if (!cfg.relay) return poll(uuid);
  return new Promise((resolve, reject) => {
    const socket = io(cfg.relay, { path: '/', transports: ['websocket'] });
    const timer = setTimeout(() => {
      socket.disconnect();
      reject(new Error('no final status in time'));
    }, cfg.timeoutMs);
    const done = (err, status) => {
      clearTimeout(timer);
      socket.disconnect();
      if (err) reject(err);
      else resolve(status);
    };
    socket.on('connect', () => socket.emit('subscribe', uuid));
    socket.on('connect_error', (err) => done(new Error('Socket.IO connection error: ' + err.message)));
    socket.on('status', (message) => {
      const data = typeof message === 'string' ? JSON.parse(message) : message;
      out({ event: 'status', uuid, status: data.status, via: 'socket.io', errorCode: data.error_code });
      if (data.status === 3 || data.status === 5) done(new Error('proof failed: ' + JSON.stringify(data)));
      else if (data.status === 4 || (data.status === 2 && (cfg.until ?? 2) === 2)) done(null, data.status);
    });
  });
}

// poll reads GET /v1/proofs/{uuid} until status 2: the stand-in used while
// the fleet has no Socket.IO relay (cfg.relay empty).
async function poll(uuid) {
  const deadline = Date.now() + cfg.timeoutMs;
  let last = -1;
  while (Date.now() < deadline) {
    const res = await fetch(new URL('v1/proofs/' + uuid, cfg.http));
    if (res.ok) {
      const st = await res.json();
      if (st.status !== last) {
        last = st.status;
        out({ event: 'status', uuid, status: st.status, via: 'http' });
      }
      if (st.status === 3 || st.status === 5) throw new Error('proof failed: ' + st.reason);
      if (st.status === 2 || st.status === 4) return st.status;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('no final status in time');
}

async function prove(req) {
  const nitro = cfg.format === 'nitro';
  const rpc = new RPC(cfg.frontend);
  try {
    const h = await hello(rpc, nitro);
    out({ event: 'hello', circuit: req.circuit, uuid: h.uuid, keyBytes: h.keyHex.length / 2 });
    const { serverPubkey, imageHash } = nitro ? checkDocument(h.attestation, h.keyHex) : checkToken(h.attestation);
    out({
      event: 'attested', circuit: req.circuit, format: cfg.format, serverKeyBytes: serverPubkey.length, imageHash,
      attestation: nitro ? Buffer.from(h.attestation).toString('base64') : undefined,
      clientKey: h.keyHex,
    });

    // The shared key as the app derives it: ECDH, the X coordinate.
    const serverKey = ec.keyFromPublic(serverPubkey, 'hex');
    const sharedKey = Buffer.from(clientKey.derive(serverKey.getPublic()).toArray('be', 32));
    const inputs = JSON.parse(readFileSync(req.inputsFile, 'utf8'));
    const payload = getPayload(inputs, req.circuitType, req.circuit, req.endpointType, req.endpoint ?? '');
    const encrypted = encryptAES256GCM(JSON.stringify(payload), forge.util.createBuffer(sharedKey.toString('binary')));
    const answer = await rpc.call({
      jsonrpc: '2.0',
      method: 'openpassport_submit_request',
      id: nitro ? 1 : 2, // the Nitro-era app sent 1, the current one 2
      params: { uuid: h.uuid, ...encrypted },
    });
    if (answer.error || typeof answer.result !== 'string') {
      throw new Error('submit failed: ' + JSON.stringify(answer.error ?? answer));
    }
    out({ event: 'submitted', circuit: req.circuit, uuid: answer.result, type: payload.type });
    const status = await follow(answer.result);
    out({ event: 'done', circuit: req.circuit, uuid: answer.result, status });
  } finally {
    rpc.close();
  }
}

async function main() {
  if (cfg.mode === 'hello') {
    const rpc = new RPC(cfg.frontend);
    try {
      const h = await hello(rpc, false);
      checkToken(h.attestation);
      out({ event: 'accepted' });
    } finally {
      rpc.close();
    }
    return;
  }
  for (const req of cfg.requests) {
    await prove(req);
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    out({ event: 'error', message: String(err?.message ?? err) });
    process.exit(1);
  },
);

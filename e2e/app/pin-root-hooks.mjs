// The load hook of pin-root.mjs (runs on Node's loader thread).
import { readFileSync } from 'node:fs';

let rootPEM;

export async function initialize(data) {
  rootPEM = readFileSync(data.rootPEM, 'utf8').trim();
}

const target = '/node_modules/@selfxyz/common/dist/esm/src/utils/attest.js';
const pem = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context);
  if (!url.endsWith(target)) {
    return result;
  }
  const source = typeof result.source === 'string' ? result.source : Buffer.from(result.source).toString('utf8');
  const found = source.match(pem) || [];
  if (found.length !== 1) {
    throw new Error(`pin-root: expected one pinned root in ${url}, found ${found.length}`);
  }
  return { ...result, source: source.replace(pem, rootPEM), shortCircuit: true };
}

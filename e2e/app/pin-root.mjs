// Module hooks that pin the development root in the app's published token
// check: @selfxyz/common's utils/attest module holds Google's Confidential
// Space root as a constant (GCP_ROOT_CERT) and compares the token's x5c[2]
// with it. When the module is loaded, its one PEM certificate is replaced by
// the file named in DEV_ROOT_PEM; nothing else in the published code
// changes. Loaded with `node --import ./pin-root.mjs`; without DEV_ROOT_PEM
// nothing is replaced (the pinned Google root stays).
import { register } from 'node:module';

if (process.env.DEV_ROOT_PEM) {
  register('./pin-root-hooks.mjs', import.meta.url, { data: { rootPEM: process.env.DEV_ROOT_PEM } });
}

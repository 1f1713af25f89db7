// Verify a CTC Engine callback's X-CTC-Signature (Node.js 12+, built-in crypto only).
//
//   verify(secret, rawBody, header) -> boolean
//
// rawBody: the request body as a Buffer, exactly as received (e.g. express.raw()),
// never JSON.stringify(req.body): re-serialised JSON is not the bytes that were signed.
// Run as a program (what the engine's tests do): node verify.js SECRET HEADER NOW < body
'use strict';
const crypto = require('crypto');

const TOLERANCE = 300; // seconds: refuse a signature older or newer than this (replays)

function verify(secret, rawBody, header, now = Date.now() / 1000) {
  let timestamp = null;
  const signatures = [];
  for (const part of header.split(',')) {
    const [key, value = ''] = part.trim().split(/=(.*)/s);
    if (key === 't' && /^\d+$/.test(value)) timestamp = Number(value);
    else if (key === 'v1') signatures.push(value);
  }
  if (timestamp === null || signatures.length === 0) return false;
  if (Math.abs(now - timestamp) > TOLERANCE) return false;
  const expected = crypto
    .createHmac('sha256', secret)
    .update(Buffer.concat([Buffer.from(`${timestamp}.`), rawBody]))
    .digest('hex');
  // several v1 values during a secret rotation: accept when any matches
  return signatures.some(
    (s) => s.length === expected.length && crypto.timingSafeEqual(Buffer.from(s), Buffer.from(expected))
  );
}

module.exports = { verify };

if (require.main === module) {
  const chunks = [];
  process.stdin.on('data', (c) => chunks.push(c));
  process.stdin.on('end', () => {
    const [secret, header, now] = process.argv.slice(2);
    const ok = verify(secret, Buffer.concat(chunks), header, Number(now));
    console.log(ok ? 'valid' : 'invalid');
    process.exit(ok ? 0 : 1);
  });
}

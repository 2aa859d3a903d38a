// Webhook verification refuses every malformed input with WebhookVerificationError (never
// another exception a receiver would turn into a 500), and a tolerance that is not a finite
// number >= 0 (NaN, Infinity, negative) is refused instead of switching the replay check off.
// The cases are the shared vectors (sdk/testdata/webhook_signatures.json) the Python SDK
// and the service's verifier are checked on too.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { WebhookVerificationError, verify, webhooks } from '@canary/node';

const vectors = JSON.parse(readFileSync(new URL('../../testdata/webhook_signatures.json', import.meta.url), 'utf8'));
const good = vectors.cases.find((c) => c.name === 'valid');
// The vectors spell non-finite floats as "NaN" / "Infinity" / "-Infinity".
const tolerance = (t) => (typeof t === 'string' ? Number(t) : t);

function refused(fn, code, message) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof WebhookVerificationError, `${message}: ${err?.constructor?.name}: ${err?.message}`);
    if (code) assert.equal(err.code, code, message);
    return true;
  }, message);
}

test('every shared vector, as a string and as a Buffer header and body', () => {
  for (const c of vectors.cases) {
    for (const payload of [c.payload, Buffer.from(c.payload, 'utf8')]) {
      for (const header of [c.header, [c.header]]) {
        if (c.valid) assert.deepEqual(verify(payload, header, c.secret, c.tolerance, c.now), JSON.parse(c.payload), c.name);
        else refused(() => verify(payload, header, c.secret, c.tolerance, c.now), c.error, c.name);
      }
    }
  }
});

test('a NaN, infinite or negative tolerance is refused, not read as "no replay check"', () => {
  assert.ok(vectors.tolerance_cases.length >= 4);
  for (const c of vectors.tolerance_cases) {
    const t = tolerance(c.tolerance);
    assert.ok(!(Number.isFinite(t) && t >= 0), c.name);
    refused(() => verify(c.payload, c.header, c.secret, t, c.now), 'tolerance_invalid', c.name);
    refused(() => webhooks.verify(c.payload, c.header, c.secret, t, c.now), 'tolerance_invalid', c.name);
    assert.throws(() => verify(c.payload, c.header, c.secret, t, c.now), /tolerance/, c.name);
    // even without a header: the misconfiguration shows on the first call
    refused(() => verify(c.payload, undefined, c.secret, t, c.now), 'tolerance_invalid', c.name);
  }
});

test('a tolerance of another type is refused; 0, fractions, null and undefined still work', () => {
  for (const t of ['300', true, [300], {}, 10n]) {
    refused(() => verify(good.payload, good.header, good.secret, t, good.now), 'tolerance_invalid', String(t));
  }
  assert.deepEqual(verify(good.payload, good.header, good.secret, 0, good.now), JSON.parse(good.payload));
  assert.ok(verify(good.payload, good.header, good.secret, 0.5, good.now + 0.4));
  refused(() => verify(good.payload, good.header, good.secret, 0.5, good.now + 0.6), 'timestamp_out_of_tolerance');
  assert.ok(verify(good.payload, good.header, good.secret, null, good.now + 1e9));
  assert.ok(verify(good.payload, good.header, good.secret, undefined, good.now + 1));
});

test('a non-finite clock is refused', () => {
  for (const now of [NaN, Infinity, -Infinity, '1767225600']) {
    refused(() => verify(good.payload, good.header, good.secret, 300, now), 'now_invalid', String(now));
  }
});

test('headers of other types are refused', () => {
  for (const header of [null, undefined, 12, {}, [], [1, 2], Buffer.from('t=1'), Symbol('x')]) {
    refused(() => verify(good.payload, header, good.secret, 300, good.now), null, String(header?.toString?.() ?? header));
  }
});

test('random headers: a result or the verification error, never another exception', () => {
  let seed = 42;
  const rand = (n) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
  const pieces = ['t=', 'v1=', ',', ' ', '=', `t=${good.now}`, `v1=${good.header.split('v1=')[1]}`, '\u00e9',
    '\ud83d\udc26', '\ud800', '\u0000', '-', '9'.repeat(20), 'NaN', 'Infinity', '0x10', '1e3'];
  for (let i = 0; i < 3000; i++) {
    let header = '';
    for (let j = rand(12); j > 0; j--) header += rand(3) ? pieces[rand(pieces.length)] : String.fromCharCode(rand(0x3000));
    try {
      verify(good.payload, header, good.secret, 300, good.now);
    } catch (err) {
      assert.ok(err instanceof WebhookVerificationError, `${JSON.stringify(header)}: ${err}`);
    }
  }
});

test('a huge header is refused quickly', () => {
  const header = `${good.header},${Array(200_000).fill('v1=' + '0'.repeat(64)).join(',')}`; // ~13 MB
  const start = performance.now();
  refused(() => verify(good.payload, header, good.secret, 300, good.now), 'signature_malformed');
  assert.ok(performance.now() - start < 1000);
});

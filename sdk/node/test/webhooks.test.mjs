import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import Canary, { WebhookVerificationError, webhooks, verify, generateHeader } from '@canary/node';

const vectors = JSON.parse(readFileSync(new URL('../../testdata/webhook_signatures.json', import.meta.url), 'utf8'));

test('shared signature vectors', () => {
  assert.ok(vectors.cases.length >= 10);
  for (const c of vectors.cases) {
    if (c.valid) {
      assert.deepEqual(verify(c.payload, c.header, c.secret, c.tolerance, c.now), JSON.parse(c.payload), c.name);
      assert.deepEqual(verify(Buffer.from(c.payload, 'utf8'), c.header, c.secret, c.tolerance, c.now), JSON.parse(c.payload), c.name);
    } else {
      assert.throws(
        () => verify(c.payload, c.header, c.secret, c.tolerance, c.now),
        (err) => err instanceof WebhookVerificationError && err.code === c.error,
        c.name,
      );
    }
  }
});

test('reachable as canary.webhooks, Canary.webhooks and the named export', () => {
  const c = vectors.cases[0];
  const canary = new Canary('sk_test_x', { baseURL: 'http://127.0.0.1:9' });
  for (const w of [canary.webhooks, Canary.webhooks, webhooks]) {
    assert.equal(w.verify(c.payload, c.header, c.secret, c.tolerance, c.now).digits, '1234');
  }
});

test('default tolerance uses the clock; null disables it', () => {
  const body = '{"type":"call.completed"}';
  assert.deepEqual(verify(body, generateHeader(body, 'whsec_x'), 'whsec_x'), { type: 'call.completed' });
  const old = generateHeader(body, 'whsec_x', 1_000_000_000);
  assert.throws(() => verify(body, old, 'whsec_x'), WebhookVerificationError);
  assert.deepEqual(verify(body, old, 'whsec_x', null), { type: 'call.completed' });
  assert.throws(() => verify(body, undefined, 'whsec_x'), WebhookVerificationError);
  assert.throws(() => verify(body, old, ''), WebhookVerificationError);
});

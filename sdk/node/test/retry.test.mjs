// Retries, backoff, Retry-After, idempotency keys and typed errors against a real local server.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import Canary, {
  APIConnectionError, APITimeoutError, ConflictError, InvalidRequestError, NotFoundError,
  RateLimitError, ServiceUnavailableError, backoffDelay,
} from '@canary/node';
import { ARGS, CALL, UNAVAILABLE, scriptedServer } from './helpers.mjs';

let server;
beforeEach(async () => { server = await scriptedServer(); });
afterEach(async () => { await server.close(); });

test('503 then 200 is retried with the same Idempotency-Key, honoring Retry-After', async () => {
  server.reply({ status: 503, body: UNAVAILABLE, headers: { 'retry-after': '1' } }, { status: 201, body: CALL });
  const canary = new Canary('sk_test_abc', { baseURL: server.url });
  const call = await canary.voice.call({ ...ARGS, record: true });
  assert.equal(call.id, 'call_abc123xyz');
  assert.equal(server.requests.length, 2);
  const [a, b] = server.requests;
  assert.ok(b.at - a.at >= 950, `Retry-After not honored: ${b.at - a.at} ms`);
  assert.ok(a.headers['idempotency-key']);
  assert.equal(b.headers['idempotency-key'], a.headers['idempotency-key']);
  assert.equal(a.headers.authorization, 'Bearer sk_test_abc');
  assert.deepEqual(a.body, { ...ARGS, record: true });
});

test('each create gets its own key; an explicit key is sent as given', async () => {
  server.reply({ status: 201, body: CALL }, { status: 201, body: CALL }, { status: 201, body: CALL });
  const canary = new Canary('k', { baseURL: server.url });
  await canary.voice.call(ARGS);
  await canary.voice.calls.create(ARGS);
  await canary.voice.call(ARGS, { idempotencyKey: 'order-42' });
  const keys = server.requests.map((r) => r.headers['idempotency-key']);
  assert.notEqual(keys[0], keys[1]);
  assert.equal(keys[2], 'order-42');
});

test('429 without Retry-After backs off exponentially', async () => {
  const limited = { status: 429, body: { error: { code: 'rate_limited', message: 'slow down', field: null } } };
  server.reply(limited, limited, { status: 200, body: CALL });
  const canary = new Canary('k', { baseURL: server.url, maxRetries: 2 });
  assert.equal((await canary.voice.calls.get('call_abc123xyz')).status, 'queued');
  const at = server.requests.map((r) => r.at);
  assert.equal(at.length, 3);
  // Backoff 0.5 s then 1 s, jittered to [50%, 100%] (exactly: the 'backoff shape' test). The
  // upper bounds add time for the round trips on a busy machine; they only catch gross errors.
  const SLACK = 2000;
  assert.ok(at[1] - at[0] >= 200 && at[1] - at[0] < 500 + SLACK, `${at[1] - at[0]}`);
  assert.ok(at[2] - at[1] >= 450 && at[2] - at[1] < 1000 + SLACK, `${at[2] - at[1]}`);
});

test('retries are bounded and the typed error is thrown', async () => {
  const limited = { status: 429, body: { error: { code: 'rate_limited', message: 'slow down', field: null } }, headers: { 'retry-after': '0' } };
  server.reply(limited, limited, limited, limited);
  const canary = new Canary('k', { baseURL: server.url, maxRetries: 2 });
  await assert.rejects(canary.voice.call(ARGS), (err) => {
    assert.ok(err instanceof RateLimitError);
    assert.equal(err.status, 429);
    assert.equal(err.code, 'rate_limited');
    assert.equal(err.retryAfter, 0);
    return true;
  });
  assert.equal(server.requests.length, 3);
});

test('a Retry-After too long is not waited for', async () => {
  server.reply({ status: 503, body: UNAVAILABLE, headers: { 'retry-after': '3600' } });
  const canary = new Canary('k', { baseURL: server.url });
  const started = Date.now();
  await assert.rejects(canary.voice.call(ARGS), (err) => err instanceof ServiceUnavailableError && err.retryAfter === 3600);
  assert.ok(Date.now() - started < 2000);
  assert.equal(server.requests.length, 1);
});

for (const [status, Cls] of [[400, InvalidRequestError], [404, NotFoundError], [409, ConflictError], [422, InvalidRequestError]]) {
  test(`${status} is never retried and carries code and field`, async () => {
    const body = { error: { code: 'invalid_phone_number', message: 'to must be E.164', field: 'to' } };
    server.reply({ status, body, headers: { 'retry-after': '0' } }, { status: 201, body: CALL });
    const canary = new Canary('k', { baseURL: server.url });
    await assert.rejects(canary.voice.call(ARGS), (err) => {
      assert.ok(err instanceof Cls);
      assert.equal(err.status, status);
      assert.equal(err.code, 'invalid_phone_number');
      assert.equal(err.field, 'to');
      assert.match(err.message, /to must be E\.164/);
      return true;
    });
    assert.equal(server.requests.length, 1);
  });
}

test('network errors are retried with the same key', async () => {
  server.reply({ drop: true }, { status: 201, body: CALL });
  const canary = new Canary('k', { baseURL: server.url });
  assert.equal((await canary.voice.call(ARGS)).id, 'call_abc123xyz');
  assert.equal(server.requests.length, 2);
  assert.equal(server.requests[0].headers['idempotency-key'], server.requests[1].headers['idempotency-key']);
});

test('connection refused is an APIConnectionError', async () => {
  const canary = new Canary('k', { baseURL: 'http://127.0.0.1:9', maxRetries: 1 });
  await assert.rejects(canary.voice.calls.get('call_x'), APIConnectionError);
});

test('timeouts, and the per-request override', async () => {
  server.reply({ status: 200, body: CALL, delay: 5000 }, { status: 200, body: CALL, delay: 5000 }); // far past 200 ms
  const canary = new Canary('k', { baseURL: server.url, timeout: 200, maxRetries: 1 });
  await assert.rejects(canary.voice.calls.get('call_abc123xyz'), APITimeoutError);
  assert.equal(server.requests.length, 2);
  server.reply({ status: 200, body: CALL, delay: 400 }); // the override must outlast it; the client's 200 ms would not
  assert.equal((await canary.voice.calls.get('call_abc123xyz', { timeout: 10000 })).id, 'call_abc123xyz');
});

test('backoff shape', () => {
  assert.equal(backoffDelay(0, '3'), 3);
  assert.equal(backoffDelay(0, '999'), null);
  const ranges = [[0.25, 0.5], [0.5, 1], [1, 2], [2, 4], [4, 8], [4, 8]];
  ranges.forEach(([lo, hi], i) => {
    for (let n = 0; n < 50; n++) {
      const d = backoffDelay(i);
      assert.ok(d >= lo && d <= hi, `${i}: ${d}`);
    }
  });
});

import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import Canary, { ConflictError, InvalidRequestError } from '@canary/node';
import { CALL, scriptedServer } from './helpers.mjs';

// calls.update: the body for each kind of change, its key, and the errors it rejects with.
let server;
beforeEach(async () => { server = await scriptedServer(); });
afterEach(async () => { await server.close(); });

const accepted = (...changes) => ({ status: 202, body: { ...CALL, status: 'in-progress', update: { id: 'u1', changes } } });

for (const body of [
  { tts: { text: 'Please hold.' } },
  { audio_url: 'https://example.com/a.mp3', interrupt: false },
  { flow_id: 'flow_1', step: 'menu' },
  { send_digits: '1234#' },
  { recording: 'pause' },
  { status: 'completed' },
]) {
  test(`update sends ${JSON.stringify(body)}`, async () => {
    server.reply(accepted(...Object.keys(body).filter((k) => k !== 'interrupt' && k !== 'step')));
    const c = new Canary('k', { baseURL: server.url });
    const call = await c.voice.calls.update('call_1', body);
    assert.equal(call.update.id, 'u1');
    const req = server.requests[0];
    assert.equal(req.method, 'POST');
    assert.equal(req.path, '/v1/voice/calls/call_1');
    assert.deepEqual(req.body, body);
    assert.ok(req.headers['idempotency-key'], 'a generated key: a retry is sent once');
  });
}

test('update keeps the given idempotency key and escapes the id', async () => {
  server.reply(accepted('send_digits'));
  const c = new Canary('k', { baseURL: server.url });
  await c.voice.calls.update('call/1', { send_digits: '1' }, { idempotencyKey: 'mine' });
  assert.equal(server.requests[0].path, '/v1/voice/calls/call%2F1');
  assert.equal(server.requests[0].headers['idempotency-key'], 'mine');
});

test('update of a call that ended rejects with call_not_live', async () => {
  server.reply({ status: 409, body: { error: { code: 'call_not_live', message: 'the call is already completed', field: 'status' } } });
  const c = new Canary('k', { baseURL: server.url, maxRetries: 0 });
  await assert.rejects(c.voice.calls.update('call_1', { send_digits: '1' }),
    (e) => e instanceof ConflictError && e.code === 'call_not_live');
});

test('a bad update rejects with its code and field', async () => {
  server.reply({ status: 422, body: { error: { code: 'invalid_field', message: 'bad digits', field: 'send_digits' } } });
  const c = new Canary('k', { baseURL: server.url, maxRetries: 0 });
  await assert.rejects(c.voice.calls.update('call_1', { send_digits: 'x' }),
    (e) => e instanceof InvalidRequestError && e.code === 'invalid_field' && e.field === 'send_digits');
  assert.throws(() => c.voice.calls.update('call_1', null));
});

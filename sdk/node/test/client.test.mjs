import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { createRequire } from 'node:module';
import Canary, { CanaryError, DEFAULT_BASE_URL } from '@canary/node';
import { CALL, scriptedServer } from './helpers.mjs';

let server;
beforeEach(async () => { server = await scriptedServer(); });
afterEach(async () => { await server.close(); });

test('base URL and key from the environment', () => {
  const saved = { ...process.env };
  try {
    delete process.env.CANARY_API_URL;
    assert.equal(new Canary('k').baseURL, DEFAULT_BASE_URL);
    assert.equal(DEFAULT_BASE_URL, 'https://api.canarymsg.dev');
    process.env.CANARY_API_URL = 'http://127.0.0.1:8080/';
    assert.equal(new Canary('k').baseURL, 'http://127.0.0.1:8080');
    assert.equal(new Canary('k', { baseURL: 'http://x:1' }).baseURL, 'http://x:1');
    delete process.env.CANARY_API_KEY;
    assert.throws(() => new Canary(), CanaryError);
    process.env.CANARY_API_KEY = 'sk_test_env';
    assert.equal(new Canary().transport.apiKey, 'sk_test_env');
    assert.equal(new Canary({ apiKey: 'sk_obj' }).transport.apiKey, 'sk_obj');
  } finally {
    process.env = saved;
  }
});

test('CommonJS build', () => {
  const require = createRequire(import.meta.url);
  const Cjs = require('@canary/node');
  assert.equal(typeof Cjs, 'function');
  assert.equal(Cjs.default, Cjs);
  assert.equal(typeof Cjs.Canary, 'function');
  assert.equal(typeof Cjs.NotFoundError, 'function');
  assert.equal(typeof Cjs.webhooks.verify, 'function');
  assert.equal(typeof new Cjs('k').voice.call, 'function');
});

test('list auto-paginates with for await; await gives the first page', async () => {
  server.reply(
    { body: { data: [CALL, { ...CALL, id: 'call_2' }], has_more: true, next_cursor: 'c2' } },
    { body: { data: [{ ...CALL, id: 'call_3' }], has_more: false, next_cursor: null } },
    { body: { data: [CALL], has_more: true, next_cursor: 'c2' } },
  );
  const canary = new Canary('k', { baseURL: server.url });
  const ids = [];
  for await (const call of canary.voice.calls.list({ status: 'queued', from: '+15559876543', limit: 2 })) ids.push(call.id);
  assert.deepEqual(ids, ['call_abc123xyz', 'call_2', 'call_3']);
  assert.equal(server.requests[0].path, '/v1/voice/calls?status=queued&from=%2B15559876543&limit=2');
  assert.match(server.requests[1].path, /cursor=c2/);
  assert.match(server.requests[1].path, /status=queued/);
  const page = await canary.voice.calls.list();
  assert.equal(page.data.length, 1);
  assert.ok(page.hasMore && page.hasNextPage());
});

test('paths and methods of every resource', async () => {
  const rec = { id: 'rec_1', call_id: 'call_1', duration: 45, url: '/media/rec_1.mp3?sig=abc', transcription: { text: 'hello', confidence: 0.95 } };
  server.reply(
    { body: { ...CALL, status: 'canceled' } },
    { body: { data: [{ id: 'evt_1', type: 'call.queued', call_id: 'call_1', trace_id: '4bf92f3577b34da6a3ce929d0e0e4736' }] } },
    { body: rec },
    { raw: 'ID3fakeaudio', headers: { 'content-type': 'audio/mpeg' } },
    { body: { data: [{ id: 'en-US-Neural2-F', language: 'en-US' }] } },
    { body: { data: [{ number: '+15559876543' }] } },
    { status: 201, body: { number: '+15550001111' } },
    { status: 204 },
    { status: 201, body: { id: 'flow_1', name: 'menu' } },
    { status: 200, body: { id: 'flow_1', name: 'menu2' } },
    { status: 204 },
  );
  const c = new Canary('k', { baseURL: server.url });
  assert.equal((await c.voice.calls.hangup('call_1')).status, 'canceled');
  assert.deepEqual((await c.voice.calls.events('call_1')).map((e) => [e.type, e.trace_id]),
    [['call.queued', '4bf92f3577b34da6a3ce929d0e0e4736']]);
  const r = await c.voice.calls.recording('call_1');
  assert.equal(r.transcription.confidence, 0.95);
  assert.equal((await c.voice.calls.downloadRecording(r)).toString(), 'ID3fakeaudio');
  const voices = [];
  for await (const v of c.voice.voices.list()) voices.push(v.id);
  assert.deepEqual(voices, ['en-US-Neural2-F']);
  assert.equal((await c.voice.numbers.list()).data[0].number, '+15559876543');
  assert.equal((await c.voice.numbers.create('+15550001111')).number, '+15550001111');
  await c.voice.numbers.delete('+15550001111');
  assert.equal((await c.voice.flows.create({ name: 'menu' })).id, 'flow_1');
  assert.equal((await c.voice.flows.update('flow_1', { name: 'menu2' })).name, 'menu2');
  await c.voice.flows.delete('flow_1');
  assert.deepEqual(server.requests.map((q) => [q.method, q.path.split('?')[0]]), [
    ['POST', '/v1/voice/calls/call_1/hangup'],
    ['GET', '/v1/voice/calls/call_1/events'],
    ['GET', '/v1/voice/calls/call_1/recording'],
    ['GET', '/media/rec_1.mp3'],
    ['GET', '/v1/voice/voices'],
    ['GET', '/v1/voice/numbers'],
    ['POST', '/v1/voice/numbers'],
    ['DELETE', '/v1/voice/numbers/%2B15550001111'],
    ['POST', '/v1/voice/flows'],
    ['PUT', '/v1/voice/flows/flow_1'],
    ['DELETE', '/v1/voice/flows/flow_1'],
  ]);
});

test('the key is never sent to another host', async () => {
  server.reply({ raw: 'audio' });
  const c = new Canary('k', { baseURL: server.url });
  const other = server.url.replace('127.0.0.1', 'localhost');
  assert.equal((await c.voice.calls.downloadRecording({ id: 'rec_1', call_id: 'c', url: other + '/r.mp3' })).toString(), 'audio');
  assert.equal(server.requests[0].headers.authorization, undefined);
});

test('bad ids are rejected before any request', () => {
  const c = new Canary('k', { baseURL: 'http://127.0.0.1:9' });
  assert.throws(() => c.voice.calls.get(''), CanaryError);
});

// --- event streams (SSE) --------------------------------------------------------------

const sse = (...events) =>
  [': keep-alive', '', ...events.flatMap(([event, id, data]) => [`event: ${event}`, ...(id ? [`id: ${id}`] : []), `data: ${JSON.stringify(data)}`, ''])].join('\n') + '\n';
const sseEv = (i, type = 'call.ringing') => [type, `e${i}`, { id: `e${i}`, type, version: 1, occurred_at: '2026-01-01T00:00:00Z', call_id: 'call_1', data: {} }];
const STREAM = { 'content-type': 'text/event-stream' };

test('SSEParser joins data lines and skips comments', async () => {
  const { SSEParser } = await import('@canary/node');
  const p = new SSEParser();
  const out = [': ping', 'event: call.answered', 'id: 7', 'data: {"a":', 'data: 1}', ''].map((l) => p.feed(l));
  assert.deepEqual(out.at(-1), ['call.answered', '7', '{"a":\n1}']);
  assert.deepEqual(out.slice(0, -1), [null, null, null, null, null]);
});

test('calls.follow resumes after a gap with Last-Event-ID and stops at end', async () => {
  const s = await scriptedServer();
  try {
    s.reply({ status: 200, raw: sse(sseEv(1), sseEv(2), ['gap', null, { reason: 'fell_behind' }]), headers: STREAM },
      { status: 200, raw: sse(sseEv(3, 'call.completed'), ['end', null, { status: 'completed' }]), headers: STREAM });
    const c = new Canary({ apiKey: 'sk_test_x', baseURL: s.url });
    const ids = [];
    for await (const ev of c.voice.calls.follow('call_1')) ids.push(ev.id);
    assert.deepEqual(ids, ['e1', 'e2', 'e3']);
    assert.equal(s.requests[0].path, '/v1/voice/calls/call_1/events?follow=true');
    assert.equal(s.requests[0].headers['last-event-id'], undefined);
    assert.equal(s.requests[1].headers['last-event-id'], 'e2');
    assert.equal(s.requests[1].headers.authorization, 'Bearer sk_test_x');
  } finally {
    await s.close();
  }
});

test('calls.follow rides out a dropped connection; an error status throws the typed error', async () => {
  const { NotFoundError } = await import('@canary/node');
  const s = await scriptedServer();
  try {
    s.reply({ drop: true }, { status: 200, raw: sse(sseEv(1), ['end', null, {}]), headers: STREAM },
      { status: 404, body: { error: { code: 'call_not_found', message: 'no such call', field: 'call_id' } } });
    const c = new Canary({ apiKey: 'sk_test_x', baseURL: s.url });
    const types = [];
    for await (const ev of c.voice.calls.follow('call_1', { lastEventId: 'e0' })) types.push(ev.type);
    assert.deepEqual(types, ['call.ringing']);
    assert.ok(s.requests.every((r) => r.headers['last-event-id'] === 'e0'));
    await assert.rejects(async () => { for await (const _ of c.voice.calls.follow('call_9')) { /* none */ } },
      (err) => err instanceof NotFoundError && err.code === 'call_not_found');
  } finally {
    await s.close();
  }
});

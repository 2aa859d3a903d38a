// The Node SDK against the real running API, with `node --test`.
//
//   CANARY_API_URL=http://127.0.0.1:8080 CANARY_API_KEY=sk_test_... node --test tests/interop/sdk/
//
// Without CANARY_API_KEY a key comes from `canary-voice dev-setup`. Everything skips, saying
// why, only when the API is unreachable. (pytest runs this file too: test_node_sdk.py.)
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const NODE_SDK = join(ROOT, 'sdk', 'node');
const SNIPPET = join(ROOT, 'sdk', 'testdata', 'docs_snippets', 'quickstart.mjs');
const URL_ = (process.env.CANARY_API_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const DEV_NUMBER = '+15559876543';
const TO = '+15551234567';
const TTS = { text: 'Hello from Canary!', voice: 'en-US-Neural2-F' };

async function reachable() {
  try {
    const res = await fetch(URL_ + '/healthz', { signal: AbortSignal.timeout(2000) });
    return res.status < 500;
  } catch {
    return false;
  }
}

function devKey() {
  if (process.env.CANARY_API_KEY) return process.env.CANARY_API_KEY;
  const cli = join(ROOT, '.venv', 'bin', 'canary-voice');
  const out = execFileSync(existsSync(cli) ? cli : 'canary-voice', ['dev-setup'], { cwd: ROOT, encoding: 'utf8' });
  const key = out.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('sk_')).pop();
  assert.ok(key, `canary-voice dev-setup printed no key:\n${out}`);
  return key;
}

function ensureBuilt() {
  if (existsSync(join(NODE_SDK, 'dist', 'esm', 'index.js')) && existsSync(join(NODE_SDK, 'dist', 'cjs', 'index.cjs'))) return;
  assert.ok(existsSync(join(NODE_SDK, 'node_modules', 'typescript')), 'sdk/node is not built: run `npm ci && npm run build` in sdk/node');
  execFileSync(process.execPath, [join(NODE_SDK, 'scripts', 'build.mjs')], { cwd: NODE_SDK, stdio: 'inherit' });
}

const up = await reachable();
const skip = up ? false : `the API is unreachable at ${URL_} (start it: python -m services.api, or set CANARY_API_URL)`;

describe('@canary/node against the real API', { skip }, () => {
  let Canary, errors, canary, key;

  before(async () => {
    ensureBuilt();
    const mod = await import(new URL('../../../sdk/node/dist/esm/index.js', import.meta.url));
    Canary = mod.default;
    errors = mod;
    key = devKey();
    canary = new Canary(key, { baseURL: URL_ });
  });

  test('the docs snippet runs unchanged (ESM import of @canary/node)', () => {
    const source = readFileSync(SNIPPET, 'utf8');
    assert.match(source, /new Canary\('YOUR_API_KEY'\)/);
    const dir = mkdtempSync(join(tmpdir(), 'canary-snippet-'));
    try {
      mkdirSync(join(dir, 'node_modules', '@canary'), { recursive: true });
      symlinkSync(NODE_SDK, join(dir, 'node_modules', '@canary', 'node'), 'dir');
      writeFileSync(join(dir, 'snippet.mjs'), source.replace('YOUR_API_KEY', key));
      const out = spawnSync(process.execPath, [join(dir, 'snippet.mjs')], {
        cwd: dir, encoding: 'utf8', env: { ...process.env, CANARY_API_URL: URL_ }, timeout: 60_000,
      });
      assert.equal(out.status, 0, out.stderr);
      assert.match(out.stdout, /^Call initiated: call_\w+\n$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the CommonJS build works against the API', () => {
    const script = `const Canary = require(${JSON.stringify(join(NODE_SDK, 'dist', 'cjs', 'index.cjs'))});
      new Canary(process.env.K, { baseURL: process.env.U }).voice.voices.list()
        .then((p) => { console.log(p.data.map((v) => v.id).join(',')); })
        .catch((e) => { console.error(e); process.exit(1); });`;
    const out = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, K: key, U: URL_ } });
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout, /en-US-Neural2-F/);
  });

  test('create returns the documented shape; get finds it at once', async () => {
    const call = await canary.voice.call({ to: TO, from: DEV_NUMBER, tts: TTS, record: true, transcribe: true,
      recording_channels: 'dual', timeout: 20 });
    assert.match(call.id, /^call_/);
    assert.equal(call.status, 'queued');
    assert.equal(call.direction, 'outbound');
    assert.equal(call.from, DEV_NUMBER);
    const got = await canary.voice.calls.get(call.id);
    assert.equal(got.id, call.id);
    assert.equal(got.to, TO);
  });

  test('list auto-paginates', async () => {
    const since = new Date(Date.now() - 2000).toISOString();
    const ids = new Set();
    for (let i = 0; i < 3; i++) ids.add((await canary.voice.call({ to: TO, from: DEV_NUMBER, tts: TTS })).id);
    const page = await canary.voice.calls.list({ created_after: since, from: DEV_NUMBER, limit: 1 });
    assert.equal(page.data.length, 1);
    assert.ok(page.hasMore && page.nextCursor);
    const seen = [];
    for await (const c of canary.voice.calls.list({ created_after: since, from: DEV_NUMBER, limit: 1 })) seen.push(c.id);
    for (const id of ids) assert.ok(seen.includes(id), `${id} not listed`);
    assert.equal(new Set(seen).size, seen.length);
  });

  test('hangup, events', async () => {
    const call = await canary.voice.call({ to: TO, from: DEV_NUMBER, tts: TTS });
    try {
      assert.equal((await canary.voice.calls.hangup(call.id)).id, call.id);
    } catch (err) {
      assert.ok(err instanceof errors.ConflictError && err.code === 'call_already_ended', String(err));
    }
    const events = await canary.voice.calls.events(call.id);
    assert.ok(Array.isArray(events));
    for (const e of events) assert.ok(e.id && e.type && e.occurred_at);
  });

  test('calls.update on a live call: digits, a hangup by status, then call_not_live', async () => {
    const call = await canary.voice.call({ to: TO, from: DEV_NUMBER, tts: { text: 'Enter your PIN.' },
      gather: { type: 'dtmf', num_digits: 4, timeout: 30 } });
    const deadline = Date.now() + 60000;
    while ((await canary.voice.calls.get(call.id)).status !== 'in-progress') {
      assert.ok(Date.now() < deadline, 'the call was not answered');
      await new Promise((r) => setTimeout(r, 200));
    }
    const sent = await canary.voice.calls.update(call.id, { send_digits: '12#' });
    assert.deepEqual(sent.update.changes, ['send_digits']);
    await canary.voice.calls.update(call.id, { status: 'completed' });
    while (!['completed', 'busy', 'no-answer', 'failed', 'canceled'].includes((await canary.voice.calls.get(call.id)).status)) {
      assert.ok(Date.now() < deadline + 30000, 'the call did not end');
      await new Promise((r) => setTimeout(r, 200));
    }
    await assert.rejects(canary.voice.calls.update(call.id, { send_digits: '1' }),
      (e) => e instanceof errors.ConflictError && e.code === 'call_not_live');
  });

  test('calls.follow streams the call to its end; a resume gives exactly the rest', async () => {
    const call = await canary.voice.call({ to: TO, from: DEV_NUMBER, tts: TTS });
    const signal = AbortSignal.timeout(120_000);
    const events = [];
    for await (const ev of canary.voice.calls.follow(call.id, { signal })) events.push(ev);
    const types = events.map((e) => e.type);
    assert.equal(types[0], 'call.queued');
    assert.equal(types.at(-1), 'call.completed', types.join(' '));
    assert.ok(events.every((e) => e.call_id === call.id));
    const rest = [];
    for await (const ev of canary.voice.calls.follow(call.id, { lastEventId: events[1].id, signal })) rest.push(ev.id);
    assert.deepEqual(rest, events.slice(2).map((e) => e.id));
  });

  test('events.follow carries the account\'s calls as they happen', async () => {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 120_000);
    const seen = new Map();
    let target = null;
    // Place calls until one is seen from its first event to its last (the stream may open
    // after the first POST).
    const placing = (async () => {
      while (!ac.signal.aborted && !target) {
        await canary.voice.call({ to: TO, from: DEV_NUMBER, tts: TTS });
        await new Promise((r) => setTimeout(r, 2000));
      }
    })();
    try {
      for await (const ev of canary.voice.events.follow({ signal: ac.signal })) {
        const list = seen.get(ev.call_id) ?? [];
        list.push(ev.type);
        seen.set(ev.call_id, list);
        if (ev.type === 'call.completed' && list[0] === 'call.queued') {
          target = ev.call_id;
          break;
        }
      }
    } finally {
      clearTimeout(timer);
      ac.abort();
      await placing;
    }
    assert.ok(target, 'no call seen from queued to completed');
    assert.ok(seen.get(target).includes('call.answered'));
  });

  test('typed errors carry code, field and status', async () => {
    await assert.rejects(canary.voice.call({ to: '12345', from: DEV_NUMBER, tts: TTS }),
      (e) => e instanceof errors.InvalidRequestError && e.status === 422 && e.field === 'to' && !!e.code);
    await assert.rejects(canary.voice.call({ to: TO, from: '+15550000001', tts: TTS }),
      (e) => e instanceof errors.PermissionDeniedError && e.code === 'number_not_verified' && e.field === 'from');
    await assert.rejects(canary.voice.calls.get('call_doesnotexist0'),
      (e) => e instanceof errors.NotFoundError && e.code === 'call_not_found' && e.status === 404);
    await assert.rejects(canary.voice.calls.recording('call_doesnotexist0'), errors.NotFoundError);
    await assert.rejects(new Canary('sk_test_not_a_real_key', { baseURL: URL_ }).voice.calls.get('call_x1'),
      (e) => e instanceof errors.AuthenticationError && e.status === 401);
  });

  test('Idempotency-Key: same key same call; same key other body is a 409', async () => {
    const idempotencyKey = `sdk-node-${Date.now()}-${Math.random()}`;
    const a = await canary.voice.call({ to: TO, from: DEV_NUMBER, tts: TTS }, { idempotencyKey });
    const b = await canary.voice.call({ to: TO, from: DEV_NUMBER, tts: TTS }, { idempotencyKey });
    assert.equal(a.id, b.id);
    await assert.rejects(canary.voice.call({ to: TO, from: DEV_NUMBER, tts: { text: 'different' } }, { idempotencyKey }),
      (e) => e instanceof errors.ConflictError && e.code === 'idempotency_key_reused');
  });

  test('voices and numbers', async () => {
    const voices = [];
    for await (const v of canary.voice.voices.list()) voices.push(v);
    assert.ok(voices.some((v) => v.id === 'en-US-Neural2-F' && v.language === 'en-US'));
    const numbers = async () => (await canary.voice.numbers.list()).data.map((n) => n.number);
    assert.ok((await numbers()).includes(DEV_NUMBER));
    const number = '+1555' + String(Math.floor(Math.random() * 1e7)).padStart(7, '0');
    assert.equal((await canary.voice.numbers.create(number)).number, number);
    assert.ok((await numbers()).includes(number));
    await canary.voice.numbers.delete(number);
    assert.ok(!(await numbers()).includes(number));
  });

  test('flows CRUD', async () => {
    const doc = { name: 'sdk node test', start: 'hello',
      steps: { hello: { kind: 'say', text: 'Hi', next: 'bye' }, bye: { kind: 'hangup' } } };
    const flow = await canary.voice.flows.create(doc);
    assert.ok(flow.id);
    assert.equal((await canary.voice.flows.get(flow.id)).id, flow.id);
    assert.ok((await canary.voice.flows.list()).data.some((f) => f.id === flow.id));
    assert.equal((await canary.voice.flows.update(flow.id, { ...doc, name: 'v2' })).id, flow.id);
    assert.ok((await canary.voice.flows.versions(flow.id)).length >= 2);
    await canary.voice.flows.delete(flow.id);
    await assert.rejects(canary.voice.flows.get(flow.id), errors.NotFoundError);
  });

  test('flows validate and simulate', async () => {
    const menu = { name: 'sdk node menu', start: 'menu', steps: {
      menu: { kind: 'gather', num_digits: 1, prompt: { kind: 'say', text: 'Press 1 for sales.' },
        branches: { 1: 'sales' }, default: 'bye', on_timeout: 'bye' },
      sales: { kind: 'say', text: 'Sales.', next: 'bye' }, bye: { kind: 'hangup' } } };
    const ok = await canary.voice.flows.validate(menu);
    assert.equal(ok.valid, true);
    const broken = await canary.voice.flows.validate({ ...menu, steps: { ...menu.steps,
      menu: { ...menu.steps.menu, branches: { 1: 'nowhere' } } } });
    assert.equal(broken.valid, false);
    assert.ok(broken.errors.some((e) => e.message.includes('nowhere')));
    const walked = await canary.voice.flows.simulate({ flow: menu, inputs: [{ press: '1' }] });
    assert.deepEqual(walked.path.slice(0, 2), ['menu', 'sales']);
  });

  test('keys create, list, revoke', async () => {
    const made = await canary.voice.keys.create();
    assert.ok(made.key.startsWith('sk_test_'));
    const listed = await canary.voice.keys.list();
    const mine = listed.find((k) => k.id === made.id);
    assert.ok(mine && mine.key === undefined);
    await canary.voice.keys.revoke(made.id);
    assert.ok((await canary.voice.keys.list()).find((k) => k.id === made.id).revoked_at);
    await assert.rejects(canary.voice.keys.revoke(made.id), errors.NotFoundError);
  });

  test('sandbox callees list', async () => {
    assert.ok(Array.isArray((await canary.voice.sandbox.callees.list()).data));
  });
});


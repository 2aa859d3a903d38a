// Live event streams (Server-Sent Events) as async iterators: `calls.follow(id)` and
// `events.follow()`. The SSE wire format is a few lines of text (WHATWG HTML,
// "server-sent events"); parsing it here keeps the SDK free of dependencies. The
// iterators yield every event of the log and resume by themselves: after a dropped
// connection or a `gap` (the stream fell behind) they reconnect with Last-Event-ID, so a
// call's stream never repeats or skips an event. A call's stream ends after the server's
// `end` (the call ended and its recording and transcript are in).
import type { Transport } from './core.js';
import { APIError } from './errors.js';
import { backoffDelay, sleep } from './retry.js';
import type { CallEvent } from './types.js';

export interface FollowOptions {
  /** Resume after this event id (what the last run saw). */
  lastEventId?: string;
  /** Stop following (the iterator ends). */
  signal?: AbortSignal;
}

export type SSEMessage = [event: string, id: string | null, data: string];

/** Feed lines, get `[event, id, data]` for each complete message. */
export class SSEParser {
  private event = '';
  private id: string | null = null;
  private data: string[] = [];

  feed(line: string): SSEMessage | null {
    if (line === '') {
      if (!this.data.length && !this.event) return null;
      const out: SSEMessage = [this.event || 'message', this.id, this.data.join('\n')];
      this.event = '';
      this.id = null;
      this.data = [];
      return out;
    }
    if (line.startsWith(':')) return null; // a comment (keep-alive)
    const i = line.indexOf(':');
    const name = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'event') this.event = value;
    else if (name === 'data') this.data.push(value);
    else if (name === 'id' && !value.includes('\0')) this.id = value;
    return null;
  }
}

async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      yield buf.slice(0, i).replace(/\r$/, '');
      buf = buf.slice(i + 1);
    }
  }
}

/** The iterator behind `voice.calls.follow` and `voice.events.follow`. */
export async function* follow(t: Transport, path: string, opts: FollowOptions = {}): AsyncGenerator<CallEvent> {
  let last = opts.lastEventId;
  let failures = 0;
  const maxFailures = Math.max(t.maxRetries, 2);
  for (;;) {
    if (opts.signal?.aborted) return;
    let gap = false;
    try {
      const res = await t.openStream(path, { follow: 'true' }, last ? { 'Last-Event-ID': last } : {}, opts.signal);
      const parser = new SSEParser();
      read: for await (const line of lines(res.body!)) {
        const msg = parser.feed(line);
        if (!msg) continue;
        failures = 0;
        const [event, , data] = msg;
        if (event === 'end') return;
        if (event === 'gap') {
          gap = true;
          break read;
        }
        const ev = JSON.parse(data) as CallEvent;
        last = ev.id;
        yield ev;
      }
    } catch (err) {
      if (err instanceof APIError || opts.signal?.aborted) throw err;
      if (++failures > maxFailures) throw err;
      await sleep(backoffDelay(failures - 1) ?? 0.5);
      continue;
    }
    if (!gap) await sleep(0.5); // closed without `end` (a restart): resume shortly
  }
}

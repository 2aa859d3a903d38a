// The console's only way to the API: same origin, the tab's key in the Authorization header.

const KEY = 'canary.apiKey';

/** The API key of this tab (sessionStorage: per tab, gone when the tab closes, never a cookie). */
export const session = {
  get: (): string | null => sessionStorage.getItem(KEY),
  set: (key: string) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

export interface FieldError {
  field: string;
  code: string;
  message: string;
  path?: string;
}

/** An error answer of the API: `{"error": {"code", "message", "field"}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field: string | null = null,
    readonly errors: FieldError[] = [],
  ) {
    super(message);
  }
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const key = session.get();
  return { ...(key ? { Authorization: `Bearer ${key}` } : {}), ...extra };
}

async function failure(res: Response): Promise<ApiError> {
  try {
    const e = (await res.json()).error ?? {};
    return new ApiError(res.status, e.code ?? 'http_error', e.message ?? res.statusText, e.field ?? null, e.errors ?? []);
  } catch {
    return new ApiError(res.status, 'http_error', `${res.status} ${res.statusText}`);
  }
}

/** A JSON request to the API; throws ApiError on any non-2xx answer. */
export async function api<T = unknown>(path: string, init: { method?: string; body?: unknown; signal?: AbortSignal } = {}): Promise<T> {
  const res = await fetch(path, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: headers(init.body === undefined ? {} : { 'Content-Type': 'application/json' }),
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: init.signal,
  });
  if (!res.ok) throw await failure(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** Bytes from the API as a blob (a recording: <audio> cannot send the Authorization header). */
export async function blob(path: string, signal?: AbortSignal): Promise<Blob> {
  const res = await fetch(path, { headers: headers(), signal });
  if (!res.ok) throw await failure(res);
  return res.blob();
}

/** A same-origin path for a URL the API returned (its public URL may name another host). */
export function sameOrigin(url: string): string {
  const u = new URL(url, window.location.origin);
  return u.pathname + u.search;
}

export interface SSEMessage {
  id?: string;
  event: string;
  data: string;
}

/** Split an SSE byte stream's text into complete messages and the unfinished rest. */
export function parseSSE(buffer: string): { messages: SSEMessage[]; rest: string } {
  const messages: SSEMessage[] = [];
  const text = buffer.replace(/\r\n?/g, '\n');
  const blocks = text.split('\n\n');
  const rest = blocks.pop() ?? '';
  for (const block of blocks) {
    let event = 'message';
    let id: string | undefined;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue; // comments keep proxies from closing the stream
      const i = line.indexOf(':');
      const name = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (name === 'event') event = value;
      else if (name === 'data') data.push(value);
      else if (name === 'id') id = value;
    }
    if (data.length || event !== 'message') messages.push({ id, event, data: data.join('\n') });
  }
  return { messages, rest };
}

export interface CallEvent {
  id: string;
  type: string;
  occurred_at: string;
  call_id?: string;
  data: Record<string, unknown>;
}

/**
 * Follow an SSE endpoint with fetch (EventSource cannot send the Authorization header),
 * reconnecting with Last-Event-ID after a drop, until `signal` aborts or an `end` arrives.
 */
export async function follow(path: string, onMessage: (m: SSEMessage) => void, signal: AbortSignal,
                             onState: (live: boolean) => void = () => {}): Promise<void> {
  let lastId: string | undefined;
  let backoff = 500;
  while (!signal.aborted) {
    try {
      const res = await fetch(path, {
        headers: headers({ Accept: 'text/event-stream', ...(lastId ? { 'Last-Event-ID': lastId } : {}) }),
        signal,
      });
      if (!res.ok || !res.body) throw await failure(res);
      onState(true);
      backoff = 500;
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        const { messages, rest } = parseSSE(buffer);
        buffer = rest;
        for (const m of messages) {
          if (m.id) lastId = m.id;
          onMessage(m);
          if (m.event === 'end') return;
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError && (e.status === 401 || e.status === 404)) throw e;
    } finally {
      onState(false);
    }
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 10_000);
  }
}

/** The event of an SSE message of the call event streams (null for `end`, `gap`, comments). */
export function eventOf(m: SSEMessage): CallEvent | null {
  if (m.event === 'end' || m.event === 'gap' || !m.data) return null;
  try {
    return JSON.parse(m.data) as CallEvent;
  } catch {
    return null;
  }
}

export interface Call {
  id: string;
  to: string | null;
  from: string | null;
  status: string;
  direction: string;
  created_at: string;
  answered_at?: string | null;
  ended_at?: string | null;
  duration?: number | null;
  end_reason?: string | null;
  hangup_by?: string | null;
  answered_by?: string | null;
  recording?: { id: string; url?: string; duration?: number } | null;
  transcription?: { text: string; confidence: number } | null;
  gather?: Record<string, unknown> | null;
}

export const LIVE_STATUSES = ['queued', 'ringing', 'in-progress'];
export const STATUSES = ['queued', 'ringing', 'in-progress', 'completed', 'busy', 'no-answer', 'failed', 'canceled'];

/** HTTP plumbing: auth, idempotency keys, timeouts, retries with backoff, typed errors. */
import { randomUUID } from 'node:crypto';
import { APIConnectionError, APITimeoutError, CanaryError, errorFromResponse } from './errors.js';
import { RETRY_STATUSES, backoffDelay, sleep } from './retry.js';
import type { Query } from './pagination.js';
import type { RequestOptions } from './types.js';
import { VERSION } from './version.js';

export const DEFAULT_BASE_URL = 'https://api.canarymsg.dev';
export const DEFAULT_TIMEOUT = 30_000; // ms
export const DEFAULT_MAX_RETRIES = 2;

export interface ClientOptions {
  /** Defaults to the CANARY_API_KEY environment variable. */
  apiKey?: string;
  /** Defaults to the CANARY_API_URL environment variable, then https://api.canarymsg.dev. */
  baseURL?: string;
  /** Per-request timeout in milliseconds (default 30000). */
  timeout?: number;
  /** Retries on 429/503 and network errors (never on other 4xx). Default 2. */
  maxRetries?: number;
  defaultHeaders?: Record<string, string>;
  /** A fetch implementation (default: the global fetch). */
  fetch?: typeof fetch;
}

export interface RawRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  query?: Query;
  body?: unknown;
  options?: RequestOptions;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

const env = (name: string): string | undefined =>
  typeof process !== 'undefined' && process.env ? process.env[name] || undefined : undefined;

export function seg(value: string): string {
  if (typeof value !== 'string' || value === '') {
    throw new CanaryError(`expected a non-empty id string, got ${JSON.stringify(value)}`);
  }
  return encodeURIComponent(value);
}

function headersToObject(h: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  h.forEach((v, k) => {
    out[k.toLowerCase()] = v;
  });
  return out;
}

export class Transport {
  readonly apiKey: string;
  readonly baseURL: string;
  readonly timeout: number;
  readonly maxRetries: number;
  private readonly defaultHeaders: Record<string, string>;
  private readonly fetchImpl: typeof fetch;

  constructor(opts: ClientOptions) {
    const apiKey = opts.apiKey ?? env('CANARY_API_KEY');
    if (!apiKey) {
      throw new CanaryError("no API key: pass new Canary('sk_...') or set the CANARY_API_KEY environment variable");
    }
    this.apiKey = apiKey;
    this.baseURL = (opts.baseURL ?? env('CANARY_API_URL') ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    this.timeout = opts.timeout ?? DEFAULT_TIMEOUT;
    this.maxRetries = opts.maxRetries ?? DEFAULT_MAX_RETRIES;
    if (!(this.maxRetries >= 0)) throw new RangeError('maxRetries must be >= 0');
    this.defaultHeaders = { ...(opts.defaultHeaders ?? {}) };
    const f = opts.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') throw new CanaryError('no fetch available: use Node 18+ or pass options.fetch');
    this.fetchImpl = f;
  }

  buildURL(path: string, query?: Query): string {
    const url = new URL(/^https?:\/\//.test(path) ? path : this.baseURL + path);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    }
    return url.toString();
  }

  private sameOrigin(url: string): boolean {
    return new URL(url).origin === new URL(this.baseURL).origin;
  }

  /** Send with retries; resolves with the successful response, throws a CanaryError otherwise. */
  async send(req: RawRequest): Promise<RawResponse> {
    const opts = req.options ?? {};
    const url = this.buildURL(req.path, req.query);
    const headers: Record<string, string> = {
      'User-Agent': `canary-node/${VERSION} (node ${typeof process !== 'undefined' ? process.version : '?'})`,
      Accept: 'application/json',
    };
    if (this.sameOrigin(url)) headers.Authorization = `Bearer ${this.apiKey}`; // never to a third-party media host
    Object.assign(headers, this.defaultHeaders);
    let payload: string | undefined;
    if (req.body !== undefined || opts.extraBody) {
      const body = { ...((req.body as Record<string, unknown>) ?? {}), ...(opts.extraBody ?? {}) };
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    // the same key on every retry: a retried create never places two calls
    if (req.method === 'POST') headers['Idempotency-Key'] = opts.idempotencyKey ?? randomUUID();
    Object.assign(headers, opts.headers ?? {});

    const timeout = opts.timeout ?? this.timeout;
    const maxRetries = opts.maxRetries ?? this.maxRetries;
    for (let retry = 0; ; retry++) {
      let res: RawResponse;
      try {
        res = await this.attempt(url, req.method, headers, payload, timeout, opts.signal);
      } catch (err) {
        if (opts.signal?.aborted) throw new APIConnectionError('request aborted', { cause: err });
        const timedOut = err instanceof APITimeoutError;
        if (retry < maxRetries) {
          await sleep(backoffDelay(retry) ?? 0);
          continue;
        }
        if (timedOut) throw err;
        throw new APIConnectionError(`could not reach the API: ${(err as Error)?.message ?? err}`, { cause: err });
      }
      if (RETRY_STATUSES.has(res.status) && retry < maxRetries) {
        const delay = backoffDelay(retry, res.headers['retry-after']);
        if (delay !== null) {
          await sleep(delay);
          continue;
        }
      }
      if (res.status >= 400) throw errorFromResponse(res.status, res.headers, res.body.toString('utf8'));
      return res;
    }
  }

  private async attempt(
    url: string,
    method: string,
    headers: Record<string, string>,
    body: string | undefined,
    timeout: number,
    signal?: AbortSignal,
  ): Promise<RawResponse> {
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeout);
    const onAbort = () => controller.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const response = await this.fetchImpl(url, { method, headers, body, signal: controller.signal, redirect: 'follow' });
      const buf = Buffer.from(await response.arrayBuffer()); // the timeout covers the body too
      return { status: response.status, headers: headersToObject(response.headers), body: buf };
    } catch (err) {
      if (timedOut) throw new APITimeoutError(`request timed out after ${timeout} ms: ${method} ${url}`, { cause: err });
      throw err;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Open a streaming GET (Server-Sent Events): the live response, or the typed error for a 4xx/5xx. */
  async openStream(path: string, query: Query, extra: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    const url = this.buildURL(path, query);
    const headers: Record<string, string> = {
      'User-Agent': `canary-node/${VERSION} (node ${typeof process !== 'undefined' ? process.version : '?'})`,
      Authorization: `Bearer ${this.apiKey}`,
      ...this.defaultHeaders,
      Accept: 'text/event-stream',
      ...extra,
    };
    const res = await this.fetchImpl(url, { method: 'GET', headers, signal, redirect: 'follow' });
    if (res.status >= 400) throw errorFromResponse(res.status, headersToObject(res.headers), await res.text());
    return res;
  }

  /** Send and parse the JSON body (null for an empty body). */
  async request<T>(req: RawRequest): Promise<T> {
    const res = await this.send(req);
    if (res.status === 204 || res.body.length === 0) return null as T;
    const text = res.body.toString('utf8');
    try {
      return JSON.parse(text) as T;
    } catch {
      return text as unknown as T;
    }
  }
}

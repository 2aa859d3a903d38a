/** Typed errors. Everything the SDK throws is a `CanaryError`. */

export interface CanaryErrorOptions {
  code?: string | null;
  field?: string | null;
  status?: number | null;
  headers?: Record<string, string>;
  body?: unknown;
  cause?: unknown;
}

export class CanaryError extends Error {
  /** The API's machine-readable error code, e.g. `invalid_phone_number`. */
  readonly code: string | null;
  /** The request field the error refers to, or null. */
  readonly field: string | null;
  /** HTTP status; null when no response was received. */
  readonly status: number | null;
  readonly headers: Record<string, string>;
  readonly body: unknown;

  constructor(message: string, opts: CanaryErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = opts.code ?? null;
    this.field = opts.field ?? null;
    this.status = opts.status ?? null;
    this.headers = opts.headers ?? {};
    this.body = opts.body;
  }

  get requestId(): string | null {
    return this.headers['x-request-id'] ?? null;
  }
}

/** The API could not be reached (DNS, refused connection, reset, ...). */
export class APIConnectionError extends CanaryError {}
/** The request timed out. */
export class APITimeoutError extends APIConnectionError {}
/** The API answered with an error status. */
export class APIError extends CanaryError {}
/** 400, 413, 415, 422: the request was rejected; see `code` and `field`. */
export class InvalidRequestError extends APIError {}
/** 401: missing or invalid API key. */
export class AuthenticationError extends APIError {}
/** 403: the key may not do this. */
export class PermissionDeniedError extends APIError {}
/** 404: no such resource in your account. */
export class NotFoundError extends APIError {}
/** 409: e.g. an Idempotency-Key reused with a different body. */
export class ConflictError extends APIError {}
/** 429: too many requests. */
export class RateLimitError extends APIError {
  /** The server's Retry-After hint in seconds, or null. */
  get retryAfter(): number | null {
    return parseRetryAfter(this.headers['retry-after']);
  }
}
/** 5xx other than 503. */
export class InternalServerError extends APIError {}
/** 503: the API could not accept the request right now. */
export class ServiceUnavailableError extends APIError {
  get retryAfter(): number | null {
    return parseRetryAfter(this.headers['retry-after']);
  }
}
/** A webhook's Canary-Signature header did not verify. */
export class WebhookVerificationError extends CanaryError {}

/** Seconds from a Retry-After header (delta-seconds or HTTP-date), or null. */
export function parseRetryAfter(value: string | null | undefined): number | null {
  if (value == null) return null;
  const v = value.trim();
  if (v === '') return null;
  const n = Number(v);
  if (Number.isFinite(n)) return Math.max(0, n);
  const date = Date.parse(v);
  if (Number.isNaN(date)) return null;
  return Math.max(0, (date - Date.now()) / 1000);
}

const BY_STATUS: Record<number, typeof APIError> = {
  400: InvalidRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: InvalidRequestError,
  415: InvalidRequestError,
  422: InvalidRequestError,
  429: RateLimitError,
  503: ServiceUnavailableError,
};

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : v == null ? null : String(v);
}

/** Build the typed error for an error response (any of the usual error body shapes). */
export function errorFromResponse(status: number, headers: Record<string, string>, text: string): APIError {
  let body: unknown = text || null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  let message: string | null = null;
  let code: string | null = null;
  let field: string | null = null;
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    const b = body as Record<string, unknown>;
    const err = b.error;
    if (err && typeof err === 'object') {
      const e = err as Record<string, unknown>;
      message = str(e.message);
      code = str(e.code);
      field = str(e.field);
    } else if (typeof err === 'string') {
      message = err;
    } else if ('title' in b || ('detail' in b && !Array.isArray(b.detail))) {
      message = str(b.detail) ?? str(b.title);
      code = str(b.code) ?? str(b.type);
      field = str(b.field);
    } else if (Array.isArray(b.detail) && b.detail.length) {
      const first = b.detail[0] as Record<string, unknown>;
      message = str(first?.msg);
      code = str(first?.type);
      const loc = Array.isArray(first?.loc) ? (first.loc as unknown[]).map(String) : [];
      field = loc.filter((p) => !['body', 'query', 'path'].includes(p)).join('.') || null;
    }
  } else if (typeof body === 'string') {
    message = body.slice(0, 500);
  }
  const Cls = BY_STATUS[status] ?? (status >= 500 ? InternalServerError : status >= 400 ? InvalidRequestError : APIError);
  const msg = message || `HTTP ${status}`;
  const shown = `${status}${code ? ' ' + code : ''}: ${msg}${field ? ` (field: ${field})` : ''}`;
  const error = new Cls(shown, { code, field, status, headers, body });
  return error;
}

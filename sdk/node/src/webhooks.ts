/**
 * Webhook signature verification.
 *
 * Every webhook carries `Canary-Signature: t=<unix seconds>,v1=<hex>`, where `<hex>` is
 * the HMAC-SHA256, keyed with your webhook secret, of `"<t>.<raw body>"`. During a secret
 * rotation the header may carry several `v1=` values; one match is enough.
 *
 *     const event = canary.webhooks.verify(rawBody, req.headers['canary-signature'], secret);
 *
 * Pass the raw body exactly as received (string or Buffer), not re-serialized JSON.
 *
 * Anything wrong with the header (missing, not a string, longer than `MAX_HEADER_LENGTH`
 * characters, no timestamp, a timestamp that is not 1-12 ASCII digits, no non-empty `v1`,
 * no `v1` that matches) throws `WebhookVerificationError`, never another error. So does
 * a `tolerance` that is not a finite number of seconds >= 0 (NaN, Infinity, negative, a
 * string: code `tolerance_invalid`), so a misconfigured tolerance refuses every webhook
 * instead of switching the replay check off; `null` is the only way to skip the age check.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { WebhookVerificationError } from './errors.js';

export const SIGNATURE_HEADER = 'Canary-Signature';
export const DEFAULT_TOLERANCE = 300; // seconds
/** Longer headers are malformed (a real one is ~80 characters, ~70 more per extra `v1`). */
export const MAX_HEADER_LENGTH = 8192;

export type WebhookPayload = string | Uint8Array;

function toBuffer(payload: WebhookPayload): Buffer {
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  if (payload instanceof Uint8Array) return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  throw new TypeError('payload must be the raw request body (string or Buffer)');
}

/** The hex `v1` signature of `payload` at `timestamp` (unix seconds). */
export function sign(payload: WebhookPayload, secret: string, timestamp: number): string {
  return createHmac('sha256', secret)
    .update(Buffer.concat([Buffer.from(`${Math.trunc(timestamp)}.`), toBuffer(payload)]))
    .digest('hex');
}

/** A `Canary-Signature` header value (useful to test your webhook handler). */
export function generateHeader(payload: WebhookPayload, secret: string, timestamp?: number): string {
  const t = Math.trunc(timestamp ?? Date.now() / 1000);
  return `t=${t},v1=${sign(payload, secret, t)}`;
}

function parseHeader(header: string | string[] | null | undefined): { timestamp: number; signatures: string[] } {
  const value = Array.isArray(header) ? header.join(',') : header;
  if (typeof value !== 'string' || value.trim() === '') {
    throw new WebhookVerificationError('missing Canary-Signature header', { code: 'signature_missing' });
  }
  if (value.length > MAX_HEADER_LENGTH) {
    throw new WebhookVerificationError('Canary-Signature header too long', { code: 'signature_malformed' });
  }
  let timestamp: number | null = null;
  const signatures: string[] = [];
  for (const part of value.split(',')) {
    const trimmed = part.trim();
    const eq = trimmed.indexOf('=');
    if (eq < 0) continue;
    const key = trimmed.slice(0, eq).trim();
    const val = trimmed.slice(eq + 1).trim();
    if (key === 't') {
      if (!/^[0-9]{1,12}$/.test(val)) {
        throw new WebhookVerificationError('malformed timestamp in Canary-Signature header', {
          code: 'signature_malformed',
        });
      }
      timestamp = Number(val);
    } else if (key === 'v1' && val !== '') {
      signatures.push(val);
    }
  }
  if (timestamp === null) {
    throw new WebhookVerificationError('no timestamp in Canary-Signature header', { code: 'signature_malformed' });
  }
  if (signatures.length === 0) {
    throw new WebhookVerificationError('no v1 signature in Canary-Signature header', { code: 'signature_malformed' });
  }
  return { timestamp, signatures };
}

function checkTolerance(tolerance: unknown): number {
  if (typeof tolerance !== 'number' || !Number.isFinite(tolerance) || tolerance < 0) {
    throw new WebhookVerificationError(
      `tolerance must be a finite number of seconds >= 0 (or null to skip the age check), not ${describe(tolerance)}`,
      { code: 'tolerance_invalid' },
    );
  }
  return tolerance;
}

function checkNow(now: unknown): number {
  if (typeof now !== 'number' || !Number.isFinite(now)) {
    throw new WebhookVerificationError(`now must be finite unix seconds, not ${describe(now)}`, { code: 'now_invalid' });
  }
  return now;
}

function describe(value: unknown): string {
  try {
    return typeof value === 'string' ? JSON.stringify(value) : String(value);
  } catch {
    return typeof value;
  }
}

function safeEqual(expectedHex: string, candidate: string): boolean {
  const a = Buffer.from(expectedHex, 'utf8');
  const b = Buffer.from(candidate, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Check a webhook's signature and return its parsed JSON body.
 *
 * Throws `WebhookVerificationError` when the header is missing or malformed, no signature
 * matches, or the timestamp is more than `tolerance` seconds away from `now` (unix
 * seconds, default the clock). `tolerance = null` disables the age check; a tolerance
 * that is not a finite number >= 0 (NaN, Infinity, negative) throws (code
 * `tolerance_invalid`), whatever the header, rather than accept anything.
 */
export function verify<T = unknown>(
  payload: WebhookPayload,
  header: string | string[] | null | undefined,
  secret: string,
  tolerance: number | null = DEFAULT_TOLERANCE,
  now?: number,
): T {
  const maxAge = tolerance === null || tolerance === undefined ? null : checkTolerance(tolerance);
  const clock = now === undefined ? undefined : checkNow(now);
  if (!secret) throw new WebhookVerificationError('missing webhook secret', { code: 'secret_missing' });
  const body = toBuffer(payload);
  const { timestamp, signatures } = parseHeader(header);
  const expected = sign(body, secret, timestamp);
  if (!signatures.some((s) => safeEqual(expected, s))) {
    throw new WebhookVerificationError('no signature matches the payload', { code: 'signature_mismatch' });
  }
  if (maxAge !== null) {
    const current = clock ?? Date.now() / 1000;
    if (Math.abs(current - timestamp) > maxAge) {
      throw new WebhookVerificationError('timestamp outside the tolerance window', {
        code: 'timestamp_out_of_tolerance',
      });
    }
  }
  const text = body.toString('utf8');
  try {
    return JSON.parse(text) as T;
  } catch {
    return text as unknown as T;
  }
}

export const webhooks = { verify, sign, generateHeader, SIGNATURE_HEADER, DEFAULT_TOLERANCE, MAX_HEADER_LENGTH };
export type Webhooks = typeof webhooks;

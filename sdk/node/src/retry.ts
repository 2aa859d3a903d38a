import { parseRetryAfter } from './errors.js';

export const RETRY_STATUSES = new Set([429, 503]);
export const INITIAL_DELAY = 0.5; // seconds
export const MAX_DELAY = 8;
/** A longer Retry-After is not waited for: the error is thrown instead. */
export const MAX_RETRY_AFTER = 60;

/**
 * Seconds to wait before retry number `retryIndex` (0-based), or null to give up.
 * The server's Retry-After wins; otherwise exponential backoff (0.5s, 1s, 2s, ... capped
 * at 8s) with jitter in [50%, 100%] of that value.
 */
export function backoffDelay(retryIndex: number, retryAfter?: string | null): number | null {
  const hinted = parseRetryAfter(retryAfter);
  if (hinted !== null) return hinted > MAX_RETRY_AFTER ? null : hinted;
  const base = Math.min(MAX_DELAY, INITIAL_DELAY * 2 ** retryIndex);
  return base * (0.5 + Math.random() / 2);
}

export const sleep = (seconds: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, Math.max(0, seconds * 1000)));

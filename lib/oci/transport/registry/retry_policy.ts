// When and how long to wait before trying a registry request again: connection failures, 5xx and 429
// are retried with exponential backoff (with jitter), a server's Retry-After is honoured (capped).

export interface RetryPolicy {
  /** Total attempts, the first included (≥ 1). */
  tries: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Longest Retry-After we agree to wait; longer ones are cut to this. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRIES = 4;

export function retryPolicy(retries = DEFAULT_RETRIES, baseDelayMs = 250): RetryPolicy {
  return { tries: Math.max(1, retries + 1), baseDelayMs, maxDelayMs: 10_000, maxRetryAfterMs: 60_000 };
}

export function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 500 || status === 502 || status === 503 || status === 504;
}

/** Retry-After as milliseconds from now: delta-seconds or an HTTP date; undefined when absent/invalid. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

/** Delay before attempt number `attempt + 1` (attempt counts from 1 for the first failure). */
export function backoffDelay(policy: RetryPolicy, attempt: number, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.maxRetryAfterMs);
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp * (0.75 + Math.random() * 0.5));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

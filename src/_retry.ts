/**
 * Retrying with exponential backoff and full jitter, where every wait ends
 * as soon as the caller's signal aborts.
 *
 * cockatiel computes the delays; the loop is ours because cockatiel's retry
 * policy sleeps without observing the signal, which would hold up shutdown
 * for as long as the current delay.
 *
 * @module
 */
import {
  ExponentialBackoff,
  fullJitterGenerator,
  type IBackoff,
} from "cockatiel";

/**
 * One retry about to happen, as reported to `onRetry`.
 *
 * @example Watch the retries of a connection that comes up late
 * ```ts
 * import { connectWithRetry, type RetryEvent } from "@dataexchange/streams/kafka";
 *
 * const retries: RetryEvent[] = [];
 * let calls = 0;
 * await connectWithRetry(
 *   () => ++calls < 2 ? Promise.reject(new Error("refused")) : Promise.resolve(),
 *   ["127.0.0.1:9092"],
 *   { onRetry: (event) => retries.push(event) },
 * );
 * const [first] = retries;
 * console.log(first.attempt, first.delayMs <= 250, String(first.error)); // 1 true Error: refused
 * ```
 */
export interface RetryEvent {
  /** 1 for the first retry. */
  attempt: number;
  /** How long the wait before it is, in milliseconds. */
  delayMs: number;
  /** What the failed attempt threw. */
  error: unknown;
}

/** Options of {@linkcode retryWithBackoff}. */
export interface RetryOptions {
  /** Stops retrying and ends any wait; the call then rejects with its reason. */
  signal?: AbortSignal;
  /** Upper bound of the first delay, in milliseconds. Default 100. */
  initialDelayMs?: number;
  /** Upper bound of any delay, in milliseconds. Default 30000. */
  maxDelayMs?: number;
  /** Attempts in all, the first one included. Default unlimited. */
  maxAttempts?: number;
  /** Whether an error is worth another attempt. Default: every error. */
  shouldRetry?: (error: unknown) => boolean;
  /** Called before each wait, for logging and counting. */
  onRetry?: (event: RetryEvent) => void;
}

/**
 * Calls `fn` until it resolves, waiting between attempts with exponential
 * backoff and full jitter.
 *
 * @param fn The operation; it receives the attempt number, from 0.
 * @param options Limits, filter, callback and signal.
 * @returns What `fn` resolved with.
 * @throws The last error when it is not retried or attempts run out; the
 *   signal's reason when it aborts.
 */
export async function retryWithBackoff<T>(
  fn: (attempt: number) => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const { signal } = options;
  const maxAttempts = options.maxAttempts ?? Infinity;
  const factory = new ExponentialBackoff({
    generator: fullJitterGenerator,
    initialDelay: options.initialDelayMs ?? 100,
    maxDelay: options.maxDelayMs ?? 30000,
  });
  let backoff: IBackoff<unknown> | undefined;
  for (let attempt = 0;; attempt++) {
    signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (error) {
      signal?.throwIfAborted();
      const retry = attempt + 1 < maxAttempts &&
        (options.shouldRetry?.(error) ?? true);
      if (!retry) throw error;
      backoff = backoff ? backoff.next(undefined) : factory.next();
      const delayMs = backoff.duration;
      options.onRetry?.({ attempt: attempt + 1, delayMs, error });
      await abortableDelay(delayMs, signal);
    }
  }
}

/**
 * Waits `ms` milliseconds, or less if `signal` aborts, in which case it
 * rejects with the signal's reason. The timer is always cleared.
 *
 * @param ms How long to wait.
 * @param signal Ends the wait early.
 */
export function abortableDelay(
  ms: number,
  signal?: AbortSignal,
): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A circuit breaker for Kafka produce requests, on cockatiel's, and the
 * retry loop that goes through it.
 *
 * cockatiel's breaker only refuses calls while it is open (with
 * `BrokenCircuitError`) and moves to half-open lazily, on the first call
 * after `halfOpenAfter`. The producer has nothing better to do than wait for
 * that moment, so {@linkcode SendBreaker.execute} waits for it, abortably,
 * instead of failing; and {@linkcode retryThroughBreaker} retries with
 * exponential backoff while the breaker is closed, and at the pace of the
 * breaker (one probe per `halfOpenAfterMs`) once it has opened.
 *
 * @module
 */
import {
  circuitBreaker,
  type CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  fullJitterGenerator,
  handleWhen,
  type IBackoff,
  isBrokenCircuitError,
} from "cockatiel";
import { abortableDelay, type RetryEvent } from "../_retry.ts";

/**
 * The state of a circuit breaker.
 *
 * @example Readiness from the breaker's state
 * ```ts
 * import type { BreakerState } from "@dataexchange/streams/kafka";
 *
 * function ready(state: BreakerState): boolean {
 *   return state !== "open";
 * }
 * console.log(ready("closed"), ready("half-open"), ready("open")); // true true false
 * ```
 */
export type BreakerState = "closed" | "open" | "half-open";

/**
 * A change of a breaker's state, as reported to `onStateChange`.
 *
 * @example Feed the breaker's changes to the metrics
 * ```ts
 * import type { BreakerStateChange } from "@dataexchange/streams/kafka";
 * import { BridgeMetrics } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: ["telemetry"] });
 * function onBreakerStateChange(change: BreakerStateChange): void {
 *   metrics.setBreakerState(change.state);
 *   if (change.state === "open") {
 *     console.log(`Kafka held down after ${change.previous}: ${change.error}`);
 *   }
 * }
 *
 * // What a KafkaSink reports when produce requests keep failing:
 * onBreakerStateChange({
 *   state: "open",
 *   previous: "closed",
 *   error: new Error("broker down"),
 * }); // Kafka held down after closed: Error: broker down
 * console.log(metrics.snapshot().breakerState); // open
 * ```
 */
export interface BreakerStateChange {
  /** The new state. */
  state: BreakerState;
  /** The state before. */
  previous: BreakerState;
  /** With `state: "open"`: the failure that opened it. */
  error?: unknown;
}

/** Options of {@linkcode SendBreaker}. */
export interface SendBreakerOptions {
  /** Consecutive counted failures that open the breaker. */
  threshold: number;
  /** How long the breaker stays open before it lets one probe through, in ms. */
  halfOpenAfterMs: number;
  /**
   * Whether a failure counts towards opening. Failures that do not count
   * (a record Kafka refuses) pass through and, in half-open, close it: Kafka
   * answered.
   */
  counts: (error: unknown) => boolean;
  /** Called on each change of state. */
  onStateChange?: (change: BreakerStateChange) => void;
}

const STATES: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: "closed",
  [CircuitState.Open]: "open",
  [CircuitState.HalfOpen]: "half-open",
  // Never entered: nothing here calls `isolate()`.
  [CircuitState.Isolated]: "open",
};

/**
 * A consecutive-failures circuit breaker whose `execute` waits while it is
 * open instead of refusing.
 */
export class SendBreaker {
  readonly #policy: CircuitBreakerPolicy;
  readonly #halfOpenAfterMs: number;
  #state: BreakerState = "closed";
  #openedAt = 0;

  /** @param options Threshold, open time, failure filter and callback. */
  constructor(options: SendBreakerOptions) {
    positive("threshold", options.threshold);
    positive("halfOpenAfterMs", options.halfOpenAfterMs);
    this.#halfOpenAfterMs = options.halfOpenAfterMs;
    this.#policy = circuitBreaker(handleWhen(options.counts), {
      halfOpenAfter: options.halfOpenAfterMs,
      breaker: new ConsecutiveBreaker(options.threshold),
    });
    let lastFailure: unknown;
    this.#policy.onBreak((reason) => {
      lastFailure = "error" in reason ? reason.error : undefined;
    });
    this.#policy.onStateChange((circuit) => {
      const previous = this.#state;
      this.#state = STATES[circuit];
      // cockatiel set its own opening time just before; this one is never
      // earlier, so a wait computed from it never ends too soon.
      if (this.#state === "open") this.#openedAt = Date.now();
      options.onStateChange?.({
        state: this.#state,
        previous,
        ...(this.#state === "open" ? { error: lastFailure } : {}),
      });
    });
  }

  /** The current state. */
  get state(): BreakerState {
    return this.#state;
  }

  /** Milliseconds until an open breaker lets a probe through; 0 otherwise. */
  get msUntilHalfOpen(): number {
    if (this.#state !== "open") return 0;
    return Math.max(0, this.#openedAt + this.#halfOpenAfterMs - Date.now());
  }

  /**
   * Runs `fn` once through the breaker. While the breaker is open, first
   * waits until it lets a probe through.
   *
   * @param fn The call to protect.
   * @param signal Ends a wait early; the call then rejects with its reason.
   * @returns What `fn` resolved with.
   * @throws What `fn` threw; the signal's reason when it aborts.
   */
  async execute<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    while (true) {
      signal?.throwIfAborted();
      const wait = this.msUntilHalfOpen;
      if (wait > 0) await abortableDelay(wait, signal);
      try {
        return await this.#policy.execute(fn, signal);
      } catch (error) {
        if (!isBrokenCircuitError(error)) throw error;
        // Refused at the very edge of the open time: wait that out too.
        await abortableDelay(1, signal);
      }
    }
  }
}

/** A retry about to happen, with the breaker's state after the failure. */
export interface BreakerRetryEvent extends RetryEvent {
  /** The breaker's state after the failed attempt. */
  breakerState: BreakerState;
}

/** Options of {@linkcode retryThroughBreaker}. */
export interface RetryThroughBreakerOptions {
  /** Stops retrying and ends any wait; the call then rejects with its reason. */
  signal?: AbortSignal;
  /** Upper bound of the first delay while the breaker is closed, in ms. */
  initialDelayMs: number;
  /** Upper bound of any delay while the breaker is closed, in ms. */
  maxDelayMs: number;
  /** Whether an error is worth another attempt. Default: every error. */
  shouldRetry?: (error: unknown) => boolean;
  /** Called before each wait, for logging and counting. */
  onRetry?: (event: BreakerRetryEvent) => void;
}

/**
 * Calls `fn` through `breaker` until it resolves. After a failure the wait
 * is exponential with full jitter while the breaker is closed; once it is
 * open, the wait is what is left of its open time, so a broker that stays
 * down gets one request per `halfOpenAfterMs` and no more.
 *
 * @param breaker The breaker to go through.
 * @param fn The operation; it receives the attempt number, from 0.
 * @param options Delays, filter, callback and signal.
 * @returns What `fn` resolved with.
 * @throws The error when it is not retried; the signal's reason when it aborts.
 */
export async function retryThroughBreaker<T>(
  breaker: SendBreaker,
  fn: (attempt: number) => Promise<T>,
  options: RetryThroughBreakerOptions,
): Promise<T> {
  const { signal } = options;
  const factory = new ExponentialBackoff({
    generator: fullJitterGenerator,
    initialDelay: options.initialDelayMs,
    maxDelay: options.maxDelayMs,
  });
  let backoff: IBackoff<unknown> | undefined;
  for (let attempt = 0;; attempt++) {
    try {
      return await breaker.execute(() => fn(attempt), signal);
    } catch (error) {
      signal?.throwIfAborted();
      if (!(options.shouldRetry?.(error) ?? true)) throw error;
      let delayMs: number;
      if (breaker.state === "open") {
        delayMs = breaker.msUntilHalfOpen;
      } else {
        backoff = backoff ? backoff.next(undefined) : factory.next();
        delayMs = backoff.duration;
      }
      options.onRetry?.({
        attempt: attempt + 1,
        delayMs,
        error,
        breakerState: breaker.state,
      });
      await abortableDelay(delayMs, signal);
    }
  }
}

function positive(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(
      `SendBreaker ${name} must be a positive integer, got ${value}`,
    );
  }
}

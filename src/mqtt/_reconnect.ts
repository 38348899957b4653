/**
 * Reconnection of an MQTT.js client with exponential backoff and full
 * jitter, capped, in place of MQTT.js's fixed `reconnectPeriod`.
 *
 * MQTT.js must never reconnect by itself: create the client with
 * `reconnectPeriod: 0`, or with {@linkcode NEVER_RECONNECT_PERIOD_MS} (see
 * below). After each lost connection or failed attempt (MQTT.js emits
 * `close` for both), {@linkcode keepConnected} waits a random time below a
 * bound that doubles from `initialDelayMs` up to `maxDelayMs`, then calls
 * `client.reconnect()` with the client's own message stores, so that the
 * publishes MQTT.js keeps unacknowledged are sent again on the new
 * connection (a bare `reconnect()` would replace them with empty stores). A
 * connection that comes up (`connect`, after a successful CONNACK) starts the
 * bound again from `initialDelayMs`.
 *
 * What MQTT.js does itself on a new connection is unchanged: it emits
 * `packetreceive` for the CONNACK (the PUBACK gate counts connections from
 * it) and `connect`. Two MQTT.js behaviours depend on `reconnectPeriod: 0`,
 * and the caller must make up for them:
 * - MQTT.js does not record its subscriptions for `resubscribe` (it only
 *   does so when the period is positive), so a subscriber must subscribe
 *   again when a CONNACK says the broker has no session for it;
 * - on a clean session, a close that MQTT.js forces (keepalive or CONNACK
 *   timeout) fails the callbacks of every unacknowledged publish with
 *   "Connection closed", although the publishes stay stored and are sent
 *   again. A publisher that resolves writes on PUBACK uses
 *   {@linkcode NEVER_RECONNECT_PERIOD_MS} instead: MQTT.js then believes it
 *   reconnects, keeps the callbacks, and arms a timer that every attempt of
 *   {@linkcode keepConnected} clears long before it fires.
 *
 * @module
 */
import type { MqttClient } from "mqtt";
import {
  ExponentialBackoff,
  fullJitterGenerator,
  type IBackoff,
} from "cockatiel";
import { abortableDelay } from "../_retry.ts";

/**
 * A `reconnectPeriod` for MQTT.js that never elapses while
 * {@linkcode keepConnected} runs: the largest timer delay (about 24.8 days),
 * far above any `maxDelayMs`. MQTT.js clears its timer on each attempt.
 */
export const NEVER_RECONNECT_PERIOD_MS = 2 ** 31 - 1;

/** One reconnection attempt about to be made, as reported to `onAttempt`. */
export interface ReconnectAttempt {
  /** 1 for the first attempt after a connection was lost or refused. */
  attempt: number;
  /** How long the wait before it is, in milliseconds. */
  delayMs: number;
  /** The last error the client reported since the previous attempt, if any. */
  error: unknown;
}

/** Options of {@linkcode keepConnected}. */
export interface KeepConnectedOptions {
  /** Upper bound of the first wait, in milliseconds. */
  initialDelayMs: number;
  /** Upper bound of any wait, in milliseconds. */
  maxDelayMs: number;
  /** Called before each wait, for logging and counting. */
  onAttempt?: (attempt: ReconnectAttempt) => void;
}

/** What {@linkcode keepConnected} uses of an MQTT.js client. */
export type ReconnectableClient = Pick<
  MqttClient,
  | "connected"
  | "disconnecting"
  | "reconnect"
  | "on"
  | "off"
  | "incomingStore"
  | "outgoingStore"
>;

/**
 * Reconnects `client` whenever its connection is lost or an attempt fails,
 * until the returned handle is disposed. A close that the client itself
 * initiated (`end()`, or the `end()` inside `client.reconnect()` while
 * connected) is left alone: `client.disconnecting` is set then.
 *
 * @param client An MQTT.js client created with `reconnectPeriod: 0` or
 *   {@linkcode NEVER_RECONNECT_PERIOD_MS}.
 * @param options Delays and the attempt callback.
 * @returns A handle whose disposal stops reconnecting and ends a pending wait.
 * @throws {RangeError} When a delay is not a positive integer, the first is
 *   above the largest, or the largest is above 24 hours.
 */
export function keepConnected(
  client: ReconnectableClient,
  options: KeepConnectedOptions,
): Disposable {
  const { initialDelayMs, maxDelayMs } = options;
  positive("initialDelayMs", initialDelayMs);
  positive("maxDelayMs", maxDelayMs);
  if (maxDelayMs > MAX_DELAY_LIMIT_MS) {
    throw new RangeError(
      `keepConnected maxDelayMs must be at most ${MAX_DELAY_LIMIT_MS} (24 hours), got ${maxDelayMs}`,
    );
  }
  if (initialDelayMs > maxDelayMs) {
    throw new RangeError(
      `keepConnected initialDelayMs (${initialDelayMs}) must not exceed maxDelayMs (${maxDelayMs})`,
    );
  }

  const factory = new ExponentialBackoff({
    generator: fullJitterGenerator,
    initialDelay: initialDelayMs,
    maxDelay: maxDelayMs,
  });
  const stopped = new AbortController();
  let backoff: IBackoff<unknown> | undefined;
  let attempt = 0;
  let lastError: unknown;
  let pending: AbortController | undefined;

  const onClose = () => {
    if (stopped.signal.aborted || client.disconnecting || pending) return;
    attempt++;
    backoff = backoff ? backoff.next(undefined) : factory.next();
    const delayMs = backoff.duration;
    options.onAttempt?.({ attempt, delayMs, error: lastError });
    lastError = undefined;
    const wait = new AbortController();
    pending = wait;
    abortableDelay(delayMs, AbortSignal.any([stopped.signal, wait.signal]))
      .then(() => {
        pending = undefined;
        if (client.connected || client.disconnecting) return;
        client.reconnect({
          incomingStore: client.incomingStore,
          outgoingStore: client.outgoingStore,
        });
      }, () => {
        // Disposed, or an attempt was started elsewhere: nothing to do.
        if (pending === wait) pending = undefined;
      });
  };
  // An attempt started by someone else (MQTT.js's `reconnect()` emits this
  // before connecting) makes the pending one redundant.
  const onReconnect = () => {
    pending?.abort();
    pending = undefined;
  };
  const onConnect = () => {
    attempt = 0;
    backoff = undefined;
    lastError = undefined;
  };
  const onError = (error: Error) => lastError = error;

  client.on("close", onClose);
  client.on("reconnect", onReconnect);
  client.on("connect", onConnect);
  client.on("error", onError);
  return {
    [Symbol.dispose]() {
      stopped.abort();
      client.off("close", onClose);
      client.off("reconnect", onReconnect);
      client.off("connect", onConnect);
      client.off("error", onError);
    },
  };
}

/** Largest `maxDelayMs`: far below {@linkcode NEVER_RECONNECT_PERIOD_MS}. */
const MAX_DELAY_LIMIT_MS = 24 * 60 * 60 * 1000;

function positive(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(
      `keepConnected ${name} must be a positive integer, got ${value}`,
    );
  }
}

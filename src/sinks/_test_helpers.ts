/**
 * Envelopes and sinks for the unit tests of this folder, settled by hand.
 *
 * @module
 */
import {
  type CloudEvent,
  CloudEventError,
  createCloudEvent,
} from "../cloudevents/mod.ts";
import type { Envelope } from "../envelope.ts";
import type { EventSink } from "./sink.ts";

/** How an envelope was settled, in order. */
export type Settlement = "ack" | { nack: unknown };

/** An envelope that records its settlements. */
export type RecordingEnvelope = Envelope<number> & {
  readonly settlements: Settlement[];
};

/** A test event numbered `n` (its id is `e<n>`). */
export function testEvent(n: number): CloudEvent {
  return createCloudEvent({
    id: `e${n}`,
    source: "/test",
    type: "t",
    data: { n },
  });
}

/** An event envelope that records how it is settled. */
export function eventEnvelope(n: number): RecordingEnvelope {
  const settlements: Settlement[] = [];
  return {
    kind: "event",
    event: testEvent(n),
    message: n,
    receivedAt: 0,
    settlements,
    ack: () => settlements.push("ack"),
    nack: (reason) => settlements.push({ nack: reason }),
  };
}

/** An invalid envelope that records how it is settled. */
export function invalidEnvelope(n: number): RecordingEnvelope {
  const settlements: Settlement[] = [];
  return {
    kind: "invalid",
    error: new CloudEventError("malformed-json", `message ${n} is not JSON`),
    message: n,
    receivedAt: 0,
    settlements,
    ack: () => settlements.push("ack"),
    nack: (reason) => settlements.push({ nack: reason }),
  };
}

/** One write to a {@linkcode ManualSink}, to settle by hand. */
export interface ManualWrite {
  readonly event: CloudEvent;
  resolve(): void;
  reject(error: unknown): void;
}

/** A sink whose writes stay pending until the test settles them. */
export interface ManualSink extends EventSink {
  readonly writes: ManualWrite[];
  readonly closed: boolean;
  /** Resolves once `count` writes have arrived. */
  whenWrites(count: number): Promise<void>;
}

/** Creates a {@linkcode ManualSink}. */
export function manualSink(): ManualSink {
  const writes: ManualWrite[] = [];
  const waiters: Array<{ count: number; resolve(): void }> = [];
  let closed = false;
  const close = () => {
    closed = true;
    return Promise.resolve();
  };
  return {
    writes,
    get closed() {
      return closed;
    },
    write(event) {
      const { promise, resolve, reject } = Promise.withResolvers<void>();
      writes.push({ event, resolve, reject });
      for (const waiter of waiters.filter((w) => w.count <= writes.length)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
      return promise;
    },
    whenWrites(count) {
      if (writes.length >= count) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Lets every pending microtask and timer of zero delay run, so that code
 * under test that would settle too early gets the chance to; tests never
 * wait on it for the result they check.
 */
export function nextMacrotask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

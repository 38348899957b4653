import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import FakeTimers from "@sinonjs/fake-timers";
import {
  keepConnected,
  type ReconnectableClient,
  type ReconnectAttempt,
} from "./_reconnect.ts";

function fakeClock() {
  return FakeTimers.withGlobal(globalThis).install({
    toFake: ["setTimeout", "clearTimeout", "Date"],
  });
}

/**
 * Stands in for an MQTT.js client: `reconnect()` emits `reconnect`, then,
 * a tick later, `connect` if the broker is up, else `error` and `close`.
 */
class FakeClient extends EventEmitter {
  connected = false;
  disconnecting = false;
  brokerUp = false;
  incomingStore = { name: "incoming" };
  outgoingStore = { name: "outgoing" };
  readonly attempts: number[] = [];
  readonly reconnectOptions: unknown[] = [];

  reconnect(options?: unknown): this {
    this.attempts.push(Date.now());
    this.reconnectOptions.push(options);
    this.emit("reconnect");
    setTimeout(() => {
      if (this.brokerUp) {
        this.connected = true;
        this.emit("connect");
      } else {
        this.emit("error", new Error("connect ECONNREFUSED"));
        this.emit("close");
      }
    }, 0);
    return this;
  }

  /** The broker drops the connection. */
  drop(): void {
    this.connected = false;
    this.emit("close");
  }
}

function start(
  client: FakeClient,
  events: ReconnectAttempt[],
  initialDelayMs = 100,
  maxDelayMs = 1000,
): Disposable {
  return keepConnected(client as unknown as ReconnectableClient, {
    initialDelayMs,
    maxDelayMs,
    onAttempt: (event) => events.push(event),
  });
}

Deno.test("keepConnected() reconnects with capped exponential backoff and full jitter until the broker is back", async () => {
  const clock = fakeClock();
  try {
    const client = new FakeClient();
    const events: ReconnectAttempt[] = [];
    using _ = start(client, events, 100, 1000);
    client.connected = true;
    client.drop();
    await clock.tickAsync(10_000);
    client.brokerUp = true;
    await clock.tickAsync(1_000);

    assert.equal(client.connected, true);
    // One attempt per wait, numbered from 1, each after its announced delay.
    assert.deepEqual(
      events.map((e) => e.attempt),
      events.map((_, i) => i + 1),
    );
    assert.equal(client.attempts.length, events.length);
    assert.ok(events.length >= 10, `${events.length} attempts in 10 s`);
    events.forEach((event, i) => {
      const bound = Math.min(1000, 100 * 2 ** i);
      assert.ok(
        event.delayMs >= 0 && event.delayMs < bound,
        `attempt ${event.attempt}: ${event.delayMs} ms, bound ${bound}`,
      );
    });
    // Each attempt but the first reports why the one before failed.
    assert.equal(events[0].error, undefined);
    for (const event of events.slice(1)) {
      assert.match((event.error as Error).message, /ECONNREFUSED/);
    }
  } finally {
    clock.uninstall();
  }
});

Deno.test("keepConnected() starts from the first delay again after a connection came up", async () => {
  const clock = fakeClock();
  try {
    const client = new FakeClient();
    const events: ReconnectAttempt[] = [];
    using _ = start(client, events, 100, 60_000);
    client.drop();
    await clock.tickAsync(5_000);
    const before = events.length;
    client.brokerUp = true;
    await clock.tickAsync(60_000);
    assert.equal(client.connected, true);
    client.drop();
    await clock.tickAsync(200);
    assert.equal(events[before].attempt, 1);
    assert.ok(events[before].delayMs < 100);
  } finally {
    clock.uninstall();
  }
});

Deno.test("keepConnected() leaves alone a close the client initiated", async () => {
  const clock = fakeClock();
  try {
    const client = new FakeClient();
    const events: ReconnectAttempt[] = [];
    using _ = start(client, events);
    client.disconnecting = true;
    client.drop();
    await clock.tickAsync(10_000);
    assert.deepEqual(events, []);
    assert.deepEqual(client.attempts, []);
  } finally {
    clock.uninstall();
  }
});

Deno.test("keepConnected() skips its attempt when one was started elsewhere", async () => {
  const clock = fakeClock();
  try {
    const client = new FakeClient();
    const events: ReconnectAttempt[] = [];
    using _ = start(client, events, 10_000, 10_000);
    client.brokerUp = true;
    client.drop();
    assert.equal(events.length, 1);
    client.reconnect();
    await clock.tickAsync(20_000);
    assert.equal(client.attempts.length, 1, "only the one started elsewhere");
    assert.equal(client.connected, true);
  } finally {
    clock.uninstall();
  }
});

Deno.test("keepConnected() disposed ends the pending wait and clears its timer", async () => {
  const clock = fakeClock();
  try {
    const client = new FakeClient();
    const events: ReconnectAttempt[] = [];
    const handle = start(client, events, 10_000, 10_000);
    client.drop();
    assert.equal(clock.countTimers(), 1);
    handle[Symbol.dispose]();
    await clock.tickAsync(0);
    assert.equal(clock.countTimers(), 0);
    client.drop();
    await clock.tickAsync(20_000);
    assert.equal(events.length, 1);
    assert.deepEqual(client.attempts, []);
  } finally {
    clock.uninstall();
  }
});

Deno.test("keepConnected() reconnects with the client's own stores, so unacknowledged publishes are sent again", async () => {
  // Regression: a bare reconnect() makes MQTT.js replace its stores with
  // empty ones, so the publishes held for resending were never sent again
  // and their writes waited for ever.
  const clock = fakeClock();
  try {
    const client = new FakeClient();
    const events: ReconnectAttempt[] = [];
    using _ = start(client, events);
    const { incomingStore, outgoingStore } = client;
    client.drop();
    await clock.tickAsync(1_000);
    assert.ok(client.reconnectOptions.length >= 1);
    for (const options of client.reconnectOptions) {
      assert.deepEqual(options, { incomingStore, outgoingStore });
      const stores = options as Record<string, unknown>;
      assert.equal(stores.outgoingStore, outgoingStore, "the same store");
    }
  } finally {
    clock.uninstall();
  }
});

Deno.test("keepConnected() waits the delay it announces before each attempt, and the bound grows", async () => {
  const clock = fakeClock();
  try {
    const client = new FakeClient();
    const announced: { at: number; delayMs: number }[] = [];
    using _ = keepConnected(client as unknown as ReconnectableClient, {
      initialDelayMs: 100,
      maxDelayMs: 5_000,
      onAttempt: ({ delayMs }) => announced.push({ at: Date.now(), delayMs }),
    });
    client.drop();
    await clock.tickAsync(30_000);
    assert.ok(announced.length >= 6, `${announced.length} attempts`);
    // Each attempt is made exactly the announced delay after its
    // announcement (the fake client fails it a tick later).
    client.attempts.forEach((at, i) => {
      const waited = at - announced[i].at;
      assert.ok(
        Math.abs(waited - announced[i].delayMs) < 1,
        `attempt ${i + 1}: announced ${
          announced[i].delayMs
        } ms, waited ${waited}`,
      );
    });
    // The bound grows: a fixed period of 100 ms would keep every delay
    // below 100; with doubling, some later delay is above it.
    assert.ok(
      announced.slice(3).some(({ delayMs }) => delayMs >= 100),
      `delays ${announced.map(({ delayMs }) => Math.round(delayMs))}`,
    );
  } finally {
    clock.uninstall();
  }
});

Deno.test("keepConnected() rejects delays that are not positive integers", () => {
  const client = new FakeClient() as unknown as ReconnectableClient;
  assert.throws(
    () => keepConnected(client, { initialDelayMs: 0, maxDelayMs: 10 }),
    { name: "RangeError", message: /initialDelayMs must be a positive/ },
  );
  assert.throws(
    () => keepConnected(client, { initialDelayMs: 100, maxDelayMs: 10 }),
    { name: "RangeError", message: /must not exceed maxDelayMs/ },
  );
  assert.throws(
    () =>
      keepConnected(client, {
        initialDelayMs: 100,
        maxDelayMs: 25 * 60 * 60 * 1000,
      }),
    { name: "RangeError", message: /maxDelayMs must be at most 86400000/ },
  );
});

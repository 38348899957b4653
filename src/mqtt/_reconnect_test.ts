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
  readonly attempts: number[] = [];

  reconnect(): this {
    this.attempts.push(Date.now());
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
});

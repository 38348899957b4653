import assert from "node:assert/strict";
import { SendWindow } from "./_send_window.ts";

/** A start function whose sends the test settles by hand. */
function manualSends() {
  const started: Array<
    { item: number; resolve(): void; reject(error: unknown): void }
  > = [];
  const start = (item: number) => {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    started.push({ item, resolve, reject });
    return promise;
  };
  return { started, start };
}

Deno.test("SendWindow starts at most capacity sends, the rest in submission order", async () => {
  const { started, start } = manualSends();
  const window = new SendWindow(2, start);
  const results = [1, 2, 3, 4, 5].map((n) => window.submit(n));

  assert.deepEqual(started.map((s) => s.item), [1, 2]);
  assert.equal(window.active, 2);
  assert.equal(window.waiting, 3);

  started[1].resolve();
  await results[1];
  assert.deepEqual(started.map((s) => s.item), [1, 2, 3]);
  assert.equal(window.active, 2);
  assert.equal(window.waiting, 2);

  started[0].resolve();
  started[2].resolve();
  await Promise.all([results[0], results[2]]);
  assert.deepEqual(started.map((s) => s.item), [1, 2, 3, 4, 5]);
  assert.equal(window.waiting, 0);
  started[3].resolve();
  started[4].resolve();
  await Promise.all(results);
  assert.equal(window.active, 0);
});

Deno.test("SendWindow never has more than capacity sends in flight under churn", async () => {
  const capacity = 3;
  let inFlight = 0;
  let highest = 0;
  const window = new SendWindow<number>(capacity, async (n) => {
    inFlight++;
    highest = Math.max(highest, inFlight);
    // Settle after a varying number of turns of the microtask queue.
    for (let i = 0; i < n % 4; i++) await Promise.resolve();
    inFlight--;
  });
  await Promise.all(Array.from({ length: 50 }, (_, n) => window.submit(n)));
  assert.equal(highest, capacity);
  assert.equal(window.active, 0);
});

Deno.test("SendWindow settles each submit as its send settles", async () => {
  const { started, start } = manualSends();
  const window = new SendWindow(1, start);
  const first = window.submit(1);
  const second = window.submit(2);
  const failure = new Error("refused");
  started[0].reject(failure);
  await assert.rejects(first, (error) => error === failure);
  started[1].resolve();
  await second;
});

Deno.test("SendWindow turns a start() that throws into a rejected submit", async () => {
  const window = new SendWindow<number>(1, () => {
    throw new TypeError("bad item");
  });
  await assert.rejects(window.submit(1), TypeError);
  assert.equal(window.active, 0);
});

Deno.test("SendWindow.close() rejects waiting sends, keeps those in flight, refuses later ones", async () => {
  const { started, start } = manualSends();
  const window = new SendWindow(1, start);
  const inFlight = window.submit(1);
  const waiting = [window.submit(2), window.submit(3)];
  const reason = new Error("closed");

  assert.equal(window.close(reason), 2);
  for (const each of waiting) {
    await assert.rejects(each, (error) => error === reason);
  }
  await assert.rejects(window.submit(4), (error) => error === reason);
  assert.deepEqual(started.map((s) => s.item), [1]);
  started[0].resolve();
  await inFlight;
});

Deno.test("SendWindow.whenIdle() resolves only once nothing is in flight or waiting", async () => {
  const { started, start } = manualSends();
  const window = new SendWindow(1, start);
  await window.whenIdle();
  window.submit(1);
  window.submit(2);
  let idle = false;
  const whenIdle = window.whenIdle().then(() => idle = true);
  started[0].resolve();
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(idle, false);
  started[1].resolve();
  await whenIdle;
  assert.equal(idle, true);
});

Deno.test("SendWindow refuses a capacity that is not a positive integer", () => {
  for (const capacity of [0, -1, 1.5, NaN]) {
    assert.throws(() => new SendWindow(capacity, () => Promise.resolve()), {
      name: "RangeError",
      message: new RegExp(`got ${capacity}`),
    });
  }
});

Deno.test("SendWindow capacity can shrink below the sends in flight and grow again", async () => {
  const { started, start } = manualSends();
  const window = new SendWindow(3, start);
  const results = [1, 2, 3, 4, 5].map((n) => window.submit(n));
  assert.equal(window.active, 3);

  window.capacity = 1;
  started[0].resolve();
  started[1].resolve();
  await Promise.all([results[0], results[1]]);
  assert.equal(window.active, 1, "started more than the shrunk capacity");
  assert.deepEqual(started.map((s) => s.item), [1, 2, 3]);

  window.capacity = 3;
  assert.deepEqual(started.map((s) => s.item), [1, 2, 3, 4, 5]);
  for (const send of started.slice(2)) send.resolve();
  await Promise.all(results);
  assert.throws(() => window.capacity = 0, RangeError);
});

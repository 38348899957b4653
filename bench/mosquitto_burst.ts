/**
 * How many QoS 1 messages Mosquitto drops for a slow subscriber under a
 * burst, with its stock limits and with the limits of tools/brokers.
 *
 * A persistent-session subscriber (clean session off) stays behind while a
 * publisher sends 20,000 QoS 1 messages of 256 bytes, every one of them
 * PUBACKed by the broker; then the subscriber catches up and counts what
 * arrives. Two ways of staying behind:
 *
 * - offline: the subscriber is disconnected during the burst (MQTT 3.1.1);
 * - stalled: it stays connected but holds back its first PUBACK until the
 *   burst is over (MQTT 5, `customHandleAcks`), so MQTT.js stops reading.
 *
 * Run: `deno run --allow-run --allow-net=127.0.0.1 --allow-env --allow-read
 * --allow-write bench/mosquitto_burst.ts [count]`
 *
 * @module
 */

import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { type MosquittoBroker, startMosquitto } from "../tools/brokers/mod.ts";

const PAYLOAD_BYTES = 256;
/** Catching up ends when nothing arrived for this long. */
const QUIET_MS = 2_000;
/** Catching up ends at the latest after this long. */
const CATCH_UP_LIMIT_MS = 120_000;

type Mode = "offline" | "stalled";

interface BurstResult {
  limits: string;
  mode: Mode;
  sent: number;
  acknowledged: number;
  received: number;
  burstMs: number;
  catchUpMs: number;
}

async function main(args: string[]): Promise<void> {
  const count = args[0] === undefined ? 20_000 : Number(args[0]);
  if (!Number.isInteger(count) || count < 1 || count > 1_000_000) {
    throw new RangeError(
      `count must be an integer from 1 to 1000000, got ${args[0]}`,
    );
  }

  const results: BurstResult[] = [];
  for (const stockLimits of [true, false]) {
    await using broker = await startMosquitto({ stockLimits });
    const limits = stockLimits ? "Mosquitto stock" : "tools/brokers";
    for (const mode of ["offline", "stalled"] as const) {
      console.error(`burst: ${limits} limits, ${mode} subscriber...`);
      results.push({ limits, mode, ...await burst(broker, mode, count) });
    }
  }
  printTable(results);
}

async function burst(
  broker: MosquittoBroker,
  mode: Mode,
  count: number,
): Promise<Omit<BurstResult, "limits" | "mode">> {
  const topic = `dx/bench/burst/${crypto.randomUUID()}`;
  const clientId = `dx-burst-${crypto.randomUUID().slice(0, 8)}`;
  const seen = new Set<number>();
  let lastArrival = performance.now();
  const onMessage = (_topic: string, payload: Uint8Array) => {
    seen.add(new DataView(payload.buffer, payload.byteOffset).getUint32(0));
    lastArrival = performance.now();
  };

  // Held PUBACK callbacks of the stalled subscriber.
  let stalled = mode === "stalled";
  const held: (() => void)[] = [];
  const subscriberOptions: mqtt.IClientOptions = mode === "offline"
    ? { clientId, clean: false, protocolVersion: 4, reconnectPeriod: 0 }
    : {
      clientId,
      clean: false,
      protocolVersion: 5,
      reconnectPeriod: 0,
      properties: { sessionExpiryInterval: 300 },
      customHandleAcks: (_topic, _message, _packet, done) => {
        if (stalled) held.push(() => done(0));
        else done(0);
      },
    };

  let subscriber = await mqtt.connectAsync(broker.url, subscriberOptions);
  subscriber.on("message", onMessage);
  await subscriber.subscribeAsync(topic, { qos: 1 });
  if (mode === "offline") await subscriber.endAsync();

  const publisher = await mqtt.connectAsync(broker.url, {
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  const began = performance.now();
  let acknowledged = 0;
  try {
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < count; i++) {
      const payload = Buffer.alloc(PAYLOAD_BYTES);
      payload.writeUInt32BE(i, 0);
      sends.push(
        publisher.publishAsync(topic, payload, { qos: 1 })
          .then(() => acknowledged++),
      );
    }
    await Promise.all(sends);
  } finally {
    await publisher.endAsync();
  }
  const burstMs = performance.now() - began;

  const catchUp = performance.now();
  if (mode === "offline") {
    subscriber = mqtt.connect(broker.url, subscriberOptions);
    subscriber.on("message", onMessage);
  } else {
    stalled = false;
    for (const release of held.splice(0)) release();
  }
  lastArrival = performance.now();
  while (
    seen.size < count &&
    performance.now() - lastArrival < QUIET_MS &&
    performance.now() - catchUp < CATCH_UP_LIMIT_MS
  ) {
    // Polls the count; the bench ends on silence, not on a fixed sleep.
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const catchUpMs = performance.now() - catchUp;

  await subscriber.endAsync();
  // End the persistent session so the broker frees what it still holds.
  const cleanup = await mqtt.connectAsync(broker.url, {
    clientId,
    clean: true,
    reconnectPeriod: 0,
  });
  await cleanup.endAsync();

  return {
    sent: count,
    acknowledged,
    received: seen.size,
    burstMs: Math.round(burstMs),
    catchUpMs: Math.round(catchUpMs),
  };
}

function printTable(results: BurstResult[]): void {
  const header = [
    "limits",
    "subscriber",
    "sent",
    "PUBACKed",
    "received",
    "lost",
    "burst ms",
    "catch-up ms",
  ];
  const rows = results.map((r) => [
    r.limits,
    r.mode,
    String(r.sent),
    String(r.acknowledged),
    String(r.received),
    `${r.sent - r.received} (${
      ((r.sent - r.received) / r.sent * 100).toFixed(1)
    }%)`,
    String(r.burstMs),
    String(r.catchUpMs),
  ]);
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((row) => row[i].length))
  );
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const row of rows) console.log(line(row));
  console.log(
    `\n${PAYLOAD_BYTES}-byte QoS 1 messages; catch-up ends after ${QUIET_MS} ms without a message.`,
  );
}

if (import.meta.main) {
  await main(Deno.args);
}

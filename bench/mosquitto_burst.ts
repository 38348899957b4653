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
 * --allow-write bench/mosquitto_burst.ts [count] [--write]` (count: default
 * 20000). It prints a Markdown report on stdout: the command, the date, the
 * Mosquitto version (as the broker itself reports it on `$SYS/broker/version`)
 * and the table; progress goes to stderr. With `--write` the report also
 * replaces `bench/results/mosquitto_burst.md`.
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

const RESULTS_FILE = new URL("./results/mosquitto_burst.md", import.meta.url);

async function main(args: string[]): Promise<void> {
  const write = args.includes("--write");
  const positional = args.filter((arg) => arg !== "--write");
  const unknown = positional.find((arg) => arg.startsWith("-"));
  if (unknown !== undefined || positional.length > 1) {
    throw new TypeError(
      `usage: bench/mosquitto_burst.ts [count] [--write]; got ${
        args.join(" ")
      }`,
    );
  }
  const count = positional[0] === undefined ? 20_000 : Number(positional[0]);
  if (!Number.isInteger(count) || count < 1 || count > 1_000_000) {
    throw new RangeError(
      `count must be an integer from 1 to 1000000, got ${positional[0]}`,
    );
  }

  const date = new Date().toISOString().slice(0, 19) + "Z";
  const results: BurstResult[] = [];
  let version = "unknown";
  for (const stockLimits of [true, false]) {
    await using broker = await startMosquitto({ stockLimits });
    version = await brokerVersion(broker);
    const limits = stockLimits ? "Mosquitto stock" : "tools/brokers";
    for (const mode of ["offline", "stalled"] as const) {
      console.error(`burst: ${limits} limits, ${mode} subscriber...`);
      results.push({ limits, mode, ...await burst(broker, mode, count) });
    }
  }
  const report = formatReport(results, { count, date, version });
  console.log(report);
  if (write) {
    await Deno.writeTextFile(RESULTS_FILE, report + "\n");
    console.error(`burst: wrote ${RESULTS_FILE.pathname}`);
  }
}

/** What the broker says it is, from its retained `$SYS/broker/version`. */
async function brokerVersion(broker: MosquittoBroker): Promise<string> {
  const client = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  try {
    const version = new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve("unknown"), 2_000);
      client.once("message", (_topic, payload) => {
        clearTimeout(timer);
        resolve(new TextDecoder().decode(payload));
      });
    });
    await client.subscribeAsync("$SYS/broker/version", { qos: 0 });
    return await version;
  } finally {
    await client.endAsync();
  }
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

interface ReportContext {
  count: number;
  date: string;
  version: string;
}

function formatReport(
  results: BurstResult[],
  { count, date, version }: ReportContext,
): string {
  return [
    "# Mosquitto under a burst: stock limits vs tools/brokers",
    "",
    `- Command: \`deno run --allow-run --allow-net=127.0.0.1 --allow-env --allow-read --allow-write bench/mosquitto_burst.ts ${count}\``,
    `- Date: ${date}`,
    `- Broker: ${version}; Deno ${Deno.version.deno}, ${Deno.build.os} ${Deno.build.arch}`,
    "",
    formatTable(results),
    "",
    `${PAYLOAD_BYTES}-byte QoS 1 messages, all PUBACKed by the broker to the publisher; catch-up ends after ${QUIET_MS} ms without a message.`,
    "A stock Mosquitto queues at most 1000 messages per client",
    "(`max_queued_messages`, plus 20 in flight: `max_inflight_messages`) and drops",
    "the rest without telling anyone; tools/brokers raises the queue to 1,000,000",
    "messages and 1 GiB (`max_queued_bytes`).",
  ].join("\n");
}

function formatTable(results: BurstResult[]): string {
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
  return [
    line(header),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...rows.map(line),
  ].join("\n");
}

if (import.meta.main) {
  await main(Deno.args);
}

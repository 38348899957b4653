/**
 * A consumer to kill: run by tests/kafka_stream_crash_test.ts as its own
 * process. It reads a topic in a consumer group, acknowledges the first
 * `ACK` records and waits for their commit, then takes `TAKE` records in all
 * without acknowledging the rest, and waits to be killed.
 *
 * Env: `BROKERS` (comma-separated), `TOPIC`, `GROUP_ID`, `ACK`, `TAKE`,
 * `SESSION_TIMEOUT_MS`. One JSON line on stdout per step:
 * `{"committed":"2"}`, then `{"held":["2","3",...]}` once all are taken.
 *
 * @module
 */
import { kafkaStream } from "../src/kafka/stream.ts";

function env(name: string): string {
  const value = Deno.env.get(name);
  if (value === undefined) throw new TypeError(`env ${name} is not set`);
  return value;
}

const ack = Number(env("ACK"));
const take = Number(env("TAKE"));
const stream = kafkaStream({
  brokers: env("BROKERS").split(","),
  groupId: env("GROUP_ID"),
  topics: [env("TOPIC")],
  fromBeginning: true,
  sessionTimeoutMs: Number(env("SESSION_TIMEOUT_MS")),
  // Only the explicit commit below commits.
  commitEvery: 1_000_000,
  commitIntervalMs: 3_600_000,
  nack: { exhausted: "stop" },
});

const held: string[] = [];
let taken = 0;
for await (const envelope of stream) {
  taken++;
  if (taken <= ack) {
    envelope.ack();
    if (taken === ack) {
      await stream.commit();
      console.log(JSON.stringify({ committed: String(ack) }));
    }
  } else {
    held.push(envelope.record.offset);
  }
  if (taken === take) {
    console.log(JSON.stringify({ held }));
    // Keep the consumer (and its heartbeats) running until killed; the
    // stream is not iterated further.
    await new Promise(() => setInterval(() => {}, 60_000));
  }
}

import assert from "node:assert/strict";
import { createCloudEvent, toKafkaRecord } from "../src/cloudevents/mod.ts";
import { KafkaSink } from "../src/kafka/sink.ts";
import { type KafkaEnvelope, kafkaStream } from "../src/kafka/stream.ts";
import { testBrokers } from "./_brokers.ts";
import { committedOffsets, createTopics, uniqueName } from "./_kafka.ts";

const brokers = await testBrokers();
const CHILD = new URL("./_kafka_stream_child.ts", import.meta.url).pathname;
const ROOT = new URL("../", import.meta.url).pathname;

/**
 * Reads the child's JSON lines until `until` accepts one; fails after
 * `timeoutMs` with what was read, or when the child's output ends.
 */
async function readLine(
  lines: AsyncIterator<string>,
  until: (line: Record<string, unknown>) => boolean,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  const seen: string[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"expired">((resolve) =>
    timer = setTimeout(() => resolve("expired"), timeoutMs)
  );
  try {
    for (;;) {
      const next = await Promise.race([lines.next(), expired]);
      if (next === "expired" || next.done) {
        throw new Error(
          `the child printed no expected line within ${timeoutMs} ms; got ${
            JSON.stringify(seen)
          }`,
        );
      }
      seen.push(next.value);
      const parsed = JSON.parse(next.value);
      if (until(parsed)) return parsed;
    }
  } finally {
    clearTimeout(timer);
  }
}

async function* splitLines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let at;
    while ((at = rest.indexOf("\n")) >= 0) {
      const line = rest.slice(0, at).trim();
      rest = rest.slice(at + 1);
      if (line !== "") yield line;
    }
  }
}

Deno.test({
  name:
    "kafkaStream records taken but not acknowledged by a consumer killed with SIGKILL reach the next consumer of the group after the session timeout",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const topic = uniqueName("ks-kill");
    const groupId = uniqueName("group");
    const total = 10;
    const acked = 3;
    const sessionTimeoutMs = 6000;
    await createTopics(brokers!.kafkaBrokers, [topic]);
    {
      await using sink = await KafkaSink.connect({
        brokers: brokers!.kafkaBrokers,
      });
      await Promise.all(
        Array.from({ length: total }, (_, i) =>
          sink.send(
            topic,
            toKafkaRecord(createCloudEvent({
              id: `kill-${i}`,
              source: "/kafka-stream-crash-test",
              type: "dev.dataexchange.test",
              data: { i },
            })),
          )),
      );
    }

    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        "--allow-env",
        "--allow-read",
        CHILD,
      ],
      cwd: ROOT,
      env: {
        BROKERS: brokers!.kafkaBrokers.join(","),
        TOPIC: topic,
        GROUP_ID: groupId,
        ACK: String(acked),
        TAKE: String(total),
        SESSION_TIMEOUT_MS: String(sessionTimeoutMs),
      },
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    let held: string[];
    let killedAt: number;
    try {
      const lines = splitLines(child.stdout);
      await readLine(lines, (line) => line.committed === String(acked), 60_000);
      const last = await readLine(lines, (line) => "held" in line, 30_000);
      held = last.held as string[];
    } finally {
      // A crash: no commit, no LeaveGroup, no goodbye to the broker.
      child.kill("SIGKILL");
      killedAt = performance.now();
      const status = await child.status;
      assert.equal(status.signal, "SIGKILL");
    }
    const expected = Array.from(
      { length: total - acked },
      (_, i) => String(acked + i),
    );
    assert.deepEqual(held, expected);

    const [committed] = await committedOffsets(
      brokers!.kafkaBrokers,
      groupId,
      topic,
    );
    assert.equal(committed, acked);

    const controller = new AbortController();
    const deadline = setTimeout(() => controller.abort(), 60_000);
    const stream = kafkaStream({
      brokers: brokers!.kafkaBrokers,
      groupId,
      topics: [topic],
      sessionTimeoutMs,
      nack: { exhausted: "stop" },
      signal: controller.signal,
    });
    const again: KafkaEnvelope[] = [];
    try {
      for await (const envelope of stream) {
        again.push(envelope);
        envelope.ack();
        if (again.length === expected.length) break;
      }
    } finally {
      clearTimeout(deadline);
    }
    const elapsedMs = performance.now() - killedAt;
    const offsets = again.map((e) => e.record.offset);
    const missing = expected.filter((offset) => !offsets.includes(offset));
    assert.deepEqual(
      missing,
      [],
      `records taken by the killed consumer and not read again within 60 s: ${
        missing.join(", ")
      }`,
    );
    assert.deepEqual(offsets, expected, "nothing acknowledged is read again");
    console.log(
      `crash test: ${held.length} held records read again ${
        Math.round(elapsedMs)
      } ms after the kill (session timeout ${sessionTimeoutMs} ms)`,
    );
    // The old member had to expire (its last heartbeat was at most about
    // 3 s before the kill): one that left cleanly would have handed its
    // partition over at once.
    assert.ok(
      elapsedMs >= sessionTimeoutMs / 3,
      `read again after ${Math.round(elapsedMs)} ms`,
    );
  },
});

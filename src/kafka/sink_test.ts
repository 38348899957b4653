import assert from "node:assert/strict";
import { createCloudEvent, toKafkaRecord } from "../cloudevents/mod.ts";
import { abortableDelay } from "../_retry.ts";
import { isolatedTestBrokers, testBrokers } from "../../tests/_brokers.ts";
import {
  createTopics,
  header,
  readTopics,
  uniqueName,
} from "../../tests/_kafka.ts";
import { type BreakerStateChange, KafkaSink } from "./sink.ts";

const ignore = (await testBrokers()) === undefined;

/** Polls `condition` until it holds; fails after `timeoutMs`. */
async function waitFor(
  what: string,
  condition: () => boolean,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await abortableDelay(20);
  }
}

Deno.test({
  name:
    "KafkaSink opens its breaker while Kafka is down, buffers up to maxBufferedRecords, and delivers everything once Kafka is back",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using brokers = (await isolatedTestBrokers())!;
    const topic = uniqueName("sink-breaker");
    await createTopics(brokers.kafkaBrokers, [topic]);
    const changes: BreakerStateChange[] = [];
    const pendingSamples: number[] = [];
    await using sink = await KafkaSink.connect({
      brokers: brokers.kafkaBrokers,
      batchSize: 10,
      maxBufferedRecords: 50,
      retryInitialDelayMs: 50,
      breakerThreshold: 3,
      breakerHalfOpenAfterMs: 1000,
      onBreakerStateChange: (change) => changes.push(change),
    });
    assert.equal(sink.breakerState, "closed");

    await brokers.kafka.kill();
    const ids = Array.from({ length: 100 }, (_, i) => `r-${i}`);
    let entered = 0;
    let acknowledged = 0;
    const sends = ids.map((id) => {
      const record = toKafkaRecord(
        createCloudEvent({ id, source: "/sink-test", type: "t", data: {} }),
      );
      const sent = sink.send(topic, record);
      entered++;
      return sent.then(() => acknowledged++);
    });
    await waitFor("the breaker to open", () => sink.breakerState === "open");
    const openedAt = performance.now();
    // Held open for 3 s: at most one probe per second goes out.
    await waitFor("3 s of outage", () => {
      pendingSamples.push(sink.pending);
      return performance.now() - openedAt >= 3000;
    }, 10_000);
    const probes = changes.filter((c) => c.state === "half-open").length;
    assert.ok(probes <= 4, `${probes} probes in 3 s`);
    assert.equal(acknowledged, 0);
    assert.equal(entered, ids.length, "send() returned for every record");
    assert.equal(sink.pending, 50, "the buffer holds maxBufferedRecords");
    assert.ok(pendingSamples.every((pending) => pending <= 50));

    await brokers.kafka.restart();
    await Promise.all(sends);
    assert.equal(acknowledged, ids.length);
    assert.equal(sink.breakerState, "closed");
    const states = changes.map((c) => c.state);
    assert.equal(states[0], "open");
    assert.equal(changes[0].previous, "closed");
    assert.ok(changes[0].error instanceof Error, "the failure that opened it");
    assert.deepEqual(states.slice(-2), ["half-open", "closed"]);

    const records = await readTopics(brokers.kafkaBrokers, [topic], {
      until: (read) => read.length >= ids.length,
    });
    // One request at a time: the order survives the outage.
    assert.deepEqual(
      records.map((r) => header(r.message, "ce_id")),
      ids,
    );
  },
});

Deno.test("KafkaSink.connect() rejects a breaker threshold that is not a positive integer, before connecting", async () => {
  await assert.rejects(
    KafkaSink.connect({ brokers: ["127.0.0.1:1"], breakerThreshold: 0 }),
    { name: "RangeError", message: /breakerThreshold must be a positive/ },
  );
});

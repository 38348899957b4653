import assert from "node:assert/strict";
import {
  CloudEventError,
  createCloudEvent,
  createRouter,
  type KafkaRecord,
} from "../cloudevents/mod.ts";
import type { AnyEnvelope } from "../envelope.ts";
import { DataExchangeError } from "../errors.ts";
import { kafkaEventSink } from "./event_sink.ts";
import type { KafkaSendOptions } from "./sink.ts";
import { writeEvents } from "./_write_all.ts";

const decoder = new TextDecoder();

function header(record: KafkaRecord, name: string): string | undefined {
  const value = record.headers[name];
  return value === undefined ? undefined : decoder.decode(value);
}

interface Sent {
  topic: string;
  record: KafkaRecord;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * A stand-in for a KafkaSink whose sends settle when the test says so, and
 * reject with the signal's reason when it aborts, as KafkaSink.send does.
 */
function manualSink() {
  const sent: Sent[] = [];
  let outstanding = 0;
  let mostOutstanding = 0;
  return {
    sent,
    get mostOutstanding() {
      return mostOutstanding;
    },
    send(
      topic: string,
      record: KafkaRecord,
      options: KafkaSendOptions = {},
    ): Promise<void> {
      mostOutstanding = Math.max(mostOutstanding, ++outstanding);
      return new Promise<void>((resolve, reject) => {
        const { signal } = options;
        const onAbort = () => reject(signal?.reason);
        signal?.addEventListener("abort", onAbort, { once: true });
        sent.push({ topic, record, resolve, reject });
      }).finally(() => outstanding--);
    },
  };
}

/** A stand-in for a KafkaSink that acknowledges every record at once. */
function instantSink() {
  const sent: Array<{ topic: string; record: KafkaRecord }> = [];
  return {
    sent,
    send(topic: string, record: KafkaRecord): Promise<void> {
      sent.push({ topic, record });
      return Promise.resolve();
    },
  };
}

/** Envelopes that record how they were settled. */
function tracked(items: Array<{ id: string; invalid?: boolean }>) {
  const settled = new Map<string, { acked: boolean; reason?: unknown }>();
  const envelopes: AnyEnvelope[] = items.map(({ id, invalid }) => {
    const settle = {
      ack: () => settled.set(id, { acked: true }),
      nack: (reason: unknown) => settled.set(id, { acked: false, reason }),
    };
    if (invalid) {
      return {
        kind: "invalid",
        error: new CloudEventError("malformed-json", `not JSON: ${id}`),
        message: {
          topic: `sensors/${id}`,
          payload: new TextEncoder().encode(id),
        },
        ...settle,
      };
    }
    const event = createCloudEvent({ id, source: "/test", type: "t" });
    return { kind: "event", event, ...settle };
  });
  return { envelopes, settled };
}

async function* from<T>(items: Iterable<T>): AsyncGenerator<T> {
  yield* items;
}

Deno.test("KafkaSink.writeAll() acks an envelope only once its record is acknowledged, and nacks the one Kafka refuses", async () => {
  const sink = manualSink();
  const { envelopes, settled } = tracked([{ id: "a" }, { id: "b" }]);
  const done = writeEvents(sink, from(envelopes), { topic: "dx.t" }, 10);

  while (sink.sent.length < 2) await Promise.resolve();
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(settled.size, 0, "nothing settled before Kafka answered");
  const refused = new DataExchangeError("record-rejected", "too large");
  sink.sent[1].reject(refused);
  sink.sent[0].resolve();

  assert.deepEqual(await done, {
    written: 1,
    failed: 1,
    invalid: 0,
    deadLettered: 0,
  });
  assert.deepEqual(settled.get("a"), { acked: true });
  assert.deepEqual(settled.get("b"), { acked: false, reason: refused });
  assert.deepEqual(sink.sent.map((s) => header(s.record, "ce_id")), [
    "a",
    "b",
  ]);
});

Deno.test("KafkaSink.writeAll() passes a failed plain CloudEvent to onError and counts it", async () => {
  const refused = new DataExchangeError("record-rejected", "too large");
  const sink = {
    send: () => Promise.reject(refused),
  };
  const event = createCloudEvent({ id: "1", source: "/s", type: "t" });
  const failures: Array<[unknown, unknown]> = [];
  const result = await writeEvents(sink, from([event]), {
    topic: "dx.t",
    onError: (error, item) => failures.push([error, item]),
  }, 10);
  assert.deepEqual(result, {
    written: 0,
    failed: 1,
    invalid: 0,
    deadLettered: 0,
  });
  assert.deepEqual(failures, [[refused, event]]);
});

Deno.test("KafkaSink.writeAll() nacks invalid envelopes with their own error when there is no dead-letter topic", async () => {
  const sink = instantSink();
  const { envelopes, settled } = tracked([{ id: "bad", invalid: true }]);
  const result = await writeEvents(
    sink,
    from(envelopes),
    { topic: "dx.t" },
    10,
  );
  assert.deepEqual(result, {
    written: 0,
    failed: 0,
    invalid: 1,
    deadLettered: 0,
  });
  const outcome = settled.get("bad");
  assert.equal(outcome?.acked, false);
  assert.equal((outcome?.reason as CloudEventError).code, "malformed-json");
  assert.equal(sink.sent.length, 0);
});

Deno.test("KafkaSink.writeAll() dead-letters invalid envelopes to the router's dead-letter topic, with their bytes and reason, and acks them", async () => {
  const sink = instantSink();
  const router = createRouter({
    routes: { alert: "dx.alerts" },
    defaultTopic: "dx.other",
    deadLetterTopic: "dx.dead",
  });
  const { envelopes, settled } = tracked([
    { id: "good" },
    { id: "bad", invalid: true },
  ]);
  const result = await writeEvents(sink, from(envelopes), {
    topic: router,
  }, 10);
  assert.deepEqual(result, {
    written: 1,
    failed: 0,
    invalid: 1,
    deadLettered: 1,
  });
  assert.deepEqual(settled.get("bad"), { acked: true });
  const [event, dead] = sink.sent;
  assert.equal(event.topic, "dx.other");
  assert.equal(dead.topic, "dx.dead");
  assert.equal(decoder.decode(dead.record.value!), "bad");
  assert.equal(header(dead.record, "dx-error"), "malformed-json");
  assert.equal(header(dead.record, "dx-mqtt-topic"), "sensors/bad");
});

Deno.test("KafkaSink.writeAll() keeps at most maxConcurrent sends outstanding", async () => {
  const sink = manualSink();
  const events = Array.from(
    { length: 20 },
    (_, n) => createCloudEvent({ id: `${n}`, source: "/s", type: "t" }),
  );
  const done = writeEvents(sink, from(events), { topic: "dx.t" }, 3);
  let acknowledged = 0;
  while (acknowledged < events.length) {
    await new Promise((resolve) => setTimeout(resolve, 1));
    for (const each of sink.sent.splice(0)) {
      each.resolve();
      acknowledged++;
    }
  }
  assert.equal((await done).written, 20);
  assert.equal(sink.mostOutstanding, 3);
});

Deno.test("KafkaSink.writeAll() on abort nacks the envelopes not yet acknowledged with the abort reason, and resolves with the counts", async () => {
  const sink = manualSink();
  const stop = new AbortController();
  const { envelopes, settled } = tracked([{ id: "a" }, { id: "b" }]);
  async function* source(): AsyncGenerator<AnyEnvelope> {
    yield* envelopes;
    // Then nothing more until the end.
    await new Promise((resolve) =>
      stop.signal.addEventListener("abort", resolve)
    );
  }
  const done = writeEvents(sink, source(), {
    topic: "dx.t",
    signal: stop.signal,
  }, 10);
  while (sink.sent.length < 2) await Promise.resolve();
  sink.sent[0].resolve();
  const reason = new Error("shutting down");
  stop.abort(reason);

  assert.deepEqual(await done, {
    written: 1,
    failed: 1,
    invalid: 0,
    deadLettered: 0,
  });
  assert.deepEqual(settled.get("a"), { acked: true });
  assert.deepEqual(settled.get("b"), { acked: false, reason });
});

Deno.test("kafkaEventSink() writes each event to the topic of a fixed name, a router or a function, in the content mode asked for", async () => {
  const sink = instantSink();
  const alert = createCloudEvent({
    source: "/s",
    type: "t",
    classification: "alert",
  });
  const router = createRouter({
    routes: { alert: "dx.alerts" },
    defaultTopic: "dx.other",
    deadLetterTopic: "dx.dead",
  });
  await kafkaEventSink(sink, { topic: "dx.fixed" }).write(alert);
  await kafkaEventSink(sink, { topic: router }).write(alert);
  await kafkaEventSink(sink, {
    topic: (event) => `dx.${event.type}`,
    mode: "structured",
  }).write(alert);
  assert.deepEqual(sink.sent.map((s) => s.topic), [
    "dx.fixed",
    "dx.alerts",
    "dx.t",
  ]);
  assert.equal(header(sink.sent[0].record, "ce_id"), alert.id, "binary");
  assert.match(
    header(sink.sent[2].record, "content-type") ?? "",
    /^application\/cloudevents\+json/,
  );
});

Deno.test("kafkaEventSink() rejects a write whose topic function throws with topic-failed, carrying the cause", async () => {
  const cause = new Error("no tenant");
  const sink = kafkaEventSink(instantSink(), {
    topic: () => {
      throw cause;
    },
  });
  const event = createCloudEvent({ id: "e-1", source: "/s", type: "t" });
  await assert.rejects(sink.write(event), (error: DataExchangeError) => {
    assert.equal(error.code, "topic-failed");
    assert.equal(error.cause, cause);
    assert.match(error.message, /"e-1".*no tenant/);
    return true;
  });
});

Deno.test("kafkaEventSink() refuses a fixed topic that is not a Kafka topic name, and options of the wrong type", () => {
  const sink = instantSink();
  assert.throws(() => kafkaEventSink(sink, { topic: "bad topic!" }), {
    name: "RangeError",
    message: /option topic must be a Kafka topic name.*"bad topic!"/,
  });
  assert.throws(
    () => kafkaEventSink(sink, { topic: 42 as unknown as string }),
    { name: "TypeError", message: /a topic name, a Router or a function/ },
  );
  assert.throws(
    () =>
      kafkaEventSink(sink, {
        topic: "dx.t",
        mode: "json" as "binary",
      }),
    { name: "TypeError", message: /mode must be "binary" or "structured"/ },
  );
});

Deno.test("kafkaEventSink().close() waits for outstanding writes, then fails those left after closeTimeoutMs with sink-closed", async () => {
  const kafka = manualSink();
  const sink = kafkaEventSink(kafka, { topic: "dx.t", closeTimeoutMs: 50 });
  const first = sink.write(createCloudEvent({ source: "/s", type: "t" }));
  const second = sink.write(createCloudEvent({ source: "/s", type: "t" }));
  kafka.sent[0].resolve();
  await sink.close();
  await first;
  await assert.rejects(second, { code: "sink-closed", retriable: true });
  await assert.rejects(
    sink.write(createCloudEvent({ source: "/s", type: "t" })),
    { code: "sink-closed" },
  );
  assert.equal(sink.pending, 0);
});

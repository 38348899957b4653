import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { createCloudEvent } from "../cloudevents/mod.ts";
import { loggingSink, type LoggingSinkOptions } from "./logging.ts";

/** Runs `fn` with LogTape sending every record to the returned array. */
async function capture(
  fn: () => Promise<void>,
): Promise<LogRecord[]> {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { memory: (record: LogRecord) => records.push(record) },
    loggers: [
      { category: [], lowestLevel: "debug", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
    ],
  });
  try {
    await fn();
  } finally {
    await reset();
  }
  return records.filter((record) => record.category[0] !== "logtape");
}

const event = createCloudEvent({
  id: "42",
  source: "/sensors/7",
  type: "com.example.reading",
  subject: "room-1",
  classification: "telemetry",
  data: { secret: "s3cr3t-payload" },
});

async function logOne(options?: LoggingSinkOptions): Promise<LogRecord[]> {
  return await capture(async () => {
    await using sink = loggingSink(options);
    await sink.write(event);
    assert.equal(sink.count, 1);
  });
}

Deno.test("loggingSink() logs the event's attributes at info, never its data", async () => {
  const records = await logOne();
  assert.equal(records.length, 1);
  const [record] = records;
  assert.deepEqual(record.category, ["dataexchange", "sinks", "logging"]);
  assert.equal(record.level, "info");
  assert.equal(record.rawMessage, "Event {id} of type {type} from {source}");
  assert.deepEqual(record.properties, {
    id: "42",
    type: "com.example.reading",
    source: "/sensors/7",
    subject: "room-1",
    classification: "telemetry",
  });
  assert.ok(!JSON.stringify(record).includes("s3cr3t"));
});

Deno.test("loggingSink() logs under the category and level it is given", async () => {
  const records = await logOne({ category: ["app", "audit"], level: "debug" });
  assert.equal(records.length, 1);
  assert.deepEqual(records[0].category, ["app", "audit"]);
  assert.equal(records[0].level, "debug");
});

Deno.test("loggingSink() rejects writes after close with sink-closed", async () => {
  const sink = loggingSink();
  await sink.close();
  await assert.rejects(sink.write(event), { code: "sink-closed" });
  assert.equal(sink.count, 0);
});

Deno.test("loggingSink() refuses a bad category or level", () => {
  assert.throws(() => loggingSink({ category: [] }), {
    name: "TypeError",
    message: /non-empty array of strings; got \[\]/,
  });
  assert.throws(
    () => loggingSink({ level: "warning" as "info" }),
    { name: "TypeError", message: /"debug" or "info"; got "warning"/ },
  );
});

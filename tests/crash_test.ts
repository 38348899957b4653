import assert from "node:assert/strict";
import {
  createCloudEvent,
  serializeStructured,
} from "../src/cloudevents/mod.ts";
import { testBrokers } from "./_brokers.ts";
import { createTopics, publishAll, readTopics, uniqueName } from "./_kafka.ts";

const brokers = await testBrokers();
const CLI = new URL("../src/cli/main.ts", import.meta.url).pathname;

/** Starts the bridge CLI as its own process and resolves once it subscribed. */
async function startBridge(configPath: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      CLI,
      "--config",
      configPath,
    ],
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  const lines = child.stdout
    .pipeThrough(new TextDecoderStream())
    .getReader();
  let buffered = "";
  const log: string[] = [];
  const deadline = setTimeout(() => {
    lines.cancel(new Error("bridge did not subscribe within 60 s"));
  }, 60000);
  while (!log.some((line) => line.includes("MQTT subscribed"))) {
    const { value, done } = await lines.read();
    if (done) {
      throw new Error(`bridge exited before subscribing:\n${log.join("\n")}`);
    }
    buffered += value;
    const parts = buffered.split("\n");
    buffered = parts.pop()!;
    log.push(...parts);
  }
  clearTimeout(deadline);
  // Keep draining stdout so the bridge never blocks on a full pipe.
  const drained = (async () => {
    while (!(await lines.read()).done) { /* discard */ }
  })();
  return { child, drained };
}

Deno.test({
  name: "bridge killed with SIGKILL mid-stream loses nothing after a restart",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const id = uniqueName("crash");
    const topic = `${id}.events`;
    const dir = await Deno.makeTempDir({ prefix: "dx-crash-" });
    const configPath = `${dir}/bridge.yaml`;
    await Deno.writeTextFile(
      configPath,
      JSON.stringify({
        mqtt: {
          url: brokers!.mqttUrl,
          topics: [`${id}/#`],
          clientId: `${id}-bridge`,
        },
        kafka: { brokers: brokers!.kafkaBrokers },
        routes: {},
        defaultTopic: topic,
        deadLetterTopic: `${id}.dlq`,
        log: { level: "info" },
      }),
    );
    await createTopics(brokers!.kafkaBrokers, [topic, `${id}.dlq`]);
    const total = 5000;
    const events = Array.from(
      { length: total },
      (_, i) =>
        createCloudEvent({
          source: "/crash-test",
          type: "dev.dataexchange.test",
          data: { i },
        }),
    );

    const first = await startBridge(configPath);
    const publishing = publishAll(
      brokers!.mqttUrl,
      events.map((event) => ({
        topic: `${id}/d`,
        payload: serializeStructured(event),
      })),
      { window: 50 },
    );
    // Kill the bridge once part of the stream has reached Kafka.
    const killedAt = 1000;
    await readTopics(brokers!.kafkaBrokers, [topic], {
      until: (read) => read.length >= killedAt,
      timeoutMs: 60000,
    });
    first.child.kill("SIGKILL");
    const status = await first.child.status;
    assert.equal(status.signal, "SIGKILL");
    await first.drained;
    await publishing;

    const second = await startBridge(configPath);
    const expected = new Set(events.map((event) => event.id));
    const missing = new Set(expected);
    const records = await readTopics(brokers!.kafkaBrokers, [topic], {
      until: (read) => {
        const last = read.at(-1);
        if (last) missing.delete(idOf(last.message.headers));
        return missing.size === 0;
      },
      timeoutMs: 90000,
    });
    second.child.kill("SIGTERM");
    assert.equal((await second.child.status).code, 0);
    await second.drained;
    await Deno.remove(dir, { recursive: true });

    const ids = records.map((r) => idOf(r.message.headers));
    const unique = new Set(ids);
    for (const eventId of expected) assert.ok(unique.has(eventId));
    console.log(
      `crash test: published ${total}, killed after >= ${killedAt} in Kafka, ` +
        `records ${records.length}, unique ${unique.size}, duplicates ${
          records.length - unique.size
        }`,
    );
  },
});

function idOf(headers: Record<string, unknown> | undefined): string {
  const value = headers?.["ce_id"];
  return value === undefined ? "" : String(value);
}

/**
 * End-to-end throughput of the bridge on real brokers: QoS 1 messages of 256
 * bytes published to MQTT, counted when they can be read from Kafka.
 *
 * Usage: deno task bench [--quick] [--messages N]
 *
 * Starts its own Mosquitto and Kafka (or uses DX_TEST_MQTT_URL and
 * DX_TEST_KAFKA_BROKERS), runs the bridge as a separate process, and prints
 * messages per second and the bridge's peak resident memory.
 *
 * @module
 */
import {
  createCloudEvent,
  serializeStructured,
} from "../src/cloudevents/mod.ts";
import { startBrokers } from "../tools/brokers/mod.ts";
import {
  createTopics,
  publishAll,
  readTopics,
  uniqueName,
} from "../tests/_kafka.ts";

const args = Deno.args;
const quick = args.includes("--quick");
const countFlag = args.indexOf("--messages");
const total = countFlag >= 0
  ? Number(args[countFlag + 1])
  : quick
  ? 10000
  : 50000;
if (!Number.isInteger(total) || total < 1) {
  console.error(
    `--messages needs a positive integer, got ${args[countFlag + 1]}`,
  );
  Deno.exit(2);
}

const given = Deno.env.get("DX_TEST_MQTT_URL") &&
  Deno.env.get("DX_TEST_KAFKA_BROKERS");
const brokers = given ? undefined : await startBrokers({});
const mqttUrl = given ? Deno.env.get("DX_TEST_MQTT_URL")! : brokers!.mqttUrl;
const kafkaBrokers = given
  ? Deno.env.get("DX_TEST_KAFKA_BROKERS")!.split(",")
  : brokers!.kafkaBrokers;

try {
  const result = await run();
  console.log("");
  console.log("| case | messages | seconds | msg/s | bridge peak RSS |");
  console.log("| --- | ---: | ---: | ---: | ---: |");
  console.log(
    `| bridge, at-least-once, 256 B, QoS 1 | ${total} | ${
      result.seconds.toFixed(2)
    } | ${Math.round(total / result.seconds)} | ${result.peakRssMb} MB |`,
  );
} finally {
  await brokers?.stop();
}

async function run() {
  const id = uniqueName("bench");
  const topic = `${id}.events`;
  await createTopics(kafkaBrokers, [topic, `${id}.dlq`]);
  const dir = await Deno.makeTempDir({ prefix: "dx-bench-" });
  const configPath = `${dir}/bridge.json`;
  await Deno.writeTextFile(
    configPath,
    JSON.stringify({
      mqtt: { url: mqttUrl, topics: [`${id}/#`], clientId: `${id}-bridge` },
      kafka: { brokers: kafkaBrokers },
      routes: {},
      defaultTopic: topic,
      deadLetterTopic: `${id}.dlq`,
      log: { level: "info" },
    }),
  );
  const bridge = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      new URL("../src/cli/main.ts", import.meta.url).pathname,
      "--config",
      configPath,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = bridge.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  let text = "";
  while (!text.includes("MQTT subscribed")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`bridge exited before subscribing:\n${text}`);
    text += value;
  }
  const drained = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();

  const payload = samplePayload(256);
  console.error(`publishing ${total} messages of ${payload.byteLength} bytes`);
  const started = performance.now();
  const publishing = publishAll(
    mqttUrl,
    (function* () {
      for (let i = 0; i < total; i++) yield { topic: `${id}/d`, payload };
    })(),
    { window: 1000 },
  );
  let reported = 0;
  await readTopics(kafkaBrokers, [topic], {
    until: (read) => read.length >= total,
    onRecord: (read) => {
      if (read.length - reported >= total / 10) {
        reported = read.length;
        console.error(`  ${reported} / ${total} in Kafka`);
      }
    },
    timeoutMs: 600000,
  });
  const seconds = (performance.now() - started) / 1000;
  await publishing;
  const peakRssMb = await peakRss(bridge.pid);
  bridge.kill("SIGTERM");
  await bridge.status;
  await drained;
  await Deno.remove(dir, { recursive: true });
  return { seconds, peakRssMb };
}

/** A structured CloudEvent of exactly `size` bytes (padded in its data). */
function samplePayload(size: number): Uint8Array {
  const event = createCloudEvent({
    source: "/bench",
    type: "dev.dataexchange.bench",
    id: "00000000-0000-4000-8000-000000000000",
    time: "2026-01-01T00:00:00Z",
    classification: "telemetry",
    data: { pad: "" },
  });
  const base = serializeStructured(event).byteLength;
  const padded = createCloudEvent({
    source: event.source,
    type: event.type,
    id: event.id,
    time: event.time,
    classification: "telemetry",
    data: { pad: "x".repeat(Math.max(0, size - base)) },
  });
  return serializeStructured(padded);
}

/** The peak resident memory of a process, in MB, from its VmHWM. */
async function peakRss(pid: number): Promise<string> {
  // Deno reads /proc only with --allow-all; a child process needs no such grant.
  const { stdout, success } = await new Deno.Command("cat", {
    args: [`/proc/${pid}/status`],
    stdout: "piped",
    stderr: "null",
  }).output();
  const kb = Number(
    /VmHWM:\s+(\d+)/.exec(new TextDecoder().decode(stdout))?.[1],
  );
  return success && kb > 0 ? (kb / 1024).toFixed(0) : "n/a";
}

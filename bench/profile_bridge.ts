/**
 * Profiles the bridge under load: runs `runBridge` in a child process (as
 * the CLI does) with `--cpu-prof`, publishes QoS 1 messages as fast as
 * possible, follows its memory (`Deno.memoryUsage()`), takes a heap snapshot
 * at the peak of the load and one after a full GC once everything was
 * delivered, and prints the top entries of each profile.
 *
 * Usage: `deno run --allow-run --allow-net=127.0.0.1 --allow-env
 * --allow-read --allow-write bench/profile_bridge.ts [--messages N]
 * [--size BYTES] [--out DIR] [--max-in-flight N] [--v8-flags FLAGS]
 * [--no-snapshots] [--no-cpu-prof]`; uses DX_TEST_MQTT_URL and
 * DX_TEST_KAFKA_BROKERS when set, else starts its own brokers.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createTopics, uniqueName } from "../tests/_kafka.ts";
import { startBrokers } from "../tools/brokers/mod.ts";
import { Child, memoryStatus } from "./_child.ts";
import { sleep } from "./_child_io.ts";
import { payloadTemplate } from "./_payload.ts";
import { entriesTable, summarizeCpu, summarizeHeap } from "./_profiles.ts";
import { Publisher } from "./_publisher.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    messages: { type: "string", default: "50000" },
    size: { type: "string", default: "256" },
    out: {
      type: "string",
      default: new URL("./profiles/", import.meta.url).pathname,
    },
    "max-in-flight": { type: "string" },
    "v8-flags": { type: "string" },
    "no-snapshots": { type: "boolean", default: false },
    "no-cpu-prof": { type: "boolean", default: false },
  },
});
const snapshots = !values["no-snapshots"];
const count = Number(values.messages);
const size = Number(values.size);
const out = values.out.endsWith("/") ? values.out : `${values.out}/`;
await Deno.mkdir(out, { recursive: true });

const given = Deno.env.get("DX_TEST_MQTT_URL") &&
  Deno.env.get("DX_TEST_KAFKA_BROKERS");
const brokers = given ? undefined : await startBrokers();
const mqttUrl = brokers?.mqttUrl ?? Deno.env.get("DX_TEST_MQTT_URL")!;
const kafkaBrokers = brokers?.kafkaBrokers ??
  Deno.env.get("DX_TEST_KAFKA_BROKERS")!.split(",");

interface Memory {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  delivered: number;
}

try {
  const id = uniqueName("profile");
  await createTopics(kafkaBrokers, [`${id}.events`, `${id}.dlq`]);
  const started = Date.now();
  const bridge = Child.role("bridge-in-process", {
    config: {
      mqtt: {
        url: mqttUrl,
        topics: [`${id}/#`],
        clientId: `${id}-bridge`,
        ...(values["max-in-flight"]
          ? { maxInFlight: Number(values["max-in-flight"]) }
          : {}),
      },
      kafka: { brokers: kafkaBrokers },
      routes: {},
      defaultTopic: `${id}.events`,
      deadLetterTopic: `${id}.dlq`,
    },
  }, [
    `--v8-flags=--expose-gc${
      values["v8-flags"] ? `,${values["v8-flags"]}` : ""
    }`,
    ...(values["no-cpu-prof"] ? [] : ["--cpu-prof", `--cpu-prof-dir=${out}`]),
    `--allow-write=${out}`,
  ]);
  await bridge.waitForEvent("ready");
  const publisher = await Publisher.connect(mqttUrl);

  const memory = async (): Promise<Memory> => {
    const since = bridge.lines.length;
    await bridge.send("memory");
    return await bridge.waitForEvent("memory", { since }) as unknown as Memory;
  };
  const idle = await memory();
  const publishing = publisher.publish({
    topic: `${id}/d`,
    template: payloadTemplate(size),
    seqBase: 0,
    count,
    rate: 0,
  });
  let peak = idle;
  let peakHwmKb = 0;
  let last = idle;
  while (last.delivered < count) {
    await sleep(200);
    last = await memory();
    if (last.rss > peak.rss) peak = last;
    if (!bridge.running) {
      throw new Error(`the bridge exited:\n${bridge.tail()}`);
    }
    if (last.delivered >= count / 2 && peakHwmKb === 0 && snapshots) {
      peakHwmKb = (await memoryStatus(bridge.pid))?.hwmKb ?? 0;
      console.error(
        `${last.delivered} delivered; heap snapshot under load (the bridge pauses)`,
      );
      const since = bridge.lines.length;
      await bridge.send(`heap ${out}${id}-load.heapsnapshot`);
      await bridge.waitForEvent("heap", { since });
    }
  }
  await publishing;
  const seconds = (Date.now() - started) / 1000;
  const finalHwmKb = (await memoryStatus(bridge.pid))?.hwmKb ?? 0;
  let since = bridge.lines.length;
  await bridge.send("gc");
  await bridge.waitForEvent("gc", { since });
  const afterGc = await memory();
  if (snapshots) {
    since = bridge.lines.length;
    await bridge.send(`heap ${out}${id}-after-gc.heapsnapshot`);
    await bridge.waitForEvent("heap", { since });
  }
  await publisher.close();
  await bridge.stop({ timeoutMs: 30_000 });
  // What V8 printed (--trace-gc and the like), for reading.
  await Deno.writeTextFile(
    `${out}${id}-stdout.txt`,
    bridge.lines.filter((line) => "text" in line).map((line) => line.text)
      .join("\n"),
  );

  const mb = (bytes: number) => `${(bytes / 1048576).toFixed(0)} MB`;
  const row = (label: string, m: Memory) =>
    `| ${label} | ${mb(m.rss)} | ${mb(m.heapTotal)} | ${mb(m.heapUsed)} | ${
      mb(m.external)
    } |`;
  console.log(
    `## Bridge profile: ${count} messages of ${size} B, ${
      seconds.toFixed(1)
    } s\n`,
  );
  console.log("| when | rss | heapTotal | heapUsed | external |");
  console.log("| --- | ---: | ---: | ---: | ---: |");
  console.log(row("idle, subscribed", idle));
  console.log(row("peak RSS sample", peak));
  console.log(row("after, full GC", afterGc));
  console.log(
    `\nVmHWM: ${
      snapshots
        ? `${(peakHwmKb / 1024).toFixed(0)} MB before the first snapshot, `
        : ""
    }${(finalHwmKb / 1024).toFixed(0)} MB at the end${
      snapshots ? " (snapshots add their own memory)" : ""
    }; ${(count / seconds).toFixed(0)} msg/s.\n`,
  );

  const profiles = [...Deno.readDirSync(out)]
    .filter((entry) => entry.name.endsWith(".cpuprofile"))
    .map((entry) => ({
      name: entry.name,
      mtime: Deno.statSync(`${out}${entry.name}`).mtime?.getTime() ?? 0,
    }))
    .filter((entry) => entry.mtime >= started)
    .sort((a, b) => b.mtime - a.mtime);
  if (profiles.length > 0) {
    const cpu = summarizeCpu(
      JSON.parse(await Deno.readTextFile(`${out}${profiles[0].name}`)),
    );
    console.log(`### CPU: ${profiles[0].name}, ${cpu.totalMs} ms\n`);
    console.log(entriesTable(cpu.origins, "ms"));
    console.log("");
    console.log(entriesTable(cpu.functions, "ms"));
    console.log("");
  }
  for (const name of snapshots ? [`${id}-load`, `${id}-after-gc`] : []) {
    const heap = summarizeHeap(
      JSON.parse(await Deno.readTextFile(`${out}${name}.heapsnapshot`)),
    );
    console.log(
      `### Heap: ${name}.heapsnapshot, ${mb(heap.totalBytes)} shallow\n`,
    );
    console.log(entriesTable(heap.entries, "MB"));
    console.log("");
  }
} finally {
  await brokers?.stop();
}

/**
 * Throughput, latency and memory of the bridge, side by side with the limits
 * of the clients it is built on and with what a user would otherwise write,
 * on real brokers, in one run.
 *
 * Usage: `deno task bench [--quick] [--messages N] [--sizes 256,4096]
 * [--only id,id] [--no-outage] [--cpu-prof DIR] [--readme] [--render JSON]`
 *
 * - Starts its own Mosquitto and Kafka (tools/brokers, as the tests do), or
 *   uses DX_TEST_MQTT_URL and DX_TEST_KAFKA_BROKERS (then without the
 *   outage case, which kills Kafka).
 * - For each payload size and case: N QoS 1 messages as fast as possible
 *   (50,000 by default, 10,000 with `--quick`), then messages at half the
 *   rate reached for about 10 s (4 s with `--quick`). Every process under
 *   test runs on its own; its peak RSS is read from /proc.
 * - Then the Kafka outage case: the bridge at half its rate while Kafka is
 *   killed for 10 s and restarted.
 * - Prints the table on stdout and progress on stderr; writes
 *   `bench/results/<date>.json`, `<date>.svg` and `latest.md` /
 *   `latest.svg` (under `bench/results/quick/` for `--quick`); with
 *   `--readme`, a full run also replaces the table in README.md between
 *   its `<!-- bench:start -->` and `<!-- bench:end -->` markers.
 *   `--render <json>` writes the outputs again from an earlier run's JSON.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  type Brokers,
  describeErrorChain,
  startBrokers,
} from "../tools/brokers/mod.ts";
import {
  CASES,
  type Context,
  HEAP_FLAGS,
  type PhasePlan,
  runCase,
} from "./_cases.ts";
import { killAll } from "./_child.ts";
import { describeMachine, loadAverage } from "./_machine.ts";
import { runOutage } from "./_outage.ts";
import { Publisher } from "./_publisher.ts";
import {
  casesTable,
  markdown,
  outageTable,
  svgChart,
  targetLines,
} from "./_report.ts";
import {
  type BenchReport,
  type CaseResult,
  evaluateTargets,
  type OutageResult,
} from "./_results.ts";

const NOTES = [
  "Latency is measured per message from the publish time stamped in the message (the `benchts` CloudEvent attribute, a `ce_benchts` header on Kafka) to its first read: by the MQTT.js subscriber for the MQTT limit, otherwise by a kafkajs consumer reading the Kafka topic (publish → Kafka read); for the Kafka limits the stamp is taken when the record is made, just before the send.",
  "msg/s: distinct messages read, divided by the time from the first publish to the last first read. Latency at the maximum rate includes the backlog the publisher builds up at the broker; latency at half that rate is the one to read.",
  "Each process under test runs on its own; peak RSS is its VmHWM (of the larger process for two bridges). The publisher, the reader, Mosquitto and Kafka share the same cores.",
  "Kafka limits: the records the bridge would write (binary mode, same headers), 500 (at most 1 MB) per request, one request at a time, acks all; `@platformatic/kafka` for information only.",
  "Naive bridge: MQTT.js `handleMessage` awaiting one kafkajs `producer.send` (acks all) per message before its PUBACK: at least once, one message at a time.",
  "Ack on receipt: this library's `mqttStream` and `KafkaSink` (as the bridge configures them), built in the bench, each message acknowledged on receipt: what the bridge would do without its guarantee.",
  "Scale-out: two bridge processes subscribed to `$share/<group>/<filter>`, one Kafka topic of one partition.",
  "Kafka outage: the bridge at half its maximum 256 B rate while Kafka is killed, left down 10 s and restarted (Kafka down includes its restart); RSS sampled every 200 ms; catch-up read from the bridge's `/metrics`.",
];

interface Options {
  quick: boolean;
  messages: number;
  sizes: number[];
  only: string[] | undefined;
  outage: boolean;
  cpuProfDir: string | undefined;
  readme: boolean;
  render: string | undefined;
}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      messages: { type: "string" },
      sizes: { type: "string", default: "256,4096" },
      only: { type: "string" },
      "no-outage": { type: "boolean", default: false },
      "cpu-prof": { type: "string" },
      render: { type: "string" },
      readme: { type: "boolean", default: false },
    },
  });
  const messages = values.messages === undefined
    ? values.quick ? 10_000 : 50_000
    : Number(values.messages);
  if (!Number.isInteger(messages) || messages < 100) {
    throw new RangeError(
      `--messages needs an integer of at least 100, got ${values.messages}`,
    );
  }
  const sizes = values.sizes.split(",").map(Number);
  if (sizes.some((size) => !Number.isInteger(size) || size < 1)) {
    throw new RangeError(
      `--sizes needs payload sizes in bytes, got ${values.sizes}`,
    );
  }
  const only = values.only?.split(",");
  const known = [...CASES.map((c) => c.id), "outage"];
  const unknown = only?.filter((id) => !known.includes(id)) ?? [];
  if (unknown.length > 0) {
    throw new RangeError(
      `--only takes case ids among ${known.join(", ")}; got ${
        unknown.join(", ")
      }`,
    );
  }
  return {
    quick: values.quick,
    messages,
    sizes,
    only,
    outage: !values["no-outage"] &&
      (only === undefined || only.includes("outage")),
    cpuProfDir: values["cpu-prof"],
    readme: values.readme,
    render: values.render,
  };
}

function progress(text: string): void {
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}`);
}

async function start(): Promise<Brokers | undefined> {
  if (
    Deno.env.get("DX_TEST_MQTT_URL") && Deno.env.get("DX_TEST_KAFKA_BROKERS")
  ) {
    return undefined;
  }
  progress("starting Mosquitto and Kafka (tools/brokers)");
  try {
    return await startBrokers();
  } catch (error) {
    console.error(
      `bench: the brokers did not start, so nothing was measured.\n${
        describeErrorChain(error)
      }`,
    );
    Deno.exit(1);
  }
}

/** The `--v8-flags=...` of the `bridge` task in deno.json, if any. */
async function bridgeTaskV8Flags(): Promise<string | undefined> {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
  );
  const task: string = config.tasks?.bridge ?? "";
  return /--v8-flags=(\S+)/.exec(task)?.[1];
}

async function main(): Promise<void> {
  let options: Options;
  try {
    options = parseOptions(Deno.args);
  } catch (error) {
    console.error(`bench: ${(error as Error).message}`);
    Deno.exit(2);
  }
  if (options.render) {
    // Only the output again, from the JSON of an earlier run.
    const report: BenchReport = JSON.parse(
      await Deno.readTextFile(options.render),
    );
    report.targets = evaluateTargets(report.cases, report.outage);
    await write(report, report.mode === "quick");
    if (options.readme) await updateReadme(report);
    return;
  }
  const began = performance.now();
  const before = await loadAverage();
  const brokers = await start();
  const mqttUrl = brokers?.mqttUrl ?? Deno.env.get("DX_TEST_MQTT_URL")!;
  const kafkaBrokers = brokers?.kafkaBrokers ??
    Deno.env.get("DX_TEST_KAFKA_BROKERS")!.split(",");
  const tmpDir = await Deno.makeTempDir({ prefix: "dx-bench-" });
  // Interrupted: leave no process and no file of the bench behind.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      console.error(`bench: ${signal}; stopping its processes and brokers`);
      killAll();
      brokers?.stopSync();
      Deno.removeSync(tmpDir, { recursive: true });
      Deno.exit(130);
    });
  }
  let publisher: Publisher | undefined;
  try {
    publisher = await Publisher.connect(mqttUrl);
    const taskV8Flags = await bridgeTaskV8Flags();
    const context: Context = {
      mqttUrl,
      kafkaBrokers,
      publisher,
      tmpDir,
      stallMs: options.quick ? 10_000 : 20_000,
      bridgeFlags: [
        ...(taskV8Flags ? [`--v8-flags=${taskV8Flags}`] : []),
        ...(options.cpuProfDir
          ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`]
          : []),
      ],
      progress,
    };
    const plan: PhasePlan = {
      count: options.messages,
      halfSeconds: options.quick ? 4 : 10,
      halfMin: options.quick ? 300 : 1000,
    };
    const specs = CASES.filter((spec) =>
      (options.only === undefined || options.only.includes(spec.id)) &&
      (spec.id !== "bridge-heap" || taskV8Flags !== HEAP_FLAGS)
    );
    progress(
      `the bridge runs as \`deno task bridge\` does${
        taskV8Flags ? `, with --v8-flags=${taskV8Flags}` : " (no --v8-flags)"
      }`,
    );
    const total = specs.length * options.sizes.length;
    const cases: CaseResult[] = [];
    let index = 0;
    for (const size of options.sizes) {
      for (const spec of specs) {
        index++;
        cases.push(
          await runCase(
            context,
            spec,
            size,
            plan,
            `[${index}/${total}] ${spec.label}, ${size} B`,
          ),
        );
      }
    }
    let outage: OutageResult | null = null;
    if (options.outage && brokers) {
      const bridge = cases.find((c) => c.id === "bridge" && c.size === 256);
      const rate = bridge?.max
        ? Math.max(100, Math.round(bridge.max.throughput / 2))
        : 2000;
      outage = await runOutage(context, brokers.kafka, 256, rate, {
        before: options.quick ? 3 : 5,
        outage: 10,
        after: options.quick ? 3 : 5,
      });
    }
    const machine = await describeMachine(
      brokers?.kafka.version ?? "external",
    );
    const report: BenchReport = {
      date: new Date().toISOString(),
      mode: options.quick ? "quick" : "full",
      messagesPerCase: options.messages,
      halfRateSeconds: plan.halfSeconds,
      machine,
      bridgeV8Flags: taskV8Flags ?? null,
      loadAverage: { before, after: await loadAverage() },
      durationSeconds: Math.round((performance.now() - began) / 1000),
      notes: [
        ...NOTES,
        `The bridge processes run with the flags of \`deno task bridge\`: ${
          taskV8Flags ? `--v8-flags=${taskV8Flags}` : "no --v8-flags"
        }${
          specs.some((spec) => spec.id === "bridge-heap")
            ? `; the row "V8 heap flags" adds --v8-flags=${HEAP_FLAGS}`
            : ""
        }.`,
      ],
      cases,
      outage,
      targets: evaluateTargets(cases, outage),
    };
    await write(report, options.quick);
    if (options.readme) await updateReadme(report);
  } finally {
    await publisher?.close().catch(() => {});
    await brokers?.stop();
    await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
  }
}

async function write(report: BenchReport, quick: boolean): Promise<void> {
  const dir = new URL(
    quick ? "./results/quick/" : "./results/",
    import.meta.url,
  );
  await Deno.mkdir(dir, { recursive: true });
  const stamp = report.date.slice(0, 19).replace(/:/g, "-");
  const jsonName = `${quick ? "quick/" : ""}${stamp}.json`;
  const svg = svgChart(report);
  await Deno.writeTextFile(
    new URL(`${stamp}.json`, dir),
    JSON.stringify(report, null, 2) + "\n",
  );
  await Deno.writeTextFile(new URL(`${stamp}.svg`, dir), svg);
  await Deno.writeTextFile(new URL("latest.svg", dir), svg);
  await Deno.writeTextFile(
    new URL("latest.md", dir),
    markdown(report, jsonName),
  );

  console.log(casesTable(report.cases));
  if (report.outage) console.log(`\n${outageTable(report.outage)}`);
  console.log(`\n${targetLines(report.targets).join("\n")}`);
  console.log(
    `\nload average ${report.loadAverage.before} before, ${report.loadAverage.after} after; ${report.durationSeconds} s`,
  );
  progress(
    `wrote ${
      new URL(`${stamp}.json`, dir).pathname
    }, ${stamp}.svg, latest.md and latest.svg`,
  );
}

const README_START = "<!-- bench:start -->";
const README_END = "<!-- bench:end -->";

/**
 * Replaces what README.md holds between its bench markers with the table of
 * this run (`--readme`, full runs only).
 */
async function updateReadme(report: BenchReport): Promise<void> {
  if (report.mode !== "full") {
    progress("--readme: only a full run goes into README.md; left as it is");
    return;
  }
  const url = new URL("../README.md", import.meta.url);
  const text = await Deno.readTextFile(url);
  const start = text.indexOf(README_START);
  const end = text.indexOf(README_END);
  if (start < 0 || end < start) {
    progress(`--readme: README.md has no ${README_START} ... ${README_END}`);
    return;
  }
  const stamp = report.date.slice(0, 19).replace(/:/g, "-");
  await Deno.writeTextFile(
    url,
    `${text.slice(0, start + README_START.length)}\n${
      markdown(report, `${stamp}.json`)
    }${text.slice(end)}`,
  );
  // deno fmt --check runs in CI: the table goes in formatted.
  const fmt = await new Deno.Command(Deno.execPath(), {
    args: ["fmt", url.pathname],
    stdout: "null",
    stderr: "inherit",
  }).output();
  progress(
    `--readme: README.md updated between its bench markers${
      fmt.success ? "" : "; deno fmt README.md failed, run it by hand"
    }`,
  );
}

if (import.meta.main) {
  await main();
}

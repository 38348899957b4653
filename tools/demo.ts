/**
 * `deno task demo`: the whole data flow on one machine, in one command.
 *
 * Starts a private Mosquitto and Kafka on free ports of 127.0.0.1 (as
 * `deno task brokers` does), the bridge (the CLI, as a child process, with
 * its defaults: routes `telemetry` and `alert`, a default topic and a
 * dead-letter topic), and a publisher of mock CloudEvents (telemetry, alerts,
 * events of unknown or no classification, and a few malformed messages).
 * Then it reads the bridge's Kafka topics and shows how many events each has
 * received, live, until Ctrl-C.
 *
 * Ctrl-C or SIGTERM stops the publisher, the bridge (which drains what is in
 * flight), the reader and the brokers, in that order, deletes the brokers'
 * data and the bridge's log, and exits 0. A second signal, a second or more
 * after the first, kills what is left at once and exits 130.
 *
 * Output: a few lines saying what runs where, then the tally: redrawn in
 * place on a terminal; otherwise a line `tally: published=N <topic>=N ...`
 * each second it changes. Environment: `DEMO_RATE` (events per second,
 * default 20) and `DEMO_SEED` (default 1).
 *
 * Exit codes: 0 after a stop by signal; 1 when a broker cannot start, or the
 * bridge or a broker fails; 130 after a second signal.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { type KafkaHeaderValue, kafkaStream } from "../src/kafka/mod.ts";
import { mockCloudEvents, mockSource } from "../src/streams/mod.ts";
import {
  type Brokers,
  describeErrorChain,
  freePort,
  isBrokerUnavailableError,
  startBrokers,
} from "./brokers/mod.ts";

/** The bridge's default topics, in the order the tally shows them. */
const TOPICS = [
  { topic: "dx.telemetry", role: "route telemetry" },
  { topic: "dx.alerts", role: "route alert" },
  { topic: "dx.unclassified", role: "default" },
  { topic: "dx.deadletter", role: "dead letter" },
] as const;
const DEAD_LETTER_TOPIC = "dx.deadletter";
const CLI = new URL("../src/cli/main.ts", import.meta.url).pathname;
const REPO_ROOT = new URL("../", import.meta.url).pathname;
const SIGNAL_REPEAT_WINDOW_MS = 1000;
const BRIDGE_STOP_TIMEOUT_MS = 30_000;

/** What the demo counts, updated in place. */
interface Tally {
  published: number;
  perTopic: Map<string, number>;
  /** Dead-letter records per `dx-error` reason. */
  reasons: Map<string, number>;
}

async function main(): Promise<number> {
  const rate = positiveNumber("DEMO_RATE", 20);
  const seed = positiveNumber("DEMO_SEED", 1);
  const stop = new AbortController();
  const workDir = await Deno.makeTempDir({ prefix: "dx-demo-" });
  let brokers: Brokers | undefined;
  let bridge: BridgeChild | undefined;
  const listeners = onStopSignals(stop, () => {
    // A second signal: nothing graceful any more.
    bridge?.kill();
    brokers?.stopSync();
    try {
      Deno.removeSync(workDir, { recursive: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    Deno.exit(130);
  });

  const tally: Tally = {
    published: 0,
    perTopic: new Map(),
    reasons: new Map(),
  };
  let publishing: Promise<void> | undefined;
  let reading: Promise<void> | undefined;
  const stopReading = new AbortController();
  let screen: TallyScreen | undefined;
  let code = 0;
  try {
    say(
      "Starting Mosquitto and Kafka on 127.0.0.1 (the first run also fetches Kafka's jars with Maven)...",
    );
    brokers = await startBrokers({ signal: stop.signal });
    say(
      `Mosquitto at ${brokers.mqttUrl}, Kafka at ${
        brokers.kafkaBrokers.join(",")
      }`,
    );
    say(`  data: ${brokers.mosquitto.dataDir} ${brokers.kafka.dataDir}`);

    const metricsPort = freePort();
    bridge = new BridgeChild(brokers, metricsPort, `${workDir}/bridge.log`);
    say(`Bridge started (pid ${bridge.pid}); its log: ${bridge.logPath}`);
    await untilStopped(bridge.ready, stop.signal);
    say(`Bridge ready; metrics at http://127.0.0.1:${metricsPort}/metrics`);

    publishing = publish(brokers.mqttUrl, { rate, seed }, tally, stop.signal);
    say(
      `Publishing ${rate} mock CloudEvents a second to devices/demo/... (seed ${seed})`,
    );
    reading = readTally(brokers.kafkaBrokers, tally, stopReading.signal);
    screen = new TallyScreen(tally, stop.signal);
    say("Ctrl-C stops everything the demo started.");
    await untilStopped(
      Promise.all([publishing, reading, bridge.exited.then(bridgeDied)]),
      stop.signal,
    );
  } catch (error) {
    if (!stop.signal.aborted) {
      console.error(
        isBrokerUnavailableError(error)
          ? `demo: ${error.message}`
          : `demo: ${describeErrorChain(error)}`,
      );
      code = 1;
    }
  } finally {
    stop.abort();
    screen?.close();
    // A failure before the stop was reported above; one during the stop is
    // the stop's own doing (a broker going away under the publisher).
    await publishing?.catch(() => {});
    const bridgeCode = await bridge?.stop(BRIDGE_STOP_TIMEOUT_MS);
    stopReading.abort();
    await reading?.catch(() => {});
    await brokers?.stop();
    if (code !== 0 && bridge) await showLogTail(bridge.logPath);
    await Deno.remove(workDir, { recursive: true });
    for (const [name, listener] of listeners) {
      Deno.removeSignalListener(name, listener);
    }
    say(`${finalLine(tally)}`);
    say(
      `Stopped the publisher, the bridge (exit code ${
        bridgeCode ?? "-"
      }) and the brokers; their data is deleted.`,
    );
  }
  return code;
}

/** Calls `stop.abort()` on the first SIGINT or SIGTERM, `force` on a later one. */
function onStopSignals(
  stop: AbortController,
  force: () => void,
): [Deno.Signal, () => void][] {
  let firstAt = 0;
  return (["SIGINT", "SIGTERM"] as const).map((name) => {
    const listener = () => {
      if (!stop.signal.aborted) {
        firstAt = Date.now();
        stop.abort(new Error(`${name} received`));
        say(`${name}: stopping...`);
        return;
      }
      // One Ctrl-C arrives twice: from the terminal and from `deno task`.
      if (Date.now() - firstAt < SIGNAL_REPEAT_WINDOW_MS) return;
      say(`${name} again: killing what is left`);
      force();
    };
    Deno.addSignalListener(name, listener);
    return [name, listener];
  });
}

/**
 * The bridge CLI as a child process, with the demo's brokers, its JSON log
 * lines written to a file, and readiness taken from the log line that says
 * the subscription is active (the topics exist by then).
 */
class BridgeChild {
  readonly logPath: string;
  readonly ready: Promise<void>;
  readonly exited: Promise<Deno.CommandStatus>;
  #child: Deno.ChildProcess;
  #done = false;
  #logged: Promise<void>;

  constructor(brokers: Brokers, metricsPort: number, logPath: string) {
    this.logPath = logPath;
    // The demo's settings only: DX_ variables of the shell are left out.
    const env = Object.fromEntries(
      Object.entries(Deno.env.toObject()).filter(([name]) =>
        !name.startsWith("DX_")
      ),
    );
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "--allow-env", "--allow-read", CLI],
      cwd: REPO_ROOT,
      clearEnv: true,
      env: {
        ...env,
        NO_COLOR: "1",
        DX_MQTT_URL: brokers.mqttUrl,
        DX_KAFKA_BROKERS: brokers.kafkaBrokers.join(","),
        DX_MQTT_CLIENT_ID: "dx-demo-bridge",
        DX_METRICS_PORT: String(metricsPort),
        DX_DRAIN_TIMEOUT_MS: "5000",
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.exited = this.#child.status;
    this.exited.then(() => this.#done = true);
    const subscribed = Promise.withResolvers<void>();
    this.ready = subscribed.promise;
    this.#logged = this.#log(subscribed.resolve);
    this.exited.then((status) =>
      subscribed.reject(
        new Error(
          `the bridge exited with code ${status.code} before it was ready; the end of its log follows`,
        ),
      )
    );
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** SIGTERM, then the exit code; SIGKILL after `timeoutMs`. */
  async stop(timeoutMs: number): Promise<number> {
    if (!this.#done) this.#child.kill("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.kill();
        resolve();
      }, timeoutMs);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    const status = await this.exited;
    await this.#logged;
    return status.code;
  }

  kill(): void {
    if (!this.#done) this.#child.kill("SIGKILL");
  }

  async #log(onSubscribed: () => void): Promise<void> {
    using file = await Deno.open(this.logPath, { create: true, write: true });
    const encoder = new TextEncoder();
    const copy = async (stream: ReadableStream<Uint8Array>) => {
      let partial = "";
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        await file.write(encoder.encode(text));
        const lines = (partial + text).split("\n");
        partial = lines.pop()!;
        if (lines.some((line) => line.includes("MQTT subscribed to"))) {
          onSubscribed();
        }
      }
    };
    await Promise.all([copy(this.#child.stdout), copy(this.#child.stderr)]);
  }
}

function bridgeDied(status: Deno.CommandStatus): never {
  throw new Error(
    `the bridge exited by itself with code ${status.code}; the end of its log follows`,
  );
}

/** Prints the last lines of the bridge's log on stderr, before it is deleted. */
async function showLogTail(path: string, lines = 20): Promise<void> {
  try {
    const text = await Deno.readTextFile(path);
    console.error(text.trimEnd().split("\n").slice(-lines).join("\n"));
  } catch (error) {
    console.error(`demo: cannot read the bridge's log ${path}: ${error}`);
  }
}

/** Publishes mock CloudEvents at `rate` a second until `signal` aborts. */
async function publish(
  url: string,
  { rate, seed }: { rate: number; seed: number },
  tally: Tally,
  signal: AbortSignal,
): Promise<void> {
  const client = await mqtt.connectAsync(url, {
    clientId: "dx-demo-publisher",
    protocolVersion: 5,
  });
  try {
    const items = mockCloudEvents({
      seed,
      malformedRatio: 0.05,
      sizes: { min: 200, max: 1024 },
    });
    const ticks = mockSource({
      intervalMs: 1000 / rate,
      signal,
      value: (index) => ({ index, item: items.next().value! }),
    });
    for await (const { index, item } of ticks) {
      const payload = Buffer.from(
        item.payload.buffer,
        item.payload.byteOffset,
        item.payload.byteLength,
      );
      const topic = `devices/demo/sensor-${index % 8}`;
      await untilStopped(
        client.publishAsync(topic, payload, { qos: 1 }),
        signal,
      );
      tally.published++;
    }
  } catch (error) {
    if (!signal.aborted) throw error;
  } finally {
    await client.endAsync(true);
  }
}

/** Counts the records of the bridge's topics until `signal` aborts. */
async function readTally(
  brokers: string[],
  tally: Tally,
  signal: AbortSignal,
): Promise<void> {
  const records = kafkaStream({
    brokers,
    clientId: "dx-demo-tally",
    groupId: `dx-demo-tally-${Date.now()}`,
    topics: TOPICS.map(({ topic }) => topic),
    fromBeginning: true,
    // Nothing is ever nacked here: every record is only counted.
    nack: { exhausted: "stop" },
    drainTimeoutMs: 1000,
    signal,
  });
  for await (const envelope of records) {
    const { topic, headers } = envelope.record;
    tally.perTopic.set(topic, (tally.perTopic.get(topic) ?? 0) + 1);
    if (topic === DEAD_LETTER_TOPIC) {
      const reason = headerText(headers["dx-error"]) ?? "unknown";
      tally.reasons.set(reason, (tally.reasons.get(reason) ?? 0) + 1);
    }
    envelope.ack();
  }
}

function headerText(value: KafkaHeaderValue | undefined): string | undefined {
  const first = Array.isArray(value) ? value[0] : value;
  if (first === undefined) return undefined;
  return typeof first === "string" ? first : new TextDecoder().decode(first);
}

/**
 * Shows the tally: on a terminal, a block redrawn in place twice a second;
 * otherwise one line each second it changed.
 */
class TallyScreen {
  #timer: ReturnType<typeof setInterval>;
  #drawn = 0;
  #last = "";

  /** Stops drawing when `signal` aborts, so that what follows is not overdrawn. */
  constructor(tally: Tally, signal: AbortSignal) {
    const terminal = Deno.stdout.isTerminal();
    this.#timer = setInterval(
      () => terminal ? this.#redraw(tally) : this.#line(tally),
      terminal ? 500 : 1000,
    );
    signal.addEventListener("abort", () => this.close(), { once: true });
  }

  close(): void {
    clearInterval(this.#timer);
  }

  #redraw(tally: Tally): void {
    const lines = [
      "",
      `  ${"published to MQTT".padEnd(34)}${count(tally.published)}`,
      ...TOPICS.map(({ topic, role }) =>
        `  ${topic.padEnd(17)}${role.padEnd(17)}${
          count(tally.perTopic.get(topic) ?? 0)
        }`
      ),
      `  dead letters by reason: ${reasons(tally) || "none yet"}`,
    ];
    // A line that wraps would throw the redraw off by a row: cut it instead.
    const width = Deno.consoleSize().columns - 1;
    const text = lines.map((line) =>
      `\x1b[2K${line.length > width ? `${line.slice(0, width - 1)}…` : line}`
    ).join("\n");
    const up = this.#drawn > 0 ? `\x1b[${this.#drawn}A` : "";
    Deno.stdout.writeSync(new TextEncoder().encode(`${up}\r${text}\n`));
    this.#drawn = lines.length;
  }

  #line(tally: Tally): void {
    const line = finalLine(tally);
    if (line === this.#last) return;
    this.#last = line;
    console.log(line);
  }
}

function finalLine(tally: Tally): string {
  const perTopic = TOPICS.map(({ topic }) =>
    `${topic}=${tally.perTopic.get(topic) ?? 0}`
  );
  return `tally: published=${tally.published} ${perTopic.join(" ")}`;
}

function count(value: number): string {
  return value.toLocaleString("en").padStart(8);
}

function reasons(tally: Tally): string {
  return [...tally.reasons].sort(([a], [b]) => a.localeCompare(b))
    .map(([reason, n]) => `${reason} ${n}`).join(", ");
}

/** Resolves or rejects with `work`, or rejects when `signal` aborts. */
function untilStopped<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() =>
      signal.removeEventListener("abort", onAbort)
    );
  });
}

function positiveNumber(name: string, fallback: number): number {
  const text = Deno.env.get(name);
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`${name} must be a number above 0, got "${text}"`);
  }
  return value;
}

function say(line: string): void {
  console.log(line);
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (error) {
    console.error(`demo: ${describeErrorChain(error)}`);
    Deno.exit(1);
  }
}

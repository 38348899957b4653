/**
 * The cases of the bench and how one is run: its processes are started,
 * messages are sent as fast as possible, then at half the rate reached, and
 * a reader counts what arrives and how late.
 *
 * @module
 */
import { createTopics, uniqueName } from "../tests/_kafka.ts";
import { Child, memoryStatus, RssSampler } from "./_child.ts";
import { sleep } from "./_child_io.ts";
import { epochMs, type PayloadTemplate, payloadTemplate } from "./_payload.ts";
import type { Publisher } from "./_publisher.ts";
import type { CaseResult, PhaseResult } from "./_results.ts";
import type { LatencySummary } from "./_track.ts";

/** What every case needs from the run. */
export interface Context {
  mqttUrl: string;
  kafkaBrokers: string[];
  publisher: Publisher;
  /** Directory for bridge configuration files. */
  tmpDir: string;
  /** A phase ends when nothing new arrived for this long after the load. */
  stallMs: number;
  /**
   * `deno run` flags of the bridge processes besides permissions: the
   * `--v8-flags` of `deno task bridge`, and profiling.
   */
  bridgeFlags: string[];
  /** Writes a progress line (stderr). */
  progress(text: string): void;
}

/** The processes of one case, ready to take load. */
export interface Setup {
  /** Processes under test, whose memory is reported. */
  subjects: Child[];
  /** The process that counts what arrives (may be a subject too). */
  tracker: Child;
  /**
   * Sends `count` messages from `seqBase` at `rate` per second (0: as fast
   * as possible); resolves with the epoch milliseconds of the first send.
   */
  load(
    seqBase: number,
    count: number,
    rate: number,
    onProgress: (sent: number) => void,
  ): Promise<number>;
  /** Stops every process of the case. */
  close(): Promise<void>;
}

/** A case of the bench. */
export interface CaseSpec {
  id: string;
  label: string;
  latencyMeasured: string;
  /** Whether nothing may be lost. */
  guarantee: boolean;
  processes: number;
  setup(context: Context, size: number, capacity: number): Promise<Setup>;
}

const READY_MS = 90_000;

/** Names for one case: MQTT topic and filter, Kafka topics, client ids. */
export function names(): {
  id: string;
  mqttTopic: string;
  mqttFilter: string;
  kafkaTopic: string;
  deadLetterTopic: string;
} {
  const id = uniqueName("bench");
  return {
    id,
    mqttTopic: `bench/${id}/d`,
    mqttFilter: `bench/${id}/#`,
    kafkaTopic: `${id}.events`,
    deadLetterTopic: `${id}.dlq`,
  };
}

async function startAll(
  children: Child[],
  ready: (c: Child) => Promise<unknown>,
) {
  try {
    await Promise.all(children.map(ready));
  } catch (error) {
    await Promise.all(children.map((child) => child.stop()));
    throw error;
  }
}

function publisherLoad(
  context: Context,
  topic: string,
  template: PayloadTemplate,
): Setup["load"] {
  return async (seqBase, count, rate, onProgress) => {
    const result = await context.publisher.publish({
      topic,
      template,
      seqBase,
      count,
      rate,
      onProgress,
    });
    if (result.failed > 0) {
      throw new Error(`${result.failed} publishes failed`);
    }
    return result.startedAt;
  };
}

/** A reader of `topic` tracking sequence numbers below `capacity`. */
export function reader(
  context: Context,
  topic: string,
  capacity: number,
): Child {
  return Child.role("reader", {
    brokers: context.kafkaBrokers,
    topic,
    capacity,
  });
}

/** Writes a bridge configuration file and returns its path. */
export async function bridgeConfig(
  context: Context,
  name: string,
  fields: {
    topics: string[];
    clientId: string;
    defaultTopic: string;
    deadLetterTopic: string;
    metricsPort?: number;
  },
): Promise<string> {
  const path = `${context.tmpDir}/${name}.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      mqtt: {
        url: context.mqttUrl,
        topics: fields.topics,
        clientId: fields.clientId,
      },
      kafka: { brokers: context.kafkaBrokers },
      routes: {},
      defaultTopic: fields.defaultTopic,
      deadLetterTopic: fields.deadLetterTopic,
      log: { level: "info" },
      ...(fields.metricsPort ? { metrics: { port: fields.metricsPort } } : {}),
    }),
  );
  return path;
}

/** Resolves once the bridge CLI has subscribed. */
export function bridgeSubscribed(child: Child): Promise<unknown> {
  return child.waitFor(
    "the MQTT subscription",
    (line) => String(line.message ?? "").startsWith("MQTT subscribed"),
    { timeoutMs: READY_MS },
  );
}

/** Resolves once a role is ready. */
export const ready = (child: Child): Promise<unknown> =>
  child.waitForEvent("ready", { timeoutMs: READY_MS });

/** MQTT.js publisher → Mosquitto → a plain MQTT.js subscriber. */
const mqttLimit: CaseSpec = {
  id: "mqtt-limit",
  label: "MQTT limit: MQTT.js subscriber",
  latencyMeasured: "publish → MQTT receive",
  guarantee: false,
  processes: 1,
  async setup(context, size, capacity) {
    const n = names();
    const template = payloadTemplate(size);
    const subscriber = Child.role("mqtt-subscriber", {
      url: context.mqttUrl,
      topic: n.mqttTopic,
      capacity,
      seqOffset: template.seqOffset,
      tsOffset: template.tsOffset,
    });
    await startAll([subscriber], ready);
    return {
      subjects: [subscriber],
      tracker: subscriber,
      load: publisherLoad(context, n.mqttTopic, template),
      close: async () => void await subscriber.stop(),
    };
  },
};

function producerLimit(
  client: "kafkajs" | "platformatic",
  label: string,
): CaseSpec {
  return {
    id: `${client}-limit`,
    label,
    latencyMeasured: "send → Kafka read",
    guarantee: false,
    processes: 1,
    async setup(context, size, capacity) {
      const n = names();
      await createTopics(context.kafkaBrokers, [n.kafkaTopic]);
      const producer = Child.role("producer", {
        client,
        brokers: context.kafkaBrokers,
        topic: n.kafkaTopic,
        size,
        batchSize: 500,
      });
      const tracker = reader(context, n.kafkaTopic, capacity);
      await startAll([producer, tracker], ready);
      return {
        subjects: [producer],
        tracker,
        load: async (seqBase, count, rate) => {
          const since = producer.lines.length;
          await producer.send(`run ${seqBase} ${count} ${rate}`);
          const ran = await producer.waitForEvent("ran", {
            since,
            timeoutMs: 3_600_000,
          });
          if (Number(ran.failed) > 0) {
            throw new Error(`${ran.failed} records failed`);
          }
          return Number(ran.startedAt);
        },
        close: async () => {
          await Promise.all([producer.stop(), tracker.stop()]);
        },
      };
    },
  };
}

/** MQTT → some bridge process(es) → Kafka, read back by a reader. */
function mqttToKafka(
  spec: Omit<CaseSpec, "setup">,
  start: (
    context: Context,
    n: ReturnType<typeof names>,
  ) => Promise<Child[]>,
): CaseSpec {
  return {
    ...spec,
    async setup(context, size, capacity) {
      const n = names();
      await createTopics(context.kafkaBrokers, [
        n.kafkaTopic,
        n.deadLetterTopic,
      ]);
      const tracker = reader(context, n.kafkaTopic, capacity);
      const [subjects] = await Promise.all([
        start(context, n),
        ready(tracker),
      ]).catch(async (error) => {
        await tracker.stop();
        throw error;
      });
      return {
        subjects,
        tracker,
        load: publisherLoad(context, n.mqttTopic, payloadTemplate(size)),
        close: async () => {
          await Promise.all([
            ...subjects.map((child) =>
              child.stop({ signal: "SIGTERM", timeoutMs: 20_000 })
            ),
            tracker.stop(),
          ]);
        },
      };
    },
  };
}

const naive = mqttToKafka({
  id: "naive",
  label: "naive bridge: await send per message",
  latencyMeasured: "publish → Kafka read",
  guarantee: true,
  processes: 1,
}, async (context, n) => {
  const child = Child.role("naive-bridge", {
    url: context.mqttUrl,
    topic: n.mqttFilter,
    clientId: `${n.id}-naive`,
    brokers: context.kafkaBrokers,
    kafkaTopic: n.kafkaTopic,
  });
  await startAll([child], ready);
  return [child];
});

/**
 * V8 heap settings that bound the bridge's memory: the old generation may
 * grow by a quarter of its live size before a major GC (instead of up to
 * four times), and each semi-space of the young generation stays at most
 * 8 MB.
 */
export const HEAP_FLAGS = "--heap-growing-percent=25,--max-semi-space-size=8";

/** The bridge CLI, with the flags of the run or with `v8Flags`. */
function bridgeCase(id: string, label: string, v8Flags?: string) {
  return mqttToKafka({
    id,
    label,
    latencyMeasured: "publish → Kafka read",
    guarantee: true,
    processes: 1,
  }, async (context, n) => {
    const config = await bridgeConfig(context, n.id, {
      topics: [n.mqttFilter],
      clientId: `${n.id}-bridge`,
      defaultTopic: n.kafkaTopic,
      deadLetterTopic: n.deadLetterTopic,
    });
    const flags = v8Flags === undefined ? context.bridgeFlags : [
      ...context.bridgeFlags.filter((flag) => !flag.startsWith("--v8-flags")),
      `--v8-flags=${v8Flags}`,
    ];
    const child = Child.bridge("bridge", config, flags);
    await startAll([child], bridgeSubscribed);
    return [child];
  });
}

const ackOnReceipt = mqttToKafka({
  id: "ack-on-receipt",
  label: "bridge parts, ack on receipt",
  latencyMeasured: "publish → Kafka read",
  guarantee: false,
  processes: 1,
}, async (context, n) => {
  const child = Child.role("ack-on-receipt", {
    url: context.mqttUrl,
    topics: [n.mqttFilter],
    clientId: `${n.id}-aor`,
    brokers: context.kafkaBrokers,
    defaultTopic: n.kafkaTopic,
    deadLetterTopic: n.deadLetterTopic,
    // The bridge's defaults (see src/bridge/config.ts and bridge.ts).
    maxInFlight: 1000,
    batchSize: 500,
    lingerMs: 5,
    maxBufferedRecords: 2000,
  });
  await startAll([child], ready);
  return [child];
});

const scaleOut = mqttToKafka({
  id: "scale-out",
  label: "2 bridges, shared subscription",
  latencyMeasured: "publish → Kafka read",
  guarantee: true,
  processes: 2,
}, async (context, n) => {
  const children: Child[] = [];
  for (const member of ["a", "b"]) {
    const config = await bridgeConfig(context, `${n.id}-${member}`, {
      topics: [`$share/${n.id}/${n.mqttFilter}`],
      clientId: `${n.id}-bridge-${member}`,
      defaultTopic: n.kafkaTopic,
      deadLetterTopic: n.deadLetterTopic,
    });
    children.push(
      Child.bridge(`bridge ${member}`, config, context.bridgeFlags),
    );
  }
  await startAll(children, bridgeSubscribed);
  return children;
});

/** Every case, in the order they run. */
export const CASES: readonly CaseSpec[] = [
  mqttLimit,
  producerLimit("kafkajs", "Kafka limit: kafkajs producer"),
  producerLimit("platformatic", "Kafka limit: @platformatic/kafka producer"),
  naive,
  bridgeCase("bridge", "bridge, at-least-once"),
  ackOnReceipt,
  scaleOut,
  // Beyond the required cases: the bridge with the V8 heap settings that bound its
  // memory (see bench/README.md); run when `deno task bridge` lacks them.
  bridgeCase("bridge-heap", "bridge, at-least-once, V8 heap flags", HEAP_FLAGS),
];

/** How many messages and how long each phase runs. */
export interface PhasePlan {
  /** Messages at the maximum rate. */
  count: number;
  /** Seconds the half-rate phase aims to last. */
  halfSeconds: number;
  /** Fewest messages of the half-rate phase. */
  halfMin: number;
}

/** What a tracker reported last. */
export interface TrackerState {
  unique: number;
  changedAt: number;
}

/** Follows the progress lines of a tracker. */
export function watchTracker(tracker: Child): TrackerState {
  const state = { unique: 0, changedAt: performance.now() };
  tracker.onLine((line) => {
    if (line.event === "progress" && Number(line.unique) !== state.unique) {
      state.unique = Number(line.unique);
      state.changedAt = performance.now();
    }
  });
  return state;
}

/**
 * Runs one phase: sends, waits until everything arrived or nothing more
 * arrives, then asks the tracker what it saw of this phase's messages.
 */
async function runPhase(
  context: Context,
  setup: Setup,
  state: TrackerState,
  phase: { seqBase: number; count: number; rate: number; title: string },
): Promise<PhaseResult> {
  const { seqBase, count, rate, title } = phase;
  const target = state.unique + count;
  const began = performance.now();
  let sent = 0;
  let loaded = false;
  let loadedAt = 0;
  const loading = setup.load(seqBase, count, rate, (n) => sent = n);
  loading.then(
    () => {
      loaded = true;
      loadedAt = performance.now();
    },
    () => loaded = true,
  );
  let reportedAt = began;
  while (state.unique < target) {
    await sleep(100);
    const dead = setup.subjects.find((child) => !child.running) ??
      (setup.tracker.running ? undefined : setup.tracker);
    if (dead) {
      throw new Error(`${dead.label} exited during ${title}:\n${dead.tail()}`);
    }
    const now = performance.now();
    if (
      loaded &&
      now - Math.max(state.changedAt, loadedAt) > context.stallMs
    ) {
      context.progress(
        `${title}: nothing new for ${context.stallMs / 1000} s; ${
          target - state.unique
        } missing`,
      );
      break;
    }
    if (now - reportedAt >= 2000) {
      reportedAt = now;
      const read = count - (target - state.unique);
      context.progress(
        `${title}: ${read.toLocaleString("en-US")} / ${
          count.toLocaleString("en-US")
        } read (${Math.floor(read / count * 100)}%)${
          sent > 0 && !loaded ? `, ${sent.toLocaleString("en-US")} sent` : ""
        }, ${((now - began) / 1000).toFixed(0)} s`,
      );
    }
  }
  const startedAt = await loading;
  const since = setup.tracker.lines.length;
  await setup.tracker.send(`report ${seqBase} ${seqBase + count}`);
  const report = await setup.tracker.waitForEvent("report", { since });
  const lastReadAt = Number(report.lastReadAt);
  const seconds = Math.max(0.001, (lastReadAt - startedAt) / 1000);
  const unique = Number(report.unique);
  return {
    offeredRate: rate > 0 ? rate : null,
    messages: count,
    seconds: Math.round(seconds * 1000) / 1000,
    throughput: unique > 0 ? Math.round(unique / seconds) : 0,
    latency: report.latency as LatencySummary | null,
    lost: Number(report.lost),
    duplicates: Number(report.duplicates),
  };
}

/**
 * Runs a case at one payload size: as fast as possible, then at half the
 * rate reached; reports the peak memory of its processes under test.
 */
export async function runCase(
  context: Context,
  spec: CaseSpec,
  size: number,
  plan: PhasePlan,
  title: string,
): Promise<CaseResult> {
  const result: CaseResult = {
    id: spec.id,
    label: spec.label,
    size,
    latencyMeasured: spec.latencyMeasured,
    guarantee: spec.guarantee,
    processes: spec.processes,
    max: null,
    half: null,
    peakRssMb: null,
  };
  let setup: Setup | undefined;
  let sampler: RssSampler | undefined;
  try {
    context.progress(`${title}: starting`);
    setup = await spec.setup(context, size, plan.count * 2);
    sampler = new RssSampler(setup.subjects.map((child) => child.pid));
    const state = watchTracker(setup.tracker);
    const maxFrom = epochMs();
    result.max = await runPhase(context, setup, state, {
      seqBase: 0,
      count: plan.count,
      rate: 0,
      title: `${title}, max rate`,
    });
    const rate = Math.max(1, Math.round(result.max.throughput / 2));
    const count = Math.min(
      plan.count,
      Math.max(plan.halfMin, Math.round(rate * plan.halfSeconds)),
    );
    context.progress(
      `${title}: max ${
        result.max.throughput.toLocaleString("en-US")
      } msg/s; now ${count.toLocaleString("en-US")} at ${
        rate.toLocaleString("en-US")
      } msg/s`,
    );
    const halfFrom = epochMs();
    result.half = await runPhase(context, setup, state, {
      seqBase: plan.count,
      count,
      rate,
      title: `${title}, half rate`,
    });
    result.sampledRssMb = {
      max: Math.round(sampler.peakKb(maxFrom, halfFrom) / 1024),
      half: Math.round(sampler.peakKb(halfFrom) / 1024),
    };
    const peaks = await Promise.all(
      setup.subjects.map((child) => memoryStatus(child.pid)),
    );
    const hwm = Math.max(0, ...peaks.map((status) => status?.hwmKb ?? 0));
    result.peakRssMb = hwm > 0 ? Math.round(hwm / 1024) : null;
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
    context.progress(`${title}: failed: ${result.error}`);
  } finally {
    await sampler?.stop();
    await setup?.close();
  }
  return result;
}

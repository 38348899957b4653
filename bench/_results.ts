/**
 * The shapes of the bench's results and the targets they are held to.
 *
 * @module
 */
import type { LatencySummary } from "./_track.ts";
import type { MachineDescription } from "./_machine.ts";

/** One measured phase: saturation or a fixed rate. */
export interface PhaseResult {
  /** The offered rate in messages per second; null for as fast as possible. */
  offeredRate: number | null;
  /** Messages sent. */
  messages: number;
  /** Seconds from the first publish to the last first read. */
  seconds: number;
  /** Distinct messages read per second over `seconds`. */
  throughput: number;
  /** Latency of each message's first read, in milliseconds. */
  latency: LatencySummary | null;
  /** Messages never read. */
  lost: number;
  /** Reads beyond the first. */
  duplicates: number;
}

/** One case at one payload size. */
export interface CaseResult {
  /** Stable id, such as `bridge`. */
  id: string;
  /** What was measured, for people. */
  label: string;
  /** Payload size in bytes. */
  size: number;
  /** Where latency starts and ends. */
  latencyMeasured: string;
  /** Whether this case promises that nothing is lost. */
  guarantee: boolean;
  /** Processes under test (2 for the scale-out case). */
  processes: number;
  /** As fast as possible. */
  max: PhaseResult | null;
  /** At half the rate `max` reached. */
  half: PhaseResult | null;
  /** Largest peak resident memory (VmHWM) of a process under test, in MB. */
  peakRssMb: number | null;
  /** Largest resident memory sampled (every 200 ms) in each phase, in MB. */
  sampledRssMb?: { max: number; half: number };
  /** Why the case did not complete. */
  error?: string;
}

/** The Kafka outage case. */
export interface OutageResult {
  size: number;
  /** Messages per second offered throughout. */
  offeredRate: number;
  messages: number;
  /** Seconds from killing Kafka until it accepted connections again. */
  outageSeconds: number;
  /** Seconds from Kafka's return until the last message was read. */
  catchUpSeconds: number;
  /** Peak RSS of the bridge before the outage, sampled, in MB. */
  rssBeforeMb: number;
  /** Peak RSS of the bridge during the outage, sampled, in MB. */
  rssDuringMb: number;
  /** Peak RSS (VmHWM) of the bridge over the whole case, in MB. */
  peakRssMb: number;
  lost: number;
  duplicates: number;
  error?: string;
}

/** A target of the benchmark and whether the run met it. */
export interface TargetResult {
  target: string;
  measured: string;
  pass: boolean | null;
}

/** Everything a run writes to `bench/results/<date>.json`. */
export interface BenchReport {
  date: string;
  mode: "quick" | "full";
  messagesPerCase: number;
  halfRateSeconds: number;
  machine: MachineDescription;
  /** The `--v8-flags` the bridge processes ran with, from `deno task bridge`. */
  bridgeV8Flags: string | null;
  loadAverage: { before: string; after: string };
  durationSeconds: number;
  notes: string[];
  cases: CaseResult[];
  outage: OutageResult | null;
  targets: TargetResult[];
}

/** Peak RSS limit of the bridge, in MB. */
export const RSS_LIMIT_MB = 250;
/** p99 limit at half the maximum rate, in ms. */
export const P99_LIMIT_MS = 50;

function find(cases: CaseResult[], id: string, size: number) {
  return cases.find((c) => c.id === id && c.size === size && !c.error);
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

/** Holds the run's results to the benchmark's targets. */
export function evaluateTargets(
  cases: CaseResult[],
  outage: OutageResult | null,
): TargetResult[] {
  const targets: TargetResult[] = [];
  const sizes = [...new Set(cases.map((c) => c.size))];
  for (const size of sizes) {
    const bridge = find(cases, "bridge", size)?.max;
    const mqttLimit = find(cases, "mqtt-limit", size)?.max;
    const kafkaLimit = find(cases, "kafkajs-limit", size)?.max;
    const naive = find(cases, "naive", size)?.max;
    const half = find(cases, "bridge", size)?.half;
    if (bridge && mqttLimit && kafkaLimit) {
      const lower = Math.min(mqttLimit.throughput, kafkaLimit.throughput);
      targets.push({
        target:
          `${size} B: at-least-once bridge ≥ 70% of the lower client limit`,
        measured: `${fmt(bridge.throughput)} msg/s = ${
          Math.round(bridge.throughput / lower * 100)
        }% of ${fmt(lower)} (${
          mqttLimit.throughput <= kafkaLimit.throughput ? "MQTT.js" : "kafkajs"
        })`,
        pass: bridge.throughput >= 0.7 * lower,
      });
    }
    if (bridge && naive) {
      targets.push({
        target: `${size} B: at-least-once bridge ≥ 10 × the naive bridge`,
        measured: `${fmt(bridge.throughput)} / ${fmt(naive.throughput)} = ${
          (bridge.throughput / naive.throughput).toFixed(1)
        }×`,
        pass: bridge.throughput >= 10 * naive.throughput,
      });
    }
    if (half?.latency) {
      targets.push({
        target:
          `${size} B: at-least-once p99 at half the maximum rate < ${P99_LIMIT_MS} ms`,
        measured: `${half.latency.p99} ms at ${
          fmt(half.offeredRate ?? 0)
        } msg/s`,
        pass: half.latency.p99 < P99_LIMIT_MS,
      });
    }
  }
  const bridgeRss = cases.filter((c) =>
    (c.id === "bridge" || c.id === "scale-out") && c.peakRssMb !== null
  ).map((c) => c.peakRssMb!);
  if (outage && !outage.error) bridgeRss.push(outage.peakRssMb);
  if (bridgeRss.length > 0) {
    const peak = Math.max(...bridgeRss);
    targets.push({
      target: `bridge peak RSS < ${RSS_LIMIT_MB} MB at any load`,
      measured: `${peak} MB`,
      pass: peak < RSS_LIMIT_MB,
    });
  }
  const heap = cases.filter((c) => c.id === "bridge-heap" && !c.error);
  if (heap.length > 0) {
    const peak = Math.max(...heap.map((c) => c.peakRssMb ?? 0));
    targets.push({
      target:
        `(not yet the default) bridge with the V8 heap flags: peak RSS < ${RSS_LIMIT_MB} MB`,
      measured: `${peak} MB; ${
        heap.map((c) =>
          `${c.size} B: ${fmt(c.max?.throughput ?? 0)} msg/s, p99 at half ${
            c.half?.latency?.p99 ?? "-"
          } ms`
        ).join("; ")
      }`,
      pass: peak < RSS_LIMIT_MB,
    });
  }
  if (outage) {
    targets.push({
      target:
        `bridge memory bounded during a 10 s Kafka outage (< ${RSS_LIMIT_MB} MB), nothing lost`,
      measured: outage.error ??
        `${outage.rssDuringMb} MB during (${outage.rssBeforeMb} MB before, ${
          outage.rssDuringMb >= outage.rssBeforeMb ? "+" : ""
        }${
          outage.rssDuringMb - outage.rssBeforeMb
        } MB), ${outage.lost} lost, ${outage.duplicates} duplicates`,
      pass: outage.error
        ? false
        : outage.rssDuringMb < RSS_LIMIT_MB && outage.lost === 0,
    });
  }
  const guaranteed = cases.filter((c) => c.guarantee && !c.error);
  if (guaranteed.length > 0) {
    const lost = guaranteed.reduce(
      (sum, c) => sum + (c.max?.lost ?? 0) + (c.half?.lost ?? 0),
      0,
    );
    targets.push({
      target: "nothing lost where the guarantee holds (at-least-once cases)",
      measured: `${lost} lost`,
      pass: lost === 0,
    });
  }
  for (const failed of cases.filter((c) => c.error)) {
    targets.push({
      target: `case ${failed.label}, ${failed.size} B completes`,
      measured: failed.error!,
      pass: false,
    });
  }
  return targets;
}

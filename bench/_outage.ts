/**
 * The Kafka outage case: the bridge under a steady load while Kafka is
 * killed for 10 seconds and restarted; reports the bridge's memory before
 * and during the outage, what was lost and how long it took to catch up.
 *
 * @module
 */
import { createTopics } from "../tests/_kafka.ts";
import { freePort, type KafkaBroker } from "../tools/brokers/mod.ts";
import {
  bridgeConfig,
  bridgeSubscribed,
  type Context,
  names,
  reader,
  ready,
  watchTracker,
} from "./_cases.ts";
import { Child, memoryStatus, RssSampler } from "./_child.ts";
import { sleep } from "./_child_io.ts";
import { epochMs, payloadTemplate } from "./_payload.ts";
import type { OutageResult } from "./_results.ts";

/** How long each part of the outage case lasts, in seconds. */
export interface OutagePlan {
  before: number;
  outage: number;
  after: number;
}

/**
 * Runs the outage case against `kafka`, which it kills and restarts. The
 * reader starts once Kafka is back; when the bridge had delivered the backlog
 * is read from its `/metrics` (`dx_messages_delivered_total`).
 *
 * @param rate Messages per second published throughout.
 */
export async function runOutage(
  context: Context,
  kafka: KafkaBroker,
  size: number,
  rate: number,
  plan: OutagePlan,
): Promise<OutageResult> {
  const title = "Kafka outage";
  const result: OutageResult = {
    size,
    offeredRate: rate,
    messages: 0,
    outageSeconds: 0,
    catchUpSeconds: 0,
    rssBeforeMb: 0,
    rssDuringMb: 0,
    peakRssMb: 0,
    lost: 0,
    duplicates: 0,
  };
  const n = names();
  const children: Child[] = [];
  let sampler: RssSampler | undefined;
  const stop = new AbortController();
  let publishing: Promise<unknown> = Promise.resolve();
  try {
    context.progress(`${title}: starting`);
    await createTopics(context.kafkaBrokers, [n.kafkaTopic, n.deadLetterTopic]);
    const metricsPort = freePort();
    const config = await bridgeConfig(context, n.id, {
      topics: [n.mqttFilter],
      clientId: `${n.id}-bridge`,
      defaultTopic: n.kafkaTopic,
      deadLetterTopic: n.deadLetterTopic,
      metricsPort,
    });
    const bridge = Child.bridge("bridge", config, context.bridgeFlags);
    children.push(bridge);
    await bridgeSubscribed(bridge);
    sampler = new RssSampler([bridge.pid], 200);
    const capacity = Math.ceil(
      rate * (plan.before + plan.outage + plan.after + 120),
    );

    let sent = 0;
    const published = context.publisher.publish({
      topic: n.mqttTopic,
      template: payloadTemplate(size),
      seqBase: 0,
      count: capacity,
      rate,
      signal: stop.signal,
      onProgress: (count) => sent = count,
    });
    publishing = published;
    await sleep(plan.before * 1000);
    const killedAt = epochMs();
    await kafka.kill();
    context.progress(
      `${title}: Kafka killed after ${
        sent.toLocaleString("en-US")
      } messages; restarting it in ${plan.outage} s`,
    );
    for (let waited = 0; waited < plan.outage; waited += 2) {
      await sleep(Math.min(2, plan.outage - waited) * 1000);
      const status = await memoryStatus(bridge.pid);
      context.progress(
        `${title}: Kafka down ${Math.min(plan.outage, waited + 2)} s, ${
          sent.toLocaleString("en-US")
        } published, bridge RSS ${Math.round((status?.rssKb ?? 0) / 1024)} MB`,
      );
    }
    await kafka.restart();
    const backAt = epochMs();
    const sentBeforeBack = sent;
    result.outageSeconds = Math.round((backAt - killedAt) / 100) / 10;
    context.progress(
      `${title}: Kafka back after ${result.outageSeconds} s; publishing ${plan.after} s more`,
    );
    const caughtUp = (async () => {
      const deadline = performance.now() + 120_000;
      while (await delivered(metricsPort) < sentBeforeBack) {
        if (!bridge.running || performance.now() > deadline) return NaN;
        await sleep(100);
      }
      return epochMs();
    })();
    await sleep(plan.after * 1000);
    stop.abort();
    const { sent: total } = await published;
    result.messages = total;
    const caughtUpAt = await caughtUp;
    result.catchUpSeconds = Math.round((caughtUpAt - backAt) / 100) / 10;

    const tracker = reader(context, n.kafkaTopic, capacity);
    children.push(tracker);
    await ready(tracker);
    const state = watchTracker(tracker);
    let reportedAt = performance.now();
    const readingFrom = performance.now();
    while (state.unique < total) {
      await sleep(100);
      const dead = children.find((child) => !child.running);
      if (dead) throw new Error(`${dead.label} exited:\n${dead.tail()}`);
      const now = performance.now();
      if (now - Math.max(state.changedAt, readingFrom) > context.stallMs) {
        break;
      }
      if (now - reportedAt >= 2000) {
        reportedAt = now;
        context.progress(
          `${title}: ${state.unique.toLocaleString("en-US")} / ${
            total.toLocaleString("en-US")
          } read`,
        );
      }
    }
    const since = tracker.lines.length;
    await tracker.send(`report 0 ${total}`);
    const all = await tracker.waitForEvent("report", { since });
    result.lost = Number(all.lost);
    result.duplicates = Number(all.duplicates);
    result.rssBeforeMb = Math.round(sampler.peakKb(0, killedAt) / 1024);
    result.rssDuringMb = Math.round(sampler.peakKb(killedAt, backAt) / 1024);
    result.peakRssMb = Math.round(
      ((await memoryStatus(bridge.pid))?.hwmKb ?? 0) / 1024,
    );
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
    context.progress(`${title}: failed: ${result.error}`);
  } finally {
    stop.abort();
    await publishing.catch(() => {});
    await sampler?.stop();
    if (!kafka.running) {
      await kafka.restart().catch((error) =>
        context.progress(`${title}: Kafka did not restart: ${error}`)
      );
    }
    await Promise.all(
      children.map((child) =>
        child.stop({ signal: "SIGTERM", timeoutMs: 20_000 })
      ),
    );
  }
  return result;
}

/** The bridge's count of delivered messages, from its `/metrics`. */
async function delivered(port: number): Promise<number> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    const text = await response.text();
    let sum = 0;
    for (const line of text.split("\n")) {
      if (
        line.startsWith('dx_messages_delivered_total{direction="mqtt_to_kafka"')
      ) {
        sum += Number(line.slice(line.lastIndexOf(" ") + 1));
      }
    }
    return sum;
  } catch {
    return 0;
  }
}

/**
 * The load generator: an MQTT.js client publishing stamped bench payloads at
 * QoS 1, as fast as the broker acknowledges them or at a fixed rate.
 *
 * @module
 */
import mqtt from "mqtt";
import { epochMs, type PayloadTemplate, stampedPayload } from "./_payload.ts";
import { sleep } from "./_child_io.ts";

/** Options of {@linkcode publish}. */
export interface PublishOptions {
  /** The MQTT topic. */
  topic: string;
  /** The payload to stamp. */
  template: PayloadTemplate;
  /** First sequence number. */
  seqBase: number;
  /** Messages to publish. */
  count: number;
  /** Messages per second; 0 for as fast as possible. */
  rate: number;
  /** Most publishes not yet acknowledged (PUBACK). Default 1000. */
  window?: number;
  /** Called about every 250 ms with the number published. */
  onProgress?: (published: number) => void;
  /** Stops publishing before `count`; what was sent is still awaited. */
  signal?: AbortSignal;
}

/** What {@linkcode publish} did. */
export interface PublishResult {
  /** Epoch milliseconds of the first publish. */
  startedAt: number;
  /** Epoch milliseconds when the last PUBACK arrived. */
  endedAt: number;
  /** Publishes the broker acknowledged. */
  acknowledged: number;
  /** Publishes that failed. */
  failed: number;
  /** Messages published (`count`, unless `signal` stopped it earlier). */
  sent: number;
}

/** A connected publisher; reuse it across runs, close it at the end. */
export class Publisher {
  readonly #client: mqtt.MqttClient;

  private constructor(client: mqtt.MqttClient) {
    this.#client = client;
  }

  /** Connects to `url` (MQTT 5). */
  static async connect(url: string): Promise<Publisher> {
    const client = await mqtt.connectAsync(url, {
      clientId: `bench-publisher-${crypto.randomUUID().slice(0, 8)}`,
      protocolVersion: 5,
      reconnectPeriod: 1000,
    });
    return new Publisher(client);
  }

  /**
   * Publishes `count` stamped messages and resolves once all are
   * acknowledged (or failed).
   */
  async publish(options: PublishOptions): Promise<PublishResult> {
    const { topic, template, seqBase, count, rate } = options;
    const window = options.window ?? 1000;
    let sent = 0;
    let acknowledged = 0;
    let failed = 0;
    let wake: (() => void) | undefined;
    const settled = (error?: Error) => {
      if (error) failed++;
      else acknowledged++;
      const resolve = wake;
      wake = undefined;
      resolve?.();
    };
    const startedAt = epochMs();
    let reportedAt = startedAt;
    while (sent < count && !options.signal?.aborted) {
      const due = rate > 0
        ? Math.min(
          count,
          Math.floor((epochMs() - startedAt) * rate / 1000) + 1,
        )
        : count;
      while (sent < due && sent - acknowledged - failed < window) {
        this.#client.publish(
          topic,
          stampedPayload(template, seqBase + sent),
          { qos: 1 },
          settled,
        );
        sent++;
      }
      const now = epochMs();
      if (options.onProgress && now - reportedAt >= 250) {
        reportedAt = now;
        options.onProgress(sent);
      }
      if (sent >= count) break;
      if (sent - acknowledged - failed >= window) {
        await new Promise<void>((resolve) => wake = resolve);
      } else {
        await sleep(1);
      }
    }
    while (acknowledged + failed < sent) {
      await new Promise<void>((resolve) => wake = resolve);
    }
    options.onProgress?.(sent);
    return { startedAt, endedAt: epochMs(), acknowledged, failed, sent };
  }

  async close(): Promise<void> {
    await this.#client.endAsync();
  }
}

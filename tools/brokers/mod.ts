/**
 * Real, private Mosquitto and Kafka brokers on 127.0.0.1 for tests,
 * benchmarks and local runs. Each broker gets free ports and a fresh
 * temporary directory, and `stop()` leaves no process and no data behind.
 *
 * Needs `mosquitto`, `java` (17 for Kafka 4.x) and, once per Kafka version,
 * `mvn`; without them the start functions throw
 * {@linkcode BrokerUnavailableError}. Permissions: `--allow-run`,
 * `--allow-net=127.0.0.1`, `--allow-read`, `--allow-write`, `--allow-env`.
 *
 * @example Start both brokers for the length of a block
 * ```ts ignore
 * import { startBrokers } from "./mod.ts";
 *
 * await using brokers = await startBrokers();
 * console.log(brokers.mqttUrl, brokers.kafkaBrokers);
 * ```
 *
 * @module
 */

import type { BrokerHandle } from "./_process.ts";
import { BrokerUnavailableError, isBrokerUnavailableError } from "./errors.ts";
import { type KafkaBroker, startKafka } from "./kafka.ts";
import { type MosquittoBroker, startMosquitto } from "./mosquitto.ts";

export { type BrokerHandle, freePort } from "./_process.ts";
export {
  BrokerStartError,
  BrokerUnavailableError,
  describeErrorChain,
  isBrokerUnavailableError,
} from "./errors.ts";
export {
  KAFKA_VERSION,
  type KafkaBroker,
  kafkaProperties,
  type KafkaPropertiesOptions,
  type KafkaSaslListenerOptions,
  type KafkaSaslMechanism,
  type KafkaScramMechanism,
  type KafkaTlsListenerOptions,
  kafkaVersion,
  resolveKafkaJars,
  type ResolveKafkaJarsOptions,
  startKafka,
  type StartKafkaOptions,
} from "./kafka.ts";
export {
  MOSQUITTO_MAX_PACKET_BYTES,
  type MosquittoBroker,
  mosquittoConfig,
  type MosquittoSecurityConfig,
  type MosquittoTlsOptions,
  startMosquitto,
  type StartMosquittoOptions,
} from "./mosquitto.ts";
export {
  generateTestCertificates,
  type GenerateTestCertificatesOptions,
  type TestCertificates,
} from "./tls.ts";

/** Options of {@linkcode startBrokers}. */
export interface StartBrokersOptions {
  /** Mosquitto's port on 127.0.0.1. Default: a free port. */
  mqttPort?: number;
  /** Kafka's PLAINTEXT port on 127.0.0.1. Default: a free port. */
  kafkaPort?: number;
  /** Kafka release. Default `kafkaVersion()` (env `DX_KAFKA_VERSION` or 3.9.1). */
  kafkaVersion?: string;
  /** Aborts the start; whatever started is stopped again. */
  signal?: AbortSignal;
}

/** Both brokers, as returned by {@linkcode startBrokers}. */
export interface Brokers extends AsyncDisposable {
  /** `mqtt://127.0.0.1:<port>`. */
  readonly mqttUrl: string;
  /** `["127.0.0.1:<port>"]`. */
  readonly kafkaBrokers: string[];
  /** The Mosquitto handle, to kill or restart it. */
  readonly mosquitto: MosquittoBroker;
  /** The Kafka handle, to kill or restart it. */
  readonly kafka: KafkaBroker;
  /** Stops both concurrently and deletes their data. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILLs both and deletes their data synchronously, for `unload`. */
  stopSync(): void;
}

/**
 * Starts Mosquitto and Kafka concurrently. When one fails, the other is
 * stopped (its start aborted, unless the failure is only a missing tool)
 * before the error is thrown.
 *
 * @param options Ports, Kafka version and signal.
 * @returns Both brokers; `stop()` them or use `await using`.
 * @throws {BrokerUnavailableError} When a tool is missing; when both are
 * unavailable, the message names everything that is missing.
 * @throws {BrokerStartError} When a broker does not become ready.
 *
 * @example Start both and print where they listen
 * ```ts ignore
 * import { startBrokers } from "./mod.ts";
 *
 * const brokers = await startBrokers();
 * try {
 *   console.log(brokers.mqttUrl, brokers.kafkaBrokers.join(","));
 * } finally {
 *   await brokers.stop();
 * }
 * ```
 */
export async function startBrokers(
  options: StartBrokersOptions = {},
): Promise<Brokers> {
  // A broker that fails to start cuts the other's start short; a missing
  // tool does not, so that one message can name everything missing.
  const both = new AbortController();
  const onAbort = () => both.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const abortOtherOnCrash = (error: unknown): never => {
    if (!isBrokerUnavailableError(error)) both.abort(error);
    throw error;
  };
  const [mqtt, kafka] = await Promise.allSettled([
    startMosquitto({ port: options.mqttPort, signal: both.signal })
      .catch(abortOtherOnCrash),
    startKafka({
      port: options.kafkaPort,
      version: options.kafkaVersion,
      signal: both.signal,
    }).catch(abortOtherOnCrash),
  ]).finally(() => options.signal?.removeEventListener("abort", onAbort));

  if (mqtt.status === "fulfilled" && kafka.status === "fulfilled") {
    return bothBrokers(mqtt.value, kafka.value);
  }
  const started: BrokerHandle[] = [mqtt, kafka].flatMap((result) =>
    result.status === "fulfilled" ? [result.value] : []
  );
  await Promise.all(started.map((broker) => broker.stop()));

  options.signal?.throwIfAborted();
  const errors = [
    ...new Set(
      [mqtt, kafka].flatMap((result) =>
        result.status === "rejected" ? [result.reason as unknown] : []
      ),
    ),
  ];
  if (errors.length === 2 && errors.every(isBrokerUnavailableError)) {
    throw new BrokerUnavailableError(
      errors.map((error) => (error as Error).message).join(" "),
      { cause: new AggregateError(errors, "both brokers are unavailable") },
    );
  }
  // Prefer the error that is not a mere missing tool: it is the surprise.
  throw errors.find((error) => !isBrokerUnavailableError(error)) ?? errors[0];
}

function bothBrokers(mosquitto: MosquittoBroker, kafka: KafkaBroker): Brokers {
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= Promise.all([mosquitto.stop(), kafka.stop()]).then(() => {});
    return stopping;
  };
  return {
    mqttUrl: mosquitto.url,
    kafkaBrokers: kafka.brokers,
    mosquitto,
    kafka,
    stop,
    stopSync(): void {
      mosquitto.stopSync();
      kafka.stopSync();
    },
    [Symbol.asyncDispose]: stop,
  };
}

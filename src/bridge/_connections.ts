/**
 * Turns the configuration's connection settings (paths, secrets from the
 * environment or files) into the options of the MQTT and Kafka clients.
 *
 * @module
 */
import { DataExchangeError } from "../errors.ts";
import type { KafkaConnectionOptions } from "../kafka/_kafkajs.ts";
import type { MqttStreamOptions } from "../mqtt/stream.ts";
import type { BridgeConfig, TlsFiles } from "./config.ts";

/** What the MQTT side needs besides the URL and client id. */
export interface MqttConnection {
  /** Topic filters, with the shared-subscription prefix when configured. */
  topics: string[];
  /** Credentials, TLS and keepalive for MQTT.js. */
  clientOptions: NonNullable<MqttStreamOptions["clientOptions"]>;
}

/** Reads the MQTT credentials and TLS files named in the configuration. */
export async function mqttConnection(
  config: BridgeConfig,
): Promise<MqttConnection> {
  const { mqtt } = config;
  const password = mqtt.password ??
    (mqtt.passwordFile
      ? (await readSecret(mqtt.passwordFile, "mqtt.passwordFile")).trimEnd()
      : undefined);
  const tls = mqtt.tls ? await readTls(mqtt.tls, "mqtt.tls") : {};
  return {
    topics: mqtt.sharedGroup
      ? mqtt.topics.map((topic) => `$share/${mqtt.sharedGroup}/${topic}`)
      : [...mqtt.topics],
    clientOptions: {
      keepalive: mqtt.keepaliveSeconds,
      username: mqtt.username,
      password,
      ...tls,
      ...(mqtt.tls ? { rejectUnauthorized: mqtt.tls.rejectUnauthorized } : {}),
    },
  };
}

/** Reads the Kafka credentials and TLS files named in the configuration. */
export async function kafkaConnection(
  config: BridgeConfig,
): Promise<KafkaConnectionOptions> {
  const { kafka } = config;
  const sasl = kafka.sasl && {
    mechanism: kafka.sasl.mechanism,
    username: kafka.sasl.username,
    password: kafka.sasl.password ??
      (kafka.sasl.passwordFile
        ? (await readSecret(kafka.sasl.passwordFile, "kafka.sasl.passwordFile"))
          .trimEnd()
        : ""),
  };
  return {
    brokers: kafka.brokers,
    clientId: kafka.clientId,
    requestTimeoutMs: kafka.requestTimeoutMs,
    tls: kafka.tls.enabled
      ? {
        ...await readTls(kafka.tls, "kafka.tls"),
        rejectUnauthorized: kafka.tls.rejectUnauthorized,
      }
      : undefined,
    sasl,
  };
}

async function readTls(
  files: TlsFiles,
  field: string,
): Promise<{ ca?: string; cert?: string; key?: string }> {
  return {
    ca: files.ca ? await readSecret(files.ca, `${field}.ca`) : undefined,
    cert: files.cert
      ? await readSecret(files.cert, `${field}.cert`)
      : undefined,
    key: files.key ? await readSecret(files.key, `${field}.key`) : undefined,
  };
}

async function readSecret(path: string, field: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new DataExchangeError(
      "config-unreadable",
      `Cannot read ${field} (${path}): ${
        (error as Error).message
      }. Check the path and that the bridge may read it (--allow-read).`,
      { cause: error },
    );
  }
}

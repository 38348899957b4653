/**
 * Turns the configuration's connection settings (paths, secrets from the
 * environment or files) into the options of the MQTT and Kafka clients,
 * refusing combinations that would quietly drop TLS.
 *
 * @module
 */
import { DataExchangeError } from "../errors.ts";
import type { KafkaConnectionOptions } from "../kafka/_kafkajs.ts";
import type { MqttStreamOptions } from "../mqtt/stream.ts";
import { redactUrl } from "../mqtt/stream.ts";
import type { BridgeConfig, TlsFiles } from "./config.ts";

/** What the MQTT side needs besides the URL and client id. */
export interface MqttConnection {
  /** Topic filters, with the shared-subscription prefix when configured. */
  topics: string[];
  /** Credentials, TLS and keepalive for MQTT.js. */
  clientOptions: NonNullable<MqttStreamOptions["clientOptions"]>;
}

/** URL schemes on which MQTT.js speaks TLS. */
const MQTT_TLS_SCHEMES = new Set(["mqtts:", "wss:", "ssl:"]);

/**
 * Reads the MQTT credentials and TLS files named in the configuration.
 *
 * @param config A validated configuration.
 * @returns The topics and MQTT.js options.
 * @throws {DataExchangeError} `invalid-config` when TLS files are given for a
 *   URL without TLS, or a client certificate without its key;
 *   `config-unreadable` when a file cannot be read, is empty or is not PEM.
 */
export async function mqttConnection(
  config: BridgeConfig,
): Promise<MqttConnection> {
  const { mqtt } = config;
  // mqtt.tls always holds its defaults; only settings away from them ask
  // for TLS.
  const tlsAsked = mqtt.tls.ca !== undefined || mqtt.tls.cert !== undefined ||
    mqtt.tls.key !== undefined || !mqtt.tls.rejectUnauthorized;
  if (tlsAsked && !MQTT_TLS_SCHEMES.has(schemeOf(mqtt.url))) {
    throw new DataExchangeError(
      "invalid-config",
      `mqtt.tls is set, but mqtt.url ${
        redactUrl(mqtt.url)
      } does not use TLS, so its settings would be ignored and the password sent in clear; ` +
        "use an mqtts:// (or wss://) URL, or remove mqtt.tls",
    );
  }
  const password = mqtt.password ??
    (mqtt.passwordFile
      ? await readPassword(mqtt.passwordFile, "mqtt.passwordFile")
      : undefined);
  const tls = await readTls(mqtt.tls, "mqtt.tls");
  return {
    topics: mqtt.sharedGroup
      ? mqtt.topics.map((topic) => `$share/${mqtt.sharedGroup}/${topic}`)
      : [...mqtt.topics],
    clientOptions: {
      keepalive: mqtt.keepaliveSeconds,
      username: mqtt.username,
      password,
      ...tls,
      rejectUnauthorized: mqtt.tls.rejectUnauthorized,
    },
  };
}

/**
 * Reads the Kafka credentials and TLS files named in the configuration.
 *
 * @param config A validated configuration.
 * @returns The kafkajs connection settings.
 * @throws {DataExchangeError} `invalid-config` when TLS files are given with
 *   `kafka.tls.enabled` off, a client certificate without its key, or SASL
 *   without a password; `config-unreadable` when a file cannot be read, is
 *   empty or is not PEM.
 */
export async function kafkaConnection(
  config: BridgeConfig,
): Promise<KafkaConnectionOptions> {
  const { kafka } = config;
  const files = (["ca", "cert", "key"] as const).filter((name) =>
    kafka.tls[name] !== undefined
  );
  if (!kafka.tls.enabled && files.length > 0) {
    throw new DataExchangeError(
      "invalid-config",
      `kafka.tls.${
        files[0]
      } is set, but kafka.tls.enabled is false, so the TLS files would be ignored; ` +
        "set kafka.tls.enabled: true (DX_KAFKA_TLS_ENABLED=true), or remove them",
    );
  }
  let sasl: KafkaConnectionOptions["sasl"];
  if (kafka.sasl) {
    const password = kafka.sasl.password ??
      (kafka.sasl.passwordFile
        ? await readPassword(kafka.sasl.passwordFile, "kafka.sasl.passwordFile")
        : undefined);
    if (password === undefined) {
      throw new DataExchangeError(
        "invalid-config",
        `kafka.sasl is set for user "${kafka.sasl.username}" but has no password; ` +
          "set DX_KAFKA_SASL_PASSWORD or kafka.sasl.passwordFile",
      );
    }
    sasl = {
      mechanism: kafka.sasl.mechanism,
      username: kafka.sasl.username,
      password,
    };
  }
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

function schemeOf(url: string): string {
  return url.slice(0, url.indexOf(":") + 1).toLowerCase();
}

async function readTls(
  files: TlsFiles,
  field: string,
): Promise<{ ca?: string; cert?: string; key?: string }> {
  if ((files.cert === undefined) !== (files.key === undefined)) {
    const [given, missing] = files.cert === undefined
      ? ["key", "cert"]
      : ["cert", "key"];
    throw new DataExchangeError(
      "invalid-config",
      `${field}.${given} is set without ${field}.${missing}; a client certificate needs its key, so set both or neither`,
    );
  }
  const result: { ca?: string; cert?: string; key?: string } = {};
  if (files.ca) result.ca = await readPem(files.ca, `${field}.ca`, "ca");
  if (files.cert) {
    result.cert = await readPem(files.cert, `${field}.cert`, "cert");
  }
  if (files.key) result.key = await readPem(files.key, `${field}.key`, "key");
  return result;
}

/**
 * Reads a PEM file and checks its kind, so that a wrong file fails here,
 * once, rather than as a TLS error on every reconnection. The contents never
 * appear in a message.
 */
async function readPem(
  path: string,
  field: string,
  kind: "ca" | "cert" | "key",
): Promise<string> {
  const text = await readFile(path, field);
  if (kind === "key") {
    if (
      /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)
    ) {
      throw new DataExchangeError(
        "config-unreadable",
        `${field} (${path}) is an encrypted private key, and the bridge has no passphrase setting; ` +
          "give it the key unencrypted (`openssl pkey -in <key> -out <new key>`) in a file only the bridge may read",
      );
    }
    if (!/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(text)) {
      throw new DataExchangeError(
        "config-unreadable",
        `${field} (${path}) holds no PEM private key (no "-----BEGIN ... PRIVATE KEY-----" line); give the key in PEM format`,
      );
    }
  } else if (!text.includes("-----BEGIN CERTIFICATE-----")) {
    throw new DataExchangeError(
      "config-unreadable",
      `${field} (${path}) holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" line); give ${
        kind === "ca" ? "the CA certificates" : "the client certificate"
      } in PEM format`,
    );
  }
  return text;
}

/** Reads a password file: its text without the final line break. */
async function readPassword(path: string, field: string): Promise<string> {
  const password = (await readFile(path, field)).replace(/\r?\n$/, "");
  if (password === "") {
    throw new DataExchangeError(
      "config-unreadable",
      `${field} (${path}) is empty; write the password into it, or unset ${field}`,
    );
  }
  return password;
}

async function readFile(path: string, field: string): Promise<string> {
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

/**
 * Starts a private Mosquitto broker on 127.0.0.1 with limits that do not drop
 * QoS 1 messages under a burst.
 *
 * @module
 */

import {
  type BrokerHandle,
  BrokerProcess,
  ensurePortFree,
  freePort,
  probeTool,
  readEnv,
  removeIfExists,
  validatePort,
} from "./_process.ts";
import { BrokerUnavailableError } from "./errors.ts";

/** Options of {@linkcode startMosquitto}. */
export interface StartMosquittoOptions {
  /** Port on 127.0.0.1 to listen on. Default: a free port. */
  port?: number;
  /** Aborts the start; the process is then killed and its data deleted. */
  signal?: AbortSignal;
  /**
   * The `mosquitto` program. Default: env `DX_MOSQUITTO`, else `mosquitto` on
   * PATH, else `/usr/sbin/mosquitto` or `/usr/local/sbin/mosquitto` (Debian
   * installs it in sbin, which is not on a normal user's PATH).
   */
  executable?: string;
  /**
   * Keep Mosquitto's stock queue limits (1000 queued and 20 in flight per
   * client) instead of raising them. Default `false`. Only for measuring what
   * the stock limits lose; see bench/mosquitto_burst.ts.
   */
  stockLimits?: boolean;
  /** How long the start may take until an MQTT CONNECT succeeds. Default 10000. */
  readyTimeoutMs?: number;
}

/** A running Mosquitto started by {@linkcode startMosquitto}. */
export interface MosquittoBroker extends BrokerHandle {
  /** `mqtt://127.0.0.1:<port>`. */
  readonly url: string;
}

/** Largest MQTT packet the broker accepts: 32 MiB, so 16 MiB payloads fit. */
export const MOSQUITTO_MAX_PACKET_BYTES = 32 * 1024 * 1024;

const INSTALL_HINT =
  "Install it with `apt-get install mosquitto` (Debian/Ubuntu) or `brew install mosquitto` (macOS), or set DX_MOSQUITTO to its path.";

/**
 * Starts Mosquitto on 127.0.0.1 with a config written into a fresh temporary
 * directory, and resolves once the port accepts connections and an MQTT
 * CONNECT gets a successful CONNACK.
 *
 * The config raises the per-client queue to 1,000,000 messages or 1 GiB and
 * the in-flight window to 1000, so a slow or offline persistent subscriber
 * does not lose QoS 1 messages (the stock limits drop everything past 1020),
 * and accepts packets up to {@linkcode MOSQUITTO_MAX_PACKET_BYTES}. Nothing is
 * persisted and the log goes to stderr (captured in `logPath`), so Mosquitto
 * needs no writable file after it drops from root to its own user.
 *
 * @param options Port, signal, program and limits.
 * @returns The running broker; `stop()` it or use `await using`.
 * @throws {BrokerUnavailableError} When `mosquitto` is not installed.
 * @throws {BrokerStartError} When it exits or does not answer in time.
 *
 * @example Start, use and stop a broker
 * ```ts ignore
 * import { startMosquitto } from "./mosquitto.ts";
 *
 * await using mosquitto = await startMosquitto();
 * console.log(mosquitto.url); // mqtt://127.0.0.1:<port>
 * ```
 */
export async function startMosquitto(
  options: StartMosquittoOptions = {},
): Promise<MosquittoBroker> {
  const port = options.port ?? freePort();
  validatePort(port, "port");
  if (options.port !== undefined) ensurePortFree(port, "Mosquitto");
  const readyTimeoutMs = options.readyTimeoutMs ?? 10_000;

  const executable = await findMosquitto(options.executable);
  const dataDir = await Deno.makeTempDir({ prefix: "dx-mosquitto-" });
  const configPath = `${dataDir}/mosquitto.conf`;
  try {
    await Deno.writeTextFile(
      configPath,
      mosquittoConfig(port, options.stockLimits ?? false),
    );
    // Mosquitto reads its config as root, then drops to user `mosquitto`;
    // the directory stays readable for anyone who looks at the log.
    await Deno.chmod(dataDir, 0o755);
    const broker = new MosquittoProcess({
      label: `Mosquitto on 127.0.0.1:${port}`,
      port,
      executable,
      args: ["-c", configPath],
      dataDir,
      logPath: `${dataDir}/mosquitto.log`,
      probe: (signal) => mqttConnectProbe(port, signal),
      readyTimeoutMs,
      probeTimeoutMs: 2_000,
      stopTimeoutMs: 5_000,
    });
    await broker.start(options.signal);
    return broker;
  } catch (error) {
    await removeIfExists(dataDir);
    throw error;
  }
}

/**
 * The Mosquitto config used by {@linkcode startMosquitto}.
 *
 * @param port The listener port on 127.0.0.1.
 * @param stockLimits Leave out the raised queue and in-flight limits.
 * @returns The text of a `mosquitto.conf`.
 *
 * @example Look at the limits
 * ```ts
 * import { mosquittoConfig } from "./mosquitto.ts";
 *
 * console.log(mosquittoConfig(1883, false).includes("max_queued_messages")); // true
 * ```
 */
export function mosquittoConfig(port: number, stockLimits: boolean): string {
  validatePort(port, "port");
  const lines = [
    "# Written by tools/brokers/mosquitto.ts for one run; deleted on stop.",
    `listener ${port} 127.0.0.1`,
    "allow_anonymous true",
    "persistence false",
    "# stderr, not stdout: stdout is block-buffered when it is a file, so",
    "# the log would only appear when Mosquitto exits.",
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    "log_type notice",
    "log_type information",
    "log_timestamp_format %Y-%m-%dT%H:%M:%S",
  ];
  if (!stockLimits) {
    lines.push(
      "# Stock limits queue 1000 QoS 1/2 messages per client above 20 in",
      "# flight and drop the rest silently; a burst must not lose messages.",
      "max_queued_messages 1000000",
      "max_queued_bytes 1073741824",
      "max_inflight_messages 1000",
      "max_inflight_bytes 0",
      "# Whole packets up to 32 MiB, so payloads of 16 MiB fit. The payload",
      "# limit message_size_limit stays at its default 0 (no limit).",
      `max_packet_size ${MOSQUITTO_MAX_PACKET_BYTES}`,
    );
  }
  return lines.join("\n") + "\n";
}

class MosquittoProcess extends BrokerProcess implements MosquittoBroker {
  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }
}

async function findMosquitto(explicit: string | undefined): Promise<string> {
  const fromEnv = readEnv("DX_MOSQUITTO");
  const candidates = explicit !== undefined
    ? [explicit]
    : fromEnv !== undefined
    ? [fromEnv]
    : ["mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"];
  let lastError: unknown;
  for (const candidate of candidates) {
    try {
      await probeTool(candidate, ["-h"], "");
      return candidate;
    } catch (error) {
      if (!(error instanceof BrokerUnavailableError)) throw error;
      lastError = error.cause;
    }
  }
  throw new BrokerUnavailableError(
    `Mosquitto is not installed: tried ${
      candidates.join(", ")
    }. ${INSTALL_HINT}`,
    { cause: lastError },
  );
}

/**
 * Connects with MQTT 3.1.1, expects CONNACK with return code 0, disconnects.
 */
async function mqttConnectProbe(
  port: number,
  signal: AbortSignal,
): Promise<void> {
  const clientId = `dx-probe-${crypto.randomUUID().slice(0, 8)}`;
  const id = new TextEncoder().encode(clientId);
  const connect = new Uint8Array([
    0x10,
    12 + id.length,
    ...[0x00, 0x04, 0x4d, 0x51, 0x54, 0x54], // "MQTT"
    0x04, // protocol level 3.1.1
    0x02, // clean session
    0x00,
    0x05, // keep alive 5 s
    0x00,
    id.length,
    ...id,
  ]);

  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const onAbort = () => conn.close();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    await writeAll(conn, connect);
    const connack = await readExactly(conn, 4);
    if (connack[0] !== 0x20 || connack[1] !== 0x02 || connack[3] !== 0x00) {
      throw new Error(
        `Mosquitto on port ${port} answered CONNECT with [${connack}], expected CONNACK [32,2,*,0]`,
      );
    }
    await writeAll(conn, new Uint8Array([0xe0, 0x00])); // DISCONNECT
  } catch (error) {
    signal.throwIfAborted();
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
    if (!signal.aborted) conn.close();
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await conn.write(bytes.subarray(written));
  }
}

async function readExactly(conn: Deno.Conn, size: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(size);
  let filled = 0;
  while (filled < size) {
    const n = await conn.read(buffer.subarray(filled));
    if (n === null) {
      throw new Error(
        `connection closed after ${filled} of ${size} bytes of CONNACK`,
      );
    }
    filled += n;
  }
  return buffer;
}

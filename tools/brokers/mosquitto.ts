/**
 * Starts a private Mosquitto broker on 127.0.0.1 with limits that do not drop
 * QoS 1 messages under a burst, and, for tests, with a TLS listener, client
 * certificate authentication or a password file.
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
import { BrokerStartError, BrokerUnavailableError } from "./errors.ts";

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
  /**
   * User names and their passwords, written to a password file with
   * `mosquitto_passwd`. When given, the broker refuses anonymous clients
   * (`allow_anonymous false`) on the plain listener, and on the TLS listener
   * unless that one takes the identity from a client certificate. User names
   * may not contain `:`; passwords may not contain a line break. Default:
   * none, anonymous clients are accepted.
   */
  users?: Readonly<Record<string, string>>;
  /** A second listener, with TLS. Default: none. */
  tls?: MosquittoTlsOptions;
  /**
   * The `mosquitto_passwd` program, used when `users` is given. Default: env
   * `DX_MOSQUITTO_PASSWD`, else `mosquitto_passwd` on PATH, else
   * `/usr/bin/mosquitto_passwd`.
   */
  passwdExecutable?: string;
}

/** The TLS listener of {@linkcode startMosquitto}. */
export interface MosquittoTlsOptions {
  /** Port on 127.0.0.1. Default: a free port. */
  port?: number;
  /** PEM file of the CA that client certificates must chain to (`cafile`). */
  caFile: string;
  /** PEM file of the server certificate (`certfile`). */
  certFile: string;
  /** PEM file of the server certificate's key (`keyfile`). */
  keyFile: string;
  /**
   * Require a client certificate signed by `caFile` and take the client's
   * user name from its common name (`require_certificate true`,
   * `use_identity_as_username true`, `allow_anonymous false`). Default
   * `false`: a client certificate is not asked for.
   */
  requireCertificate?: boolean;
}

/** A running Mosquitto started by {@linkcode startMosquitto}. */
export interface MosquittoBroker extends BrokerHandle {
  /** `mqtt://127.0.0.1:<port>`. */
  readonly url: string;
  /** `mqtts://127.0.0.1:<tlsPort>` when started with `tls`, else `undefined`. */
  readonly tlsUrl: string | undefined;
  /** The port of the TLS listener when started with `tls`, else `undefined`. */
  readonly tlsPort: number | undefined;
}

/**
 * The security part of the Mosquitto config (see
 * {@linkcode mosquittoConfig}): file paths and the TLS port, all resolved.
 */
export interface MosquittoSecurityConfig {
  /** A `mosquitto_passwd` file: anonymous clients are then refused. */
  passwordFile?: string;
  /** A TLS listener. */
  tls?: Required<MosquittoTlsOptions>;
}

/** Largest MQTT packet the broker accepts: 32 MiB, so 16 MiB payloads fit. */
export const MOSQUITTO_MAX_PACKET_BYTES = 32 * 1024 * 1024;

const INSTALL_HINT =
  "Install it with `apt-get install mosquitto` (Debian/Ubuntu) or `brew install mosquitto` (macOS), or set DX_MOSQUITTO to its path.";
const PASSWD_HINT =
  "It comes with Mosquitto (`apt-get install mosquitto` on Debian/Ubuntu); or set DX_MOSQUITTO_PASSWD to its path.";

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
 * With `users`, a password file is written with `mosquitto_passwd` and
 * anonymous clients are refused; the readiness probe then logs in as the
 * first user. With `tls`, a second listener speaks TLS with the given
 * certificate, and with `tls.requireCertificate` it admits only clients with
 * a certificate from `tls.caFile`, named by its common name. Each listener
 * then has its own settings (`per_listener_settings true`). The files named
 * in `tls` must be readable by the `mosquitto` user when this runs as root
 * (see `generateTestCertificates` in tls.ts).
 *
 * @param options Port, signal, program, limits, users and TLS.
 * @returns The running broker; `stop()` it or use `await using`.
 * @throws {BrokerUnavailableError} When `mosquitto` (or, with `users`,
 * `mosquitto_passwd`) is not installed.
 * @throws {BrokerStartError} When it exits or does not answer in time.
 * @throws {RangeError} When a port, user name or password is not usable.
 *
 * @example Start, use and stop a broker
 * ```ts ignore
 * import { startMosquitto } from "./mosquitto.ts";
 *
 * await using mosquitto = await startMosquitto();
 * console.log(mosquitto.url); // mqtt://127.0.0.1:<port>
 * ```
 *
 * @example A broker that wants a password, and one that wants a certificate
 * ```ts ignore
 * import { startMosquitto } from "./mosquitto.ts";
 * import { generateTestCertificates } from "./tls.ts";
 *
 * await using withPassword = await startMosquitto({
 *   users: { bridge: "a-test-password" },
 * });
 * await using certs = await generateTestCertificates({ clientName: "bridge" });
 * await using withCertificate = await startMosquitto({
 *   tls: {
 *     caFile: certs.caCert,
 *     certFile: certs.serverCert,
 *     keyFile: certs.serverKey,
 *     requireCertificate: true,
 *   },
 * });
 * console.log(withCertificate.tlsUrl); // mqtts://127.0.0.1:<port>
 * ```
 */
export async function startMosquitto(
  options: StartMosquittoOptions = {},
): Promise<MosquittoBroker> {
  const port = options.port ?? freePort();
  validatePort(port, "port");
  if (options.port !== undefined) ensurePortFree(port, "Mosquitto");
  const readyTimeoutMs = options.readyTimeoutMs ?? 10_000;
  const users = Object.entries(options.users ?? {});
  for (const [user, password] of users) validateUser(user, password);
  const tls = options.tls && {
    ...options.tls,
    port: options.tls.port ?? freePort([port]),
    requireCertificate: options.tls.requireCertificate ?? false,
  };
  if (tls) {
    validatePort(tls.port, "tls.port");
    if (tls.port === port) {
      throw new RangeError(
        `tls.port must differ from port; both are ${port}`,
      );
    }
    if (options.tls?.port !== undefined) {
      ensurePortFree(tls.port, "Mosquitto's TLS listener");
    }
  }

  const executable = await findMosquitto(options.executable);
  const passwd = users.length > 0
    ? await findPasswd(options.passwdExecutable)
    : undefined;
  const dataDir = await Deno.makeTempDir({ prefix: "dx-mosquitto-" });
  const configPath = `${dataDir}/mosquitto.conf`;
  try {
    const passwordFile = passwd === undefined
      ? undefined
      : await writePasswordFile(passwd, `${dataDir}/passwords`, users);
    await Deno.writeTextFile(
      configPath,
      mosquittoConfig(port, options.stockLimits ?? false, {
        passwordFile,
        tls,
      }),
    );
    // Mosquitto reads its config as root, then drops to user `mosquitto`;
    // the directory stays readable for anyone who looks at the log.
    await Deno.chmod(dataDir, 0o755);
    const login = users[0] && { username: users[0][0], password: users[0][1] };
    const broker = new MosquittoProcess(tls?.port, {
      label: `Mosquitto on 127.0.0.1:${port}`,
      port,
      executable,
      args: ["-c", configPath],
      dataDir,
      logPath: `${dataDir}/mosquitto.log`,
      probe: (signal) => mqttConnectProbe(port, signal, login),
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
 * Without `security` there is one listener that admits anonymous clients.
 * With it, each listener has its own settings: the plain one takes the
 * password file when there is one; the TLS one (if any) takes the client
 * certificate as the identity when it requires one, else the password file.
 *
 * @param port The listener port on 127.0.0.1.
 * @param stockLimits Leave out the raised queue and in-flight limits.
 * @param security A password file and a TLS listener, if any.
 * @returns The text of a `mosquitto.conf`.
 *
 * @example Look at the limits
 * ```ts
 * import { mosquittoConfig } from "./mosquitto.ts";
 *
 * console.log(mosquittoConfig(1883, false).includes("max_queued_messages")); // true
 * ```
 */
export function mosquittoConfig(
  port: number,
  stockLimits: boolean,
  security: MosquittoSecurityConfig = {},
): string {
  validatePort(port, "port");
  const { passwordFile, tls } = security;
  const lines = [
    "# Written by tools/brokers/mosquitto.ts for one run; deleted on stop.",
  ];
  if (passwordFile === undefined && tls === undefined) {
    lines.push(`listener ${port} 127.0.0.1`, "allow_anonymous true");
  } else {
    lines.push(
      "# Authentication is set per listener below.",
      "per_listener_settings true",
      `listener ${port} 127.0.0.1`,
      ...passwordLines(passwordFile),
    );
  }
  if (tls !== undefined) {
    validatePort(tls.port, "tls.port");
    lines.push(
      `listener ${tls.port} 127.0.0.1`,
      `cafile ${tls.caFile}`,
      `certfile ${tls.certFile}`,
      `keyfile ${tls.keyFile}`,
      ...(tls.requireCertificate
        ? [
          "# A client certificate from cafile is required; its CN is the user.",
          "require_certificate true",
          "use_identity_as_username true",
          "allow_anonymous false",
        ]
        : passwordLines(passwordFile)),
    );
  }
  lines.push(
    "persistence false",
    "# stderr, not stdout: stdout is block-buffered when it is a file, so",
    "# the log would only appear when Mosquitto exits.",
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    "log_type notice",
    "log_type information",
    "log_timestamp_format %Y-%m-%dT%H:%M:%S",
  );
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

function passwordLines(passwordFile: string | undefined): string[] {
  return passwordFile === undefined
    ? ["allow_anonymous true"]
    : [`password_file ${passwordFile}`, "allow_anonymous false"];
}

class MosquittoProcess extends BrokerProcess implements MosquittoBroker {
  readonly tlsPort: number | undefined;

  constructor(
    tlsPort: number | undefined,
    options: ConstructorParameters<typeof BrokerProcess>[0],
  ) {
    super(options);
    this.tlsPort = tlsPort;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  get tlsUrl(): string | undefined {
    return this.tlsPort === undefined
      ? undefined
      : `mqtts://127.0.0.1:${this.tlsPort}`;
  }
}

function validateUser(user: string, password: string): void {
  if (user === "" || /[:\r\n]/.test(user)) {
    throw new RangeError(
      `Mosquitto user names must be non-empty, without ':' or line breaks; got ${
        JSON.stringify(user)
      }`,
    );
  }
  if (password === "" || /[\r\n]/.test(password)) {
    throw new RangeError(
      `The password of Mosquitto user ${
        JSON.stringify(user)
      } must be non-empty and on one line`,
    );
  }
}

async function findPasswd(explicit: string | undefined): Promise<string> {
  const fromEnv = readEnv("DX_MOSQUITTO_PASSWD");
  const candidates = explicit !== undefined
    ? [explicit]
    : fromEnv !== undefined
    ? [fromEnv]
    : ["mosquitto_passwd", "/usr/bin/mosquitto_passwd"];
  let lastError: unknown;
  for (const candidate of candidates) {
    try {
      // Without arguments it prints its usage and exits: enough to know it runs.
      await probeTool(candidate, [], "");
      return candidate;
    } catch (error) {
      if (!(error instanceof BrokerUnavailableError)) throw error;
      lastError = error.cause;
    }
  }
  throw new BrokerUnavailableError(
    `mosquitto_passwd is not installed: tried ${
      candidates.join(", ")
    }; it writes the password file of a Mosquitto with users. ${PASSWD_HINT}`,
    { cause: lastError },
  );
}

/**
 * Writes the users into a new password file with `mosquitto_passwd -b`
 * (hashed, never in clear). The password is on its command line, visible to
 * this machine's users for a moment: acceptable for test passwords only.
 */
async function writePasswordFile(
  passwd: string,
  path: string,
  users: ReadonlyArray<[string, string]>,
): Promise<string> {
  await Deno.writeTextFile(path, "");
  for (const [user, password] of users) {
    const output = await new Deno.Command(passwd, {
      args: ["-b", path, user, password],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!output.success) {
      const decoder = new TextDecoder();
      const said = (decoder.decode(output.stdout) +
        decoder.decode(output.stderr)).trim();
      throw new BrokerStartError(
        `\`${passwd} -b ${path} ${user} ***\` failed with exit code ${output.code}; ` +
          `check that it is the mosquitto_passwd of Mosquitto 2. It said:\n${said}`,
        { cause: new Error(said) },
      );
    }
  }
  // Read by Mosquitto after it dropped from root to its own user.
  await Deno.chmod(path, 0o644);
  return path;
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
 * Connects with MQTT 3.1.1 (with a user name and password when given),
 * expects CONNACK with return code 0, disconnects.
 */
async function mqttConnectProbe(
  port: number,
  signal: AbortSignal,
  login?: { username: string; password: string },
): Promise<void> {
  const clientId = `dx-probe-${crypto.randomUUID().slice(0, 8)}`;
  const connect = connectPacket(clientId, login);

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

/** An MQTT 3.1.1 CONNECT packet (§3.1): clean session, keep alive 5 s. */
function connectPacket(
  clientId: string,
  login: { username: string; password: string } | undefined,
): Uint8Array {
  const encoder = new TextEncoder();
  const field = (text: string) => {
    const bytes = encoder.encode(text);
    return [bytes.length >> 8, bytes.length & 0xff, ...bytes];
  };
  const flags = 0x02 | (login ? 0xc0 : 0x00); // clean session, user, password
  const body = [
    ...field("MQTT"),
    0x04, // protocol level 3.1.1
    flags,
    0x00,
    0x05, // keep alive 5 s
    ...field(clientId),
    ...(login ? [...field(login.username), ...field(login.password)] : []),
  ];
  // Remaining length: 7 bits per byte, high bit set while more follow.
  const length: number[] = [];
  let left = body.length;
  do {
    length.push((left & 0x7f) | (left > 0x7f ? 0x80 : 0));
    left >>= 7;
  } while (left > 0);
  return new Uint8Array([0x10, ...length, ...body]);
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

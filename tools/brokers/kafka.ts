/**
 * Resolves Apache Kafka's jars with Maven and starts a single-node KRaft
 * broker on 127.0.0.1, and, for tests, with an SSL listener and a SASL/SCRAM
 * listener beside the plain one.
 *
 * @module
 */

import { Kafka, logLevel } from "kafkajs";
import {
  abortable,
  type BrokerHandle,
  BrokerProcess,
  ensurePortFree,
  freePort,
  pathExists,
  probeTool,
  readEnv,
  readTail,
  removeIfExists,
  validatePort,
} from "./_process.ts";
import { BrokerStartError, BrokerUnavailableError } from "./errors.ts";

/**
 * The Kafka version that tests, benchmarks and `deno task brokers` run,
 * unless env `DX_KAFKA_VERSION` names another (see {@linkcode kafkaVersion}).
 */
export const KAFKA_VERSION = "3.9.1";

/** The SLF4J binding added to Kafka's jars so its log is not silently dropped. */
const SLF4J_SIMPLE_VERSION = "1.7.36";

const REPO_ROOT = repoRoot();

const JAVA_HINT =
  "Install a JRE with `apt-get install openjdk-17-jre-headless` (Debian/Ubuntu) or `brew install openjdk@17` (macOS), or set JAVA_HOME.";
const MAVEN_HINT =
  "Install Maven with `apt-get install maven` (Debian/Ubuntu) or `brew install maven` (macOS).";

/**
 * The Kafka version to run: env `DX_KAFKA_VERSION` when set, else
 * {@linkcode KAFKA_VERSION}.
 *
 * @returns A version such as `3.9.1`.
 *
 * @example Which version would start
 * ```ts
 * import { kafkaVersion } from "./kafka.ts";
 *
 * console.log(kafkaVersion()); // "3.9.1" unless DX_KAFKA_VERSION is set
 * ```
 */
export function kafkaVersion(): string {
  return readEnv("DX_KAFKA_VERSION") ?? KAFKA_VERSION;
}

/** Options of {@linkcode resolveKafkaJars}. */
export interface ResolveKafkaJarsOptions {
  /** The Maven program. Default `mvn` on PATH. */
  mvn?: string;
  /** Aborts the resolution; Maven is then killed. */
  signal?: AbortSignal;
}

/**
 * Makes Kafka's runtime jars available in `<repo>/.cache/kafka/<version>/libs`
 * and returns that directory. Maven copies them (from `~/.m2`, downloading
 * what is missing) into a temporary directory beside it, with `slf4j-simple`
 * so the broker's log reaches its log file; a `.complete` marker is written
 * and the directory renamed into place, so two processes resolving at once
 * both end up with one complete directory. Once the marker exists, Maven is
 * not run again.
 *
 * @param version A Kafka release such as `3.9.1`.
 * @param options Maven program and signal.
 * @returns The absolute path of the `libs` directory.
 * @throws {RangeError} When `version` does not look like a release.
 * @throws {BrokerUnavailableError} When Maven is missing or fails.
 *
 * @example Resolve the default version
 * ```ts ignore
 * import { KAFKA_VERSION, resolveKafkaJars } from "./kafka.ts";
 *
 * const libs = await resolveKafkaJars(KAFKA_VERSION);
 * console.log(libs); // .../.cache/kafka/3.9.1/libs
 * ```
 */
export async function resolveKafkaJars(
  version: string,
  options: ResolveKafkaJarsOptions = {},
): Promise<string> {
  validateVersion(version);
  const versionDir = `${REPO_ROOT}/.cache/kafka/${version}`;
  const libs = `${versionDir}/libs`;
  if (await pathExists(`${libs}/.complete`)) return libs;

  await Deno.mkdir(versionDir, { recursive: true });
  const staging = await Deno.makeTempDir({
    dir: versionDir,
    prefix: "libs.partial-",
  });
  try {
    await runMaven(version, staging, [
      "dependency:copy-dependencies",
      "dependency:copy",
      `-Dartifact=org.slf4j:slf4j-simple:${SLF4J_SIMPLE_VERSION}`,
    ], options);
    await matchSlf4jBinding(version, staging, options);
    await Deno.chmod(staging, 0o755);
    await Deno.writeTextFile(
      `${staging}/.complete`,
      JSON.stringify({ version, resolvedAt: new Date().toISOString() }) + "\n",
    );
    await moveIntoPlace(staging, libs);
    return libs;
  } finally {
    await removeIfExists(staging);
  }
}

/** Options of {@linkcode startKafka}. */
export interface StartKafkaOptions {
  /** Port of the PLAINTEXT listener on 127.0.0.1. Default: a free port. */
  port?: number;
  /** Port of the KRaft CONTROLLER listener on 127.0.0.1. Default: a free port. */
  controllerPort?: number;
  /** Kafka release to run. Default {@linkcode kafkaVersion}(). */
  version?: string;
  /** Aborts the start; the process is then killed and its data deleted. */
  signal?: AbortSignal;
  /** Maximum Java heap in MiB. Default 512. */
  heapMb?: number;
  /** The Java program. Default `$JAVA_HOME/bin/java` when JAVA_HOME is set, else `java`. */
  java?: string;
  /** The Maven program, used once per version. Default `mvn`. */
  mvn?: string;
  /** How long the start may take until the cluster answers. Default 60000. */
  readyTimeoutMs?: number;
  /** A listener that speaks TLS (`SSL`), beside the plain one. Default: none. */
  tls?: KafkaTlsListenerOptions;
  /** A listener that wants a SASL/SCRAM login, beside the plain one. Default: none. */
  sasl?: KafkaSaslListenerOptions;
}

/** The `SSL` listener of {@linkcode startKafka}. */
export interface KafkaTlsListenerOptions {
  /** Port on 127.0.0.1. Default: a free port. */
  port?: number;
  /**
   * PEM file holding the server certificate followed by its unencrypted
   * PKCS#8 key (`ssl.keystore.type=PEM`, `ssl.keystore.location`), such as
   * `serverKeystore` of `generateTestCertificates` (tls.ts).
   */
  keystoreFile: string;
  /**
   * PEM file of the CA certificates that client certificates must chain to
   * (`ssl.truststore.type=PEM`, `ssl.truststore.location`).
   */
  truststoreFile: string;
  /**
   * Admit only clients with a certificate from the trust store
   * (`ssl.client.auth=required`). Default `false` (`none`).
   */
  requireClientCertificate?: boolean;
}

/** The SASL listener of {@linkcode startKafka}. */
export interface KafkaSaslListenerOptions {
  /** Port on 127.0.0.1. Default: a free port. */
  port?: number;
  /**
   * Users, name → password. For SCRAM they are created when the storage is
   * formatted (`--add-scram`, Kafka 3.5 and later), one credential per
   * mechanism; for `PLAIN` they are listed in the listener's login module
   * options in `server.properties`, inside the broker's data directory.
   * Names and passwords are printable ASCII without spaces, `,`, `"`, `[` or
   * `]`, which the format tool's syntax cannot quote. The passwords are on
   * the format tool's command line, which this machine's users can see for
   * a moment: for test passwords only.
   */
  users: Readonly<Record<string, string>>;
  /** Mechanisms enabled. Default both SCRAM ones, `SCRAM-SHA-256` and `SCRAM-SHA-512`. */
  mechanisms?: readonly KafkaSaslMechanism[];
  /**
   * SASL over TLS (`SASL_SSL`, with the stores of `tls`, which must be
   * given) instead of `SASL_PLAINTEXT`. Default `false`.
   */
  overTls?: boolean;
}

/** A SCRAM mechanism of Kafka. */
export type KafkaScramMechanism = "SCRAM-SHA-256" | "SCRAM-SHA-512";

/** A SASL mechanism of the test broker: the SCRAM ones and `PLAIN`. */
export type KafkaSaslMechanism = KafkaScramMechanism | "PLAIN";

/** A running Kafka started by {@linkcode startKafka}. */
export interface KafkaBroker extends BrokerHandle {
  /** The bootstrap list for clients: `["127.0.0.1:<port>"]`. */
  readonly brokers: string[];
  /** The Kafka release that runs. */
  readonly version: string;
  /** The KRaft controller port; kept across restarts. */
  readonly controllerPort: number;
  /** The bootstrap list of the `SSL` listener when started with `tls`. */
  readonly sslBrokers: string[] | undefined;
  /**
   * The bootstrap list of the SASL listener (`SASL_PLAINTEXT`, or `SASL_SSL`
   * with `sasl.overTls`) when started with `sasl`.
   */
  readonly saslBrokers: string[] | undefined;
}

/**
 * Starts a single-node KRaft Kafka (broker and controller in one process,
 * node id 1) on 127.0.0.1 with its data in a fresh temporary directory, and
 * resolves once a kafkajs admin client can describe the cluster.
 *
 * Internal topics get one partition and replication factor 1, so consumer
 * groups and transactions work on one node; the first rebalance is not
 * delayed; topics are created on first use. The broker's output goes to
 * `kafka.log` in the data directory at WARN level (plus start and stop
 * notices); its tail is part of any start error.
 *
 * With `tls`, an `SSL` listener serves the PEM key store given; with `sasl`,
 * a SASL listener admits the SCRAM users given, whose credentials are written
 * into the metadata log when the storage is formatted. The plain listener
 * stays as it is: the readiness probe, brokers among themselves and the
 * controller use it.
 *
 * @param options Ports, version, heap, programs, signal and the extra listeners.
 * @returns The running broker; `stop()` it or use `await using`.
 * @throws {BrokerUnavailableError} When Java or Maven is missing or too old,
 * or the jars cannot be resolved.
 * @throws {BrokerStartError} When formatting fails or the broker exits or
 * does not answer in time.
 * @throws {RangeError} When a port, SCRAM user or password is not usable, or
 * `sasl.overTls` is asked for without `tls`.
 *
 * @example Start, use and stop a broker
 * ```ts ignore
 * import { startKafka } from "./kafka.ts";
 *
 * await using kafka = await startKafka();
 * console.log(kafka.brokers); // ["127.0.0.1:<port>"]
 * ```
 *
 * @example A broker with TLS and SCRAM listeners
 * ```ts ignore
 * import { startKafka } from "./kafka.ts";
 * import { generateTestCertificates } from "./tls.ts";
 *
 * await using certs = await generateTestCertificates();
 * await using kafka = await startKafka({
 *   tls: { keystoreFile: certs.serverKeystore, truststoreFile: certs.caCert },
 *   sasl: { users: { bridge: "a-test-password" } },
 * });
 * console.log(kafka.sslBrokers, kafka.saslBrokers);
 * ```
 */
export async function startKafka(
  options: StartKafkaOptions = {},
): Promise<KafkaBroker> {
  const version = options.version ?? kafkaVersion();
  validateVersion(version);
  const heapMb = options.heapMb ?? 512;
  if (!Number.isInteger(heapMb) || heapMb < 128) {
    throw new RangeError(
      `heapMb must be an integer of at least 128, got ${heapMb}`,
    );
  }
  const port = options.port ?? freePort();
  validatePort(port, "port");
  if (options.port !== undefined) ensurePortFree(port, "Kafka");
  let controllerPort = options.controllerPort ?? freePort();
  while (options.controllerPort === undefined && controllerPort === port) {
    controllerPort = freePort();
  }
  validatePort(controllerPort, "controllerPort");
  if (controllerPort === port) {
    throw new RangeError(
      `controllerPort must differ from port, both are ${port}`,
    );
  }
  const taken = [port, controllerPort];
  const listenerPort = (given: number | undefined, name: string) => {
    const chosen = given ?? freePort(taken);
    validatePort(chosen, name);
    if (taken.includes(chosen)) {
      throw new RangeError(
        `${name} must differ from the other ports (${
          taken.join(", ")
        }), got ${chosen}`,
      );
    }
    if (given !== undefined) ensurePortFree(chosen, `Kafka's ${name}`);
    taken.push(chosen);
    return chosen;
  };
  const tls = options.tls && {
    port: listenerPort(options.tls.port, "tls.port"),
    keystoreFile: options.tls.keystoreFile,
    truststoreFile: options.tls.truststoreFile,
    requireClientCertificate: options.tls.requireClientCertificate ?? false,
  };
  const sasl = options.sasl && {
    port: listenerPort(options.sasl.port, "sasl.port"),
    mechanisms: [
      ...(options.sasl.mechanisms ?? ["SCRAM-SHA-256", "SCRAM-SHA-512"]),
    ],
    overTls: options.sasl.overTls ?? false,
  };
  if (sasl) checkSaslUsers(options.sasl!.users, sasl.mechanisms);
  const scramArgs = sasl
    ? scramCredentials(options.sasl!.users, sasl.mechanisms.filter(isScram))
    : [];
  if (sasl?.overTls && !tls) {
    throw new RangeError(
      "sasl.overTls needs the key and trust stores of `tls`; give `tls` too, or leave overTls false",
    );
  }
  const java = options.java ?? defaultJava();

  // Settle both before throwing, so no Maven run is left behind unobserved.
  const [jars, javaCheck] = await Promise.allSettled([
    resolveKafkaJars(version, { mvn: options.mvn, signal: options.signal }),
    checkJava(java, version),
  ]);
  if (javaCheck.status === "rejected") throw javaCheck.reason;
  if (jars.status === "rejected") throw jars.reason;
  const libs = jars.value;

  const dataDir = await Deno.makeTempDir({ prefix: "dx-kafka-" });
  try {
    const propsPath = `${dataDir}/server.properties`;
    const logPath = `${dataDir}/kafka.log`;
    await Deno.writeTextFile(
      propsPath,
      kafkaProperties({
        port,
        controllerPort,
        version,
        dataDir,
        tls,
        sasl,
        users: options.sasl?.users ?? {},
      }),
    );
    await formatStorage(
      java,
      libs,
      propsPath,
      logPath,
      scramArgs,
      options.signal,
    );
    const broker = new KafkaProcess(version, controllerPort, {
      ssl: tls?.port,
      sasl: sasl?.port,
    }, {
      label: `Kafka ${version} on 127.0.0.1:${port}`,
      port,
      executable: java,
      args: [
        `-Xmx${heapMb}m`,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        ...LOG_PROPERTIES,
        "-cp",
        `${libs}/*`,
        "kafka.Kafka",
        propsPath,
      ],
      dataDir,
      logPath,
      probe: (signal) => describeClusterProbe(port, signal),
      readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
      probeTimeoutMs: 5_000,
      stopTimeoutMs: 20_000,
    });
    await broker.start(options.signal);
    return broker;
  } catch (error) {
    await removeIfExists(dataDir);
    throw error;
  }
}

/** What {@linkcode kafkaProperties} needs. */
export interface KafkaPropertiesOptions {
  /** PLAINTEXT port. */
  port: number;
  /** CONTROLLER port. */
  controllerPort: number;
  /** Kafka release; 4.x gets the share-group settings too. */
  version: string;
  /** Directory whose `data` subdirectory holds the log. */
  dataDir: string;
  /** An `SSL` listener, with PEM stores. */
  tls?: Required<KafkaTlsListenerOptions>;
  /** A SASL listener with these mechanisms. */
  sasl?: {
    /** Its port. */
    port: number;
    /** The mechanisms enabled. */
    mechanisms: readonly KafkaSaslMechanism[];
    /** `SASL_SSL` (with the stores of `tls`) instead of `SASL_PLAINTEXT`. */
    overTls: boolean;
  };
  /** The `PLAIN` users, name → password, when `PLAIN` is enabled. */
  users?: Readonly<Record<string, string>>;
}

/**
 * The `server.properties` of a single-node KRaft broker on 127.0.0.1.
 *
 * @param options Ports, version and data directory.
 * @returns The text of the properties file.
 *
 * @example Look at the listeners
 * ```ts
 * import { kafkaProperties } from "./kafka.ts";
 *
 * const text = kafkaProperties({
 *   port: 9092,
 *   controllerPort: 9093,
 *   version: "3.9.1",
 *   dataDir: "/tmp/k",
 * });
 * console.log(text.includes("listeners=PLAINTEXT://127.0.0.1:9092")); // true
 * ```
 */
export function kafkaProperties(options: KafkaPropertiesOptions): string {
  const { port, controllerPort, version, dataDir, tls, sasl } = options;
  const users = options.users ?? {};
  // Each extra listener is named after its security protocol.
  const extra: string[] = [];
  if (tls) extra.push(`SSL://127.0.0.1:${tls.port}`);
  if (sasl) {
    const protocol = sasl.overTls ? "SASL_SSL" : "SASL_PLAINTEXT";
    extra.push(`${protocol}://127.0.0.1:${sasl.port}`);
  }
  const plain = `PLAINTEXT://127.0.0.1:${port}`;
  const controller = `CONTROLLER://127.0.0.1:${controllerPort}`;
  const protocols = extra.map((listener) => listener.split(":")[0]);
  const lines = [
    "# Written by tools/brokers/kafka.ts for one run; deleted on stop.",
    "process.roles=broker,controller",
    "node.id=1",
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=${[plain, controller, ...extra].join(",")}`,
    `advertised.listeners=${[plain, ...extra].join(",")}`,
    `listener.security.protocol.map=${
      [
        "PLAINTEXT:PLAINTEXT",
        "CONTROLLER:PLAINTEXT",
        ...protocols.map((name) => `${name}:${name}`),
      ].join(",")
    }`,
    "controller.listener.names=CONTROLLER",
    "inter.broker.listener.name=PLAINTEXT",
    `log.dirs=${dataDir}/data`,
    "num.partitions=1",
    "default.replication.factor=1",
    "min.insync.replicas=1",
    "# One node: internal topics must not ask for three replicas.",
    "offsets.topic.replication.factor=1",
    "offsets.topic.num.partitions=1",
    "transaction.state.log.replication.factor=1",
    "transaction.state.log.min.isr=1",
    "transaction.state.log.num.partitions=1",
    "group.initial.rebalance.delay.ms=0",
    "# After a kill, the new process registers only once the old session has",
    "# expired: a short session makes restart() take seconds, not 14.",
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=500",
    "auto.create.topics.enable=true",
    "delete.topic.enable=true",
  ];
  if (majorOf(version) >= 4) {
    lines.push(
      "share.coordinator.state.topic.replication.factor=1",
      "share.coordinator.state.topic.min.isr=1",
    );
  }
  if (tls) {
    lines.push(
      "# PEM stores (KIP-651): the key store file holds the certificate and",
      "# its unencrypted PKCS#8 key, so no store or key password is set.",
      "ssl.keystore.type=PEM",
      `ssl.keystore.location=${tls.keystoreFile}`,
      "ssl.truststore.type=PEM",
      `ssl.truststore.location=${tls.truststoreFile}`,
      `ssl.client.auth=${tls.requireClientCertificate ? "required" : "none"}`,
    );
  }
  if (sasl) {
    const listener = sasl.overTls ? "sasl_ssl" : "sasl_plaintext";
    // SCRAM credentials live in the metadata log (written at format time),
    // so its login module needs no options; PLAIN lists its users here.
    const plainUsers = Object.entries(users)
      .map(([name, password]) => ` user_${name}="${password}"`).join("");
    lines.push(
      `sasl.enabled.mechanisms=${sasl.mechanisms.join(",")}`,
      ...sasl.mechanisms.map((mechanism) =>
        `listener.name.${listener}.${mechanism.toLowerCase()}.sasl.jaas.config=` +
        (isScram(mechanism)
          ? "org.apache.kafka.common.security.scram.ScramLoginModule required;"
          : `org.apache.kafka.common.security.plain.PlainLoginModule required${plainUsers};`)
      ),
    );
  }
  return lines.join("\n") + "\n";
}

function isScram(
  mechanism: KafkaSaslMechanism,
): mechanism is KafkaScramMechanism {
  return mechanism !== "PLAIN";
}

/**
 * Checks the SASL users: at least one, and names and passwords that both
 * the format tool's syntax and the login module options can hold.
 */
function checkSaslUsers(
  users: Readonly<Record<string, string>>,
  mechanisms: readonly KafkaSaslMechanism[],
): void {
  const entries = Object.entries(users);
  if (entries.length === 0) {
    throw new RangeError("sasl.users must name at least one user");
  }
  if (mechanisms.length === 0) {
    throw new RangeError("sasl.mechanisms must name at least one mechanism");
  }
  // Printable ASCII without space, and without what the syntax cannot quote.
  const writable = (text: string) =>
    /^[\x21-\x7e]+$/.test(text) && !/[,"[\];=\\]/.test(text);
  for (const [name, password] of entries) {
    if (!writable(name)) {
      throw new RangeError(
        `SASL user names must be printable ASCII without spaces, ',', '"', '[', ']', ';', '=' or '\\'; got ${
          JSON.stringify(name)
        }`,
      );
    }
    if (!writable(password)) {
      throw new RangeError(
        `The SASL password of ${
          JSON.stringify(name)
        } must be printable ASCII without spaces, ',', '"', '[', ']', ';', '=' or '\\'`,
      );
    }
  }
}

/**
 * The `--add-scram` arguments of the storage format tool: one credential per
 * user and mechanism (none when no SCRAM mechanism is enabled).
 */
function scramCredentials(
  users: Readonly<Record<string, string>>,
  mechanisms: readonly KafkaScramMechanism[],
): string[] {
  const args: string[] = [];
  for (const [name, password] of Object.entries(users)) {
    for (const mechanism of mechanisms) {
      args.push(
        "--add-scram",
        `${mechanism}=[name=${name},password=${password}]`,
      );
    }
  }
  return args;
}

class KafkaProcess extends BrokerProcess implements KafkaBroker {
  readonly version: string;
  readonly controllerPort: number;
  readonly #ports: { ssl?: number | undefined; sasl?: number | undefined };

  constructor(
    version: string,
    controllerPort: number,
    ports: { ssl?: number | undefined; sasl?: number | undefined },
    options: ConstructorParameters<typeof BrokerProcess>[0],
  ) {
    super(options);
    this.version = version;
    this.controllerPort = controllerPort;
    this.#ports = ports;
  }

  get brokers(): string[] {
    return [`127.0.0.1:${this.port}`];
  }

  get sslBrokers(): string[] | undefined {
    return this.#ports.ssl === undefined
      ? undefined
      : [`127.0.0.1:${this.#ports.ssl}`];
  }

  get saslBrokers(): string[] | undefined {
    return this.#ports.sasl === undefined
      ? undefined
      : [`127.0.0.1:${this.#ports.sasl}`];
  }
}

/**
 * SLF4J's simple binding writes to stderr, which goes to the log file:
 * warnings and errors, and the one-line start notice. It replaces a log4j
 * config: the jars of tools/kafka/pom.xml hold no SLF4J binding, so Kafka
 * would log nothing at all, not even why a start failed (3.9 has no log4j;
 * 4.x has log4j-core but not the SLF4J-to-log4j2 bridge, so a
 * `-Dlog4j2.configurationFile` would change nothing).
 */
const LOG_PROPERTIES = [
  "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
  "-Dorg.slf4j.simpleLogger.log.kafka.server.KafkaRaftServer=info",
  "-Dorg.slf4j.simpleLogger.showDateTime=true",
  "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
  "-Dorg.slf4j.simpleLogger.showShortLogName=true",
];

/**
 * SLF4J 2 ignores a 1.x binding: should a Kafka release move to SLF4J 2, get
 * the simple binding of the same version instead.
 */
async function matchSlf4jBinding(
  version: string,
  libs: string,
  options: ResolveKafkaJarsOptions,
): Promise<void> {
  let apiVersion: string | undefined;
  for await (const entry of Deno.readDir(libs)) {
    apiVersion ??= entry.name.match(/^slf4j-api-(\d[^-]*)\.jar$/)?.[1];
  }
  if (apiVersion === undefined || apiVersion === SLF4J_SIMPLE_VERSION) return;
  if (majorOf(apiVersion) === majorOf(SLF4J_SIMPLE_VERSION)) return;
  await Deno.remove(`${libs}/slf4j-simple-${SLF4J_SIMPLE_VERSION}.jar`);
  await runMaven(version, libs, [
    "dependency:copy",
    `-Dartifact=org.slf4j:slf4j-simple:${apiVersion}`,
  ], options);
}

async function runMaven(
  version: string,
  outputDir: string,
  goals: readonly string[],
  options: ResolveKafkaJarsOptions,
): Promise<void> {
  const mvn = options.mvn ?? "mvn";
  const args = [
    "-B",
    "-q",
    "-Dstyle.color=never",
    "-f",
    `${REPO_ROOT}/tools/kafka/pom.xml`,
    ...goals,
    `-Dkafka.version=${version}`,
    "-DincludeScope=runtime",
    `-DoutputDirectory=${outputDir}`,
  ];
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(mvn, {
      args,
      cwd: REPO_ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: options.signal,
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new BrokerUnavailableError(
        `Maven (\`${mvn}\`) is not installed; it resolves the Kafka ${version} jars once. ${MAVEN_HINT}`,
        { cause: error },
      );
    }
    throw error;
  }
  options.signal?.throwIfAborted();
  if (!output.success) {
    const decoder = new TextDecoder();
    const said = (decoder.decode(output.stdout) + decoder.decode(output.stderr))
      .replaceAll(ANSI_ESCAPE, "").split("\n")
      .filter((line) => line.replace("[ERROR]", "").trim() !== "")
      .slice(-12).join("\n");
    throw new BrokerUnavailableError(
      `Maven could not resolve the jars of Kafka ${version} (\`${mvn}\` exit code ${output.code}); ` +
        `check that this version exists on Maven Central and that Maven can reach it. Maven said:\n${said}`,
      { cause: new Error(said) },
    );
  }
}

// Maven colours its errors even with -B when it runs under a terminal.
const ANSI_ESCAPE = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");

async function moveIntoPlace(staging: string, libs: string): Promise<void> {
  try {
    await Deno.rename(staging, libs);
    return;
  } catch (error) {
    // Another process may have won the race: its directory is complete.
    if (await pathExists(`${libs}/.complete`)) return;
    if (!(await pathExists(libs))) throw error;
  }
  // A `libs` without marker is left over from an interrupted old layout.
  await removeIfExists(libs);
  await Deno.rename(staging, libs);
}

async function checkJava(java: string, version: string): Promise<void> {
  const output = await probeTool(
    java,
    ["-version"],
    `Java (\`${java}\`) is not installed; Kafka ${version} needs it. ${JAVA_HINT}`,
  );
  const match = output.match(/version "(\d+)(?:\.(\d+))?/);
  if (!match) return; // An unusual JVM: let the broker itself tell.
  const major = match[1] === "1" ? Number(match[2]) : Number(match[1]);
  const needed = majorOf(version) >= 4 ? 17 : 11;
  if (major < needed) {
    throw new BrokerUnavailableError(
      `Kafka ${version} needs Java ${needed} or newer, but \`${java}\` is Java ${major}. ${JAVA_HINT}`,
      { cause: new Error(output.trim()) },
    );
  }
}

async function formatStorage(
  java: string,
  libs: string,
  propsPath: string,
  logPath: string,
  extraArgs: readonly string[],
  signal: AbortSignal | undefined,
): Promise<void> {
  const output = await new Deno.Command(java, {
    args: [
      ...LOG_PROPERTIES,
      "-cp",
      `${libs}/*`,
      "kafka.tools.StorageTool",
      "format",
      "-t",
      randomClusterId(),
      "-c",
      propsPath,
      ...extraArgs,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal,
  }).output();
  signal?.throwIfAborted();
  const decoder = new TextDecoder();
  const text = decoder.decode(output.stdout) + decoder.decode(output.stderr);
  await Deno.writeTextFile(logPath, text);
  if (!output.success) {
    throw new BrokerStartError(
      `Formatting the Kafka storage with ${propsPath} failed (exit code ${output.code}); ` +
        `the end of ${logPath} says:\n${await readTail(logPath)}`,
      { cause: new Error(text.trim()) },
    );
  }
}

/**
 * A cluster id as Kafka's `random-uuid` makes it: 16 random bytes in
 * unpadded base64url, not starting with `-` (which would read as an option).
 */
function randomClusterId(): string {
  while (true) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    const id = btoa(String.fromCharCode(...bytes))
      .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
    if (!id.startsWith("-") && bytes.some((b) => b !== 0)) return id;
  }
}

async function describeClusterProbe(
  port: number,
  signal: AbortSignal,
): Promise<void> {
  // A plain connect first: cheap, and kafkajs is not woken for a closed port.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.close();
  signal.throwIfAborted();

  await abortable(describeCluster(port), signal);
}

async function describeCluster(port: number): Promise<void> {
  const admin = new Kafka({
    clientId: "dx-brokers-probe",
    brokers: [`127.0.0.1:${port}`],
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1_000,
    requestTimeout: 3_000,
    retry: { retries: 0 },
  }).admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    if (!cluster.brokers.some((broker) => broker.port === port)) {
      throw new Error(
        `the cluster lists brokers ${
          JSON.stringify(cluster.brokers)
        }, none on port ${port}`,
      );
    }
  } finally {
    await admin.disconnect();
  }
}

function defaultJava(): string {
  const home = readEnv("JAVA_HOME");
  return home === undefined ? "java" : `${home}/bin/java`;
}

function validateVersion(version: string): void {
  if (!/^\d+\.\d+\.\d+(-[A-Za-z0-9.]+)?$/.test(version)) {
    throw new RangeError(
      `Kafka version must look like 3.9.1, got ${JSON.stringify(version)}`,
    );
  }
}

function majorOf(version: string): number {
  return Number(version.split(".")[0]);
}

function repoRoot(): string {
  const url = new URL("../../", import.meta.url);
  if (url.protocol !== "file:") {
    throw new Error(
      `tools/brokers must run from a local checkout, but it was loaded from ${url.href}`,
    );
  }
  return decodeURIComponent(url.pathname).replace(/\/$/, "");
}

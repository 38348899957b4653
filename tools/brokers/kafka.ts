/**
 * Resolves Apache Kafka's jars with Maven and starts a single-node KRaft
 * broker on 127.0.0.1.
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
}

/** A running Kafka started by {@linkcode startKafka}. */
export interface KafkaBroker extends BrokerHandle {
  /** The bootstrap list for clients: `["127.0.0.1:<port>"]`. */
  readonly brokers: string[];
  /** The Kafka release that runs. */
  readonly version: string;
  /** The KRaft controller port; kept across restarts. */
  readonly controllerPort: number;
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
 * @param options Ports, version, heap, programs and signal.
 * @returns The running broker; `stop()` it or use `await using`.
 * @throws {BrokerUnavailableError} When Java or Maven is missing or too old,
 * or the jars cannot be resolved.
 * @throws {BrokerStartError} When formatting fails or the broker exits or
 * does not answer in time.
 *
 * @example Start, use and stop a broker
 * ```ts ignore
 * import { startKafka } from "./kafka.ts";
 *
 * await using kafka = await startKafka();
 * console.log(kafka.brokers); // ["127.0.0.1:<port>"]
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
      kafkaProperties({ port, controllerPort, version, dataDir }),
    );
    await formatStorage(java, libs, propsPath, logPath, options.signal);
    const broker = new KafkaProcess(version, controllerPort, {
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
  const { port, controllerPort, version, dataDir } = options;
  const lines = [
    "# Written by tools/brokers/kafka.ts for one run; deleted on stop.",
    "process.roles=broker,controller",
    "node.id=1",
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
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
  return lines.join("\n") + "\n";
}

class KafkaProcess extends BrokerProcess implements KafkaBroker {
  readonly version: string;
  readonly controllerPort: number;

  constructor(
    version: string,
    controllerPort: number,
    options: ConstructorParameters<typeof BrokerProcess>[0],
  ) {
    super(options);
    this.version = version;
    this.controllerPort = controllerPort;
  }

  get brokers(): string[] {
    return [`127.0.0.1:${this.port}`];
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

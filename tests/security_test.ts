/**
 * The bridge on brokers that want TLS, a client certificate, a password or a
 * SASL login (SCRAM or PLAIN): it carries events end to end when configured right, and when
 * configured wrong it says what failed and what to do, keeps retrying, and
 * never writes a secret (password, SASL password, TLS key).
 *
 * One Kafka with PLAINTEXT, SSL and SASL_SSL (SCRAM and PLAIN) listeners serves
 * the whole file; each test starts the Mosquitto it needs. The bridge runs
 * as the CLI, so what is checked is what an operator sees: its log lines on
 * stdout and anything on stderr.
 */
import assert from "node:assert/strict";
import {
  createCloudEvent,
  serializeStructured,
  toKafkaRecord,
} from "../src/cloudevents/mod.ts";
import { KafkaSink, kafkaStream } from "../src/kafka/mod.ts";
import {
  isBrokerUnavailableError,
  type KafkaBroker,
  type MosquittoBroker,
  startKafka,
  startMosquitto,
} from "../tools/brokers/mod.ts";
import {
  generateTestCertificates,
  type TestCertificates,
} from "../tools/brokers/tls.ts";
import { type LogLine, parseLine, spawnCli, waitFor } from "./_bridge.ts";
import {
  createTopics,
  header,
  publishAll,
  readTopics,
  uniqueName,
} from "./_kafka.ts";

/** The SASL user of the test Kafka (SCRAM and PLAIN). */
const SCRAM_USER = "bridge";

interface SecureKafka {
  kafka: KafkaBroker;
  /** The CA that signed the broker's certificate, and a client certificate. */
  certs: TestCertificates;
  /** Another CA, which signed nothing the brokers use. */
  strangerCerts: TestCertificates;
  scramPassword: string;
}

const secure = await startSecureKafka();

async function startSecureKafka(): Promise<SecureKafka | undefined> {
  const unavailable = Deno.env.get("DX_TEST_BROKERS_UNAVAILABLE");
  if (unavailable) return undefined;
  const scramPassword = `scram-${crypto.randomUUID().replaceAll("-", "")}`;
  let certs: TestCertificates | undefined;
  let strangerCerts: TestCertificates | undefined;
  try {
    certs = await generateTestCertificates({ clientName: "bridge-cert" });
    strangerCerts = await generateTestCertificates();
    const kafka = await startKafka({
      tls: { keystoreFile: certs.serverKeystore, truststoreFile: certs.caCert },
      // SCRAM over TLS, as it runs in production: the login is not sent
      // in clear, and the bridge's TLS and SASL settings work together.
      sasl: {
        users: { [SCRAM_USER]: scramPassword },
        mechanisms: ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"],
        overTls: true,
      },
    });
    const started = { kafka, certs, strangerCerts, scramPassword };
    globalThis.addEventListener("unload", () => {
      kafka.stopSync();
      Deno.removeSync(started.certs.dir, { recursive: true });
      Deno.removeSync(started.strangerCerts.dir, { recursive: true });
    });
    return started;
  } catch (error) {
    await certs?.remove();
    await strangerCerts?.remove();
    if (!isBrokerUnavailableError(error)) throw error;
    if (Deno.env.get("DX_REQUIRE_BROKERS") === "1") throw error;
    console.error(`[tests] security tests skipped: ${error.message}`);
    return undefined;
  }
}

/**
 * The bridge CLI as a child process, with its own environment (no DX_
 * variable of this process leaks in) and both of its output streams kept.
 */
class CliBridge implements AsyncDisposable {
  readonly lines: LogLine[] = [];
  #stdout = "";
  #stderr = "";
  readonly #child: Deno.ChildProcess;
  readonly #reading: Promise<unknown>;
  #exit: Deno.CommandStatus | undefined;

  constructor(args: string[], env: Record<string, string> = {}) {
    this.#child = spawnCli(args, env);
    this.#child.status.then((status) => this.#exit = status);
    this.#reading = Promise.all([
      this.#collect(this.#child.stdout, (text) => {
        this.#stdout += text;
        const parts = this.#stdout.split("\n");
        const complete = parts.slice(0, -1);
        for (const line of complete.slice(this.lines.length)) {
          this.lines.push(parseLine(line));
        }
      }),
      this.#collect(this.#child.stderr, (text) => this.#stderr += text),
    ]);
  }

  /** Everything it wrote so far, stdout then stderr. */
  get output(): string {
    return this.#stdout + this.#stderr;
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  /** Waits until `count` log lines match; fails if the bridge exits first. */
  async waitForLog(
    what: string,
    matches: (line: LogLine) => boolean,
    { count = 1, timeoutMs = 60_000 } = {},
  ): Promise<LogLine[]> {
    await waitFor(what, () => {
      if (!this.running) {
        throw new Error(
          `the bridge exited with ${
            JSON.stringify(this.#exit)
          } while waiting for ${what}; it wrote:\n${this.output.slice(-4000)}`,
        );
      }
      return this.lines.filter(matches).length >= count;
    }, timeoutMs);
    return this.lines.filter(matches);
  }

  /** Waits for the exit (of a command that ends by itself). */
  async exited(timeoutMs = 60_000): Promise<number> {
    await waitFor("the bridge to exit", () => !this.running, timeoutMs);
    await this.#reading;
    return this.#exit!.code;
  }

  /** SIGTERM, then the exit code; killed and failed after `timeoutMs`. */
  async stop(timeoutMs = 30_000): Promise<number> {
    if (this.running) this.#child.kill("SIGTERM");
    try {
      return await this.exited(timeoutMs);
    } catch (error) {
      this.#child.kill("SIGKILL");
      await this.#child.status;
      throw error;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.running) this.#child.kill("SIGKILL");
    await this.#child.status;
    await this.#reading;
  }

  async #collect(
    stream: ReadableStream<Uint8Array>,
    take: (text: string) => void,
  ): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      take(text);
    }
  }
}

/** A temporary directory for configuration and password files. */
async function scratch(): Promise<
  & { dir: string; write(name: string, text: string): Promise<string> }
  & AsyncDisposable
> {
  const dir = await Deno.makeTempDir({ prefix: "dx-security-" });
  return {
    dir,
    async write(name, text) {
      const path = `${dir}/${name}`;
      await Deno.writeTextFile(path, text);
      return path;
    },
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** A bridge configuration for one test: its own topics, fast reconnects, trace logs. */
function bridgeConfig(
  id: string,
  mqtt: Record<string, unknown>,
  kafka: Record<string, unknown>,
): Record<string, unknown> {
  return {
    mqtt: {
      topics: [`${id}/#`],
      clientId: `${id}-bridge`,
      reconnectPeriodMs: 200,
      reconnectMaxDelayMs: 1000,
      ...mqtt,
    },
    kafka: { clientId: id, ...kafka },
    routes: {},
    defaultTopic: `${id}.events`,
    deadLetterTopic: `${id}.dlq`,
    drainTimeoutMs: 5000,
    log: { level: "trace" },
  };
}

/**
 * Starts the bridge, publishes `count` events once it is subscribed, reads
 * them back from Kafka's plain listener, stops the bridge, and returns its
 * output.
 */
async function carryEvents(
  config: Record<string, unknown>,
  publishUrl: string,
  env: Record<string, string> = {},
  count = 20,
): Promise<CliBridge> {
  const id = (config.defaultTopic as string).replace(/\.events$/, "");
  await using files = await scratch();
  const path = await files.write("bridge.json", JSON.stringify(config));
  const bridge = new CliBridge(["--config", path], env);
  try {
    await bridge.waitForLog(
      "the bridge subscribed to MQTT",
      (line) => line.message.startsWith("MQTT subscribed"),
    );
    const events = Array.from({ length: count }, (_, i) =>
      createCloudEvent({
        source: `/security/${id}`,
        type: "dev.dataexchange.test",
        data: { i },
      }));
    await publishAll(
      publishUrl,
      events.map((event) => ({
        topic: `${id}/device`,
        payload: serializeStructured(event),
      })),
    );
    const records = await readTopics(
      secure!.kafka.brokers,
      [`${id}.events`],
      { until: (read) => read.length >= count, timeoutMs: 60_000 },
    );
    const ids = new Set(
      records.map((record) => record.message.headers?.ce_id?.toString()),
    );
    for (const event of events) {
      assert.ok(ids.has(event.id), `event ${event.id} reached Kafka`);
    }
    assert.equal(await bridge.stop(), 0, "the bridge stopped cleanly");
    return bridge;
  } finally {
    await bridge[Symbol.asyncDispose]();
  }
}

/**
 * Runs a bridge that cannot connect: waits for `attempts` log lines that
 * match, checks that it is still running, stops it, and returns it.
 */
async function failToConnect(
  config: Record<string, unknown>,
  what: string,
  matches: (line: LogLine) => boolean,
  attempts = 5,
): Promise<{ bridge: CliBridge; failures: LogLine[] }> {
  await using files = await scratch();
  const path = await files.write("bridge.json", JSON.stringify(config));
  const bridge = new CliBridge(["--config", path]);
  try {
    const failures = await bridge.waitForLog(what, matches, {
      count: attempts,
    });
    assert.ok(
      bridge.running,
      `the bridge still runs after ${attempts} failed attempts`,
    );
    assert.equal(
      bridge.lines.filter((line) => line.level === "FATAL").length,
      0,
      "no fatal error",
    );
    assert.equal(await bridge.stop(), 0, "a signal still stops it cleanly");
    return { bridge, failures };
  } finally {
    await bridge[Symbol.asyncDispose]();
  }
}

/** The lines of a PEM key's body: none of them may be written anywhere. */
async function keyLines(path: string): Promise<string[]> {
  return (await Deno.readTextFile(path)).split("\n")
    .filter((line) => line.length >= 16 && !line.startsWith("-----"));
}

function assertNoSecret(output: string, secrets: readonly string[]): void {
  for (const secret of secrets) {
    assert.ok(
      !output.includes(secret),
      `the output shows a secret (${secret.slice(0, 4)}...)`,
    );
  }
}

/**
 * Where a client's first session came in, from Mosquitto's log: the
 * listener's port and the user name (`undefined` when anonymous).
 */
async function sessionOf(
  logPath: string,
  clientId: string,
): Promise<{ port: number; username: string | undefined }> {
  const log = await Deno.readTextFile(logPath);
  const connected = log.match(
    new RegExp(
      `New client connected from 127\\.0\\.0\\.1:(\\d+) as ${clientId} \\(([^)]*)\\)`,
    ),
  );
  if (!connected) throw new Error(`${clientId} never connected:\n${log}`);
  const opened = log.match(
    new RegExp(
      `New connection from 127\\.0\\.0\\.1:${connected[1]} on port (\\d+)`,
    ),
  );
  if (!opened) throw new Error(`no connection from port ${connected[1]}`);
  return {
    port: Number(opened[1]),
    username: connected[2].match(/u'([^']*)'/)?.[1],
  };
}

function reconnectError(line: LogLine): string {
  return line.message.includes("reconnect attempt")
    ? String(line.properties.error ?? "")
    : "";
}

const ignore = secure === undefined;
const sanitize = { sanitizeOps: false, sanitizeResources: false };

/**
 * A Mosquitto with a TLS listener whose server certificate the test CA
 * signed; with `requireCertificate` it admits only clients with a
 * certificate from that CA.
 */
function startMosquittoWithTls(
  options: { requireCertificate?: boolean } = {},
): Promise<MosquittoBroker> {
  const { certs } = secure!;
  return startMosquitto({
    tls: {
      caFile: certs.caCert,
      certFile: certs.serverCert,
      keyFile: certs.serverKey,
      requireCertificate: options.requireCertificate ?? false,
    },
  });
}

Deno.test({
  name:
    "the bridge reads MQTT over TLS, trusting the test CA, and forwards to Kafka",
  ignore,
  ...sanitize,
  async fn() {
    const { certs } = secure!;
    await using broker = await startMosquittoWithTls();
    const id = uniqueName("mqtt-tls");
    const bridge = await carryEvents(
      bridgeConfig(id, {
        url: broker.tlsUrl,
        tls: { ca: certs.caCert },
      }, { brokers: secure!.kafka.brokers }),
      broker.url,
    );
    const session = await sessionOf(broker.logPath, `${id}-bridge`);
    assert.equal(session.port, broker.tlsPort, "it came in on the TLS port");
    assertNoSecret(bridge.output, await keyLines(certs.serverKey));
  },
});

Deno.test({
  name:
    "a Mosquitto that requires a client certificate admits the bridge by its certificate's name",
  ignore,
  ...sanitize,
  async fn() {
    const { certs } = secure!;
    await using broker = await startMosquittoWithTls({
      requireCertificate: true,
    });
    const id = uniqueName("mqtt-cert");
    const bridge = await carryEvents(
      bridgeConfig(id, {
        url: broker.tlsUrl,
        tls: { ca: certs.caCert, cert: certs.clientCert, key: certs.clientKey },
      }, { brokers: secure!.kafka.brokers }),
      broker.url,
    );
    // use_identity_as_username: Mosquitto names the user after the CN.
    const session = await sessionOf(broker.logPath, `${id}-bridge`);
    assert.deepEqual(session, {
      port: broker.tlsPort,
      username: "bridge-cert",
    });
    assertNoSecret(bridge.output, await keyLines(certs.clientKey));
  },
});

Deno.test({
  name:
    "the bridge logs in to Mosquitto with a user name and a password from a file",
  ignore,
  ...sanitize,
  async fn() {
    const password = `mqtt-${crypto.randomUUID()}`;
    const publisherPassword = `pub-${crypto.randomUUID()}`;
    await using broker = await startMosquitto({
      users: { bridge: password, publisher: publisherPassword },
    });
    await using files = await scratch();
    const passwordFile = await files.write("mqtt-password", `${password}\n`);
    const id = uniqueName("mqtt-password");
    const bridge = await carryEvents(
      bridgeConfig(id, { url: broker.url, username: "bridge", passwordFile }, {
        brokers: secure!.kafka.brokers,
      }),
      broker.url.replace("mqtt://", `mqtt://publisher:${publisherPassword}@`),
    );
    const session = await sessionOf(broker.logPath, `${id}-bridge`);
    assert.deepEqual(session, { port: broker.port, username: "bridge" });
    assertNoSecret(bridge.output, [password]);
  },
});

Deno.test({
  name:
    "the bridge writes to Kafka over TLS, trusting the test CA, and the password from DX_MQTT_PASSWORD stays hidden",
  ignore,
  ...sanitize,
  async fn() {
    const { certs } = secure!;
    const password = `mqtt-${crypto.randomUUID()}`;
    await using broker = await startMosquitto({
      users: { bridge: password, publisher: password },
    });
    const id = uniqueName("kafka-tls");
    const bridge = await carryEvents(
      bridgeConfig(id, { url: broker.url, username: "bridge" }, {
        brokers: secure!.kafka.sslBrokers,
        tls: { enabled: true, ca: certs.caCert },
      }),
      broker.url.replace("mqtt://", `mqtt://publisher:${password}@`),
      { DX_MQTT_PASSWORD: password },
    );
    assert.ok(
      bridge.lines.some((line) =>
        line.message.startsWith("Kafka producer connected") &&
        JSON.stringify(line.properties).includes(secure!.kafka.sslBrokers![0])
      ),
      "the producer connected to the SSL listener",
    );
    assertNoSecret(bridge.output, [password]);
  },
});

for (const mechanism of ["scram-sha-256", "scram-sha-512", "plain"] as const) {
  Deno.test({
    name:
      `the bridge writes to Kafka with a SASL/${mechanism.toUpperCase()} login over TLS`,
    ignore,
    ...sanitize,
    async fn() {
      await using files = await scratch();
      const passwordFile = await files.write(
        "sasl-password",
        secure!.scramPassword,
      );
      await using broker = await startMosquitto({});
      const id = uniqueName(mechanism);
      const bridge = await carryEvents(
        bridgeConfig(id, { url: broker.url }, {
          brokers: secure!.kafka.saslBrokers,
          tls: { enabled: true, ca: secure!.certs.caCert },
          sasl: { mechanism, username: SCRAM_USER, passwordFile },
        }),
        broker.url,
      );
      assertNoSecret(bridge.output, [secure!.scramPassword]);
    },
  });
}

Deno.test({
  name:
    "a wrong MQTT password is named in the log with what to do, and the bridge keeps retrying",
  ignore,
  ...sanitize,
  async fn() {
    const right = `mqtt-${crypto.randomUUID()}`;
    const wrong = `wrong-${crypto.randomUUID()}`;
    await using broker = await startMosquitto({ users: { bridge: right } });
    await using files = await scratch();
    const passwordFile = await files.write("mqtt-password", wrong);
    const id = uniqueName("mqtt-wrong");
    const { bridge, failures } = await failToConnect(
      bridgeConfig(id, { url: broker.url, username: "bridge", passwordFile }, {
        brokers: secure!.kafka.brokers,
      }),
      "five refused MQTT logins",
      (line) => reconnectError(line).includes("the broker refused"),
    );
    const error = reconnectError(failures[0]);
    assert.match(error, /user "bridge"/);
    assert.match(error, /CONNACK reason code 135/);
    assert.match(error, /check the user name and password/);
    assert.equal(failures[0].properties.url, broker.url);
    assertNoSecret(bridge.output, [wrong, right]);
  },
});

Deno.test({
  name:
    "a Kafka to MQTT route refused by the MQTT broker keeps retrying instead of stopping the bridge",
  ignore,
  ...sanitize,
  async fn() {
    // Regression: MqttSink.connect() rejected on the first refused CONNACK
    // and the whole bridge exited with code 1.
    const right = `mqtt-${crypto.randomUUID()}`;
    const wrong = `wrong-${crypto.randomUUID()}`;
    await using broker = await startMosquitto({ users: { bridge: right } });
    await using files = await scratch();
    const passwordFile = await files.write("mqtt-password", wrong);
    const id = uniqueName("k2m-wrong");
    const config = bridgeConfig(
      id,
      { url: broker.url, username: "bridge", passwordFile },
      { brokers: secure!.kafka.brokers },
    );
    config.kafkaToMqtt = [{
      topics: [`${id}.commands`],
      mqttTopic: `${id}/out`,
    }];
    const { bridge, failures } = await failToConnect(
      config,
      "five refused connections of the Kafka to MQTT route",
      (line) => line.message.startsWith("Kafka to MQTT route"),
    );
    assert.match(String(failures[0].properties.error), /reason code 135/);
    assertNoSecret(bridge.output, [wrong, right]);
  },
});

Deno.test({
  name:
    "credentials in DX_MQTT_URL log the bridge in, and their password is never shown, right or wrong",
  ignore,
  ...sanitize,
  async fn() {
    const right = `url-${crypto.randomUUID()}`;
    const wrong = `wrong-${crypto.randomUUID()}`;
    await using broker = await startMosquitto({ users: { bridge: right } });
    const withPassword = (password: string) =>
      broker.url.replace("mqtt://", `mqtt://bridge:${password}@`);
    const shown = broker.url.replace("mqtt://", "mqtt://bridge:***@");

    const refused = uniqueName("url-wrong");
    await using files = await scratch();
    const path = await files.write(
      "bridge.json",
      JSON.stringify(
        bridgeConfig(refused, {}, { brokers: secure!.kafka.brokers }),
      ),
    );
    const failing = new CliBridge(["--config", path], {
      DX_MQTT_URL: withPassword(wrong),
    });
    try {
      const [failure] = await failing.waitForLog(
        "a refused MQTT login",
        (line) => reconnectError(line).includes("the broker refused"),
      );
      assert.equal(failure.properties.url, shown);
      assert.match(reconnectError(failure), /user "bridge"/);
      assert.equal(await failing.stop(), 0);
    } finally {
      await failing[Symbol.asyncDispose]();
    }
    assertNoSecret(failing.output, [wrong]);
    assert.ok(failing.output.includes(shown), "the URL is shown, redacted");

    const id = uniqueName("url-right");
    const bridge = await carryEvents(
      bridgeConfig(id, {}, { brokers: secure!.kafka.brokers }),
      withPassword(right),
      { DX_MQTT_URL: withPassword(right) },
    );
    assert.deepEqual(await sessionOf(broker.logPath, `${id}-bridge`), {
      port: broker.port,
      username: "bridge",
    });
    assertNoSecret(bridge.output, [right]);
  },
});

Deno.test({
  name:
    "a wrong SCRAM password is named in the log with what to do, and the bridge keeps retrying",
  ignore,
  ...sanitize,
  async fn() {
    const wrong = `wrong-${crypto.randomUUID()}`;
    await using files = await scratch();
    const passwordFile = await files.write("sasl-password", wrong);
    await using broker = await startMosquitto({});
    const id = uniqueName("scram-wrong");
    const { bridge, failures } = await failToConnect(
      bridgeConfig(id, { url: broker.url }, {
        brokers: secure!.kafka.saslBrokers,
        tls: { enabled: true, ca: secure!.certs.caCert },
        sasl: {
          mechanism: "scram-sha-256",
          username: SCRAM_USER,
          passwordFile,
        },
      }),
      "five refused SCRAM logins",
      (line) =>
        // A refusal, not "not reachable", and without the hint about
        // starting local brokers.
        /^Kafka at .* refused the connection/.test(line.message) &&
        !line.message.includes("deno task brokers") &&
        String(line.properties.error).includes("refused the SASL"),
    );
    const error = String(failures[0].properties.error);
    assert.match(
      error,
      new RegExp(
        `Kafka at ${
          secure!.kafka.saslBrokers![0]
        } refused the SASL SCRAM-SHA-256 login of user "${SCRAM_USER}"`,
      ),
    );
    assert.match(error, /check the SASL user name and password/);
    assert.match(error, /invalid credentials/, "Kafka's own reason is kept");
    assertNoSecret(bridge.output, [wrong, secure!.scramPassword]);
  },
});

Deno.test({
  name:
    "an MQTT broker certificate from an unknown CA gives a TLS error that says what to trust",
  ignore,
  ...sanitize,
  async fn() {
    const { strangerCerts } = secure!;
    await using broker = await startMosquittoWithTls();
    const id = uniqueName("mqtt-unknown-ca");
    const { failures } = await failToConnect(
      bridgeConfig(id, {
        url: broker.tlsUrl,
        tls: { ca: strangerCerts.caCert },
      }, { brokers: secure!.kafka.brokers }),
      "five failed TLS handshakes",
      (line) => reconnectError(line).includes("certificate did not verify"),
    );
    assert.match(reconnectError(failures[0]), /trust the CA that signed it/);
    await assert.rejects(
      () => sessionOf(broker.logPath, `${id}-bridge`),
      /never connected/,
      "the bridge never got an MQTT session",
    );
  },
});

Deno.test({
  name:
    "a Mosquitto that requires a client certificate says so when the bridge has none",
  ignore,
  ...sanitize,
  async fn() {
    const { certs } = secure!;
    await using broker = await startMosquittoWithTls({
      requireCertificate: true,
    });
    const id = uniqueName("mqtt-no-cert");
    const { failures } = await failToConnect(
      bridgeConfig(id, { url: broker.tlsUrl, tls: { ca: certs.caCert } }, {
        brokers: secure!.kafka.brokers,
      }),
      "five refused handshakes",
      (line) => reconnectError(line).includes("wants a client certificate"),
    );
    assert.match(
      reconnectError(failures[0]),
      /give a TLS certificate and its key/,
    );
  },
});

Deno.test({
  name:
    "a Kafka broker certificate from an unknown CA gives a TLS error that says what to trust",
  ignore,
  ...sanitize,
  async fn() {
    const { strangerCerts } = secure!;
    await using broker = await startMosquitto({});
    const id = uniqueName("kafka-unknown-ca");
    const { failures } = await failToConnect(
      bridgeConfig(id, { url: broker.url }, {
        brokers: secure!.kafka.sslBrokers,
        tls: { enabled: true, ca: strangerCerts.caCert },
      }),
      "five failed TLS handshakes with Kafka",
      (line) =>
        /^Kafka at .* refused the connection/.test(line.message) &&
        String(line.properties.error).includes("did not verify"),
    );
    const error = String(failures[0].properties.error);
    assert.match(
      error,
      new RegExp(
        `The TLS certificate of Kafka at ${
          secure!.kafka.sslBrokers![0]
        } did not verify`,
      ),
    );
    assert.match(error, /trust the CA that signed it/);
  },
});

Deno.test({
  name:
    "kafkaStream writes its dead letters over the consumer's own TLS and SASL settings",
  ignore,
  ...sanitize,
  async fn() {
    const id = uniqueName("secure-dlq");
    const topic = `${id}.commands`;
    const deadLetterTopic = `${id}.dlq`;
    const plain = secure!.kafka.brokers;
    await createTopics(plain, [topic, deadLetterTopic]);
    const event = createCloudEvent({
      source: "/security-test",
      type: "dev.dataexchange.command",
    });
    {
      await using sink = await KafkaSink.connect({ brokers: plain });
      await sink.send(topic, toKafkaRecord(event));
    }
    // The consumer reaches Kafka only through SASL over TLS; so must the
    // producer of its dead letters.
    const controller = new AbortController();
    const dead: string[] = [];
    const stream = kafkaStream({
      brokers: secure!.kafka.saslBrokers!,
      tls: { ca: await Deno.readTextFile(secure!.certs.caCert) },
      sasl: {
        mechanism: "scram-sha-512",
        username: SCRAM_USER,
        password: secure!.scramPassword,
      },
      groupId: `${id}-group`,
      topics: [topic],
      fromBeginning: true,
      deadLetterTopic,
      nack: { maxAttempts: 1 },
      onDeadLetter: ({ code }) => dead.push(code),
      signal: controller.signal,
    });
    try {
      for await (const envelope of stream) {
        envelope.nack(new Error("refused by the test"));
        break;
      }
      const [record] = await readTopics(plain, [deadLetterTopic], {
        until: (read) => read.length >= 1,
      });
      assert.equal(header(record.message, "ce_id"), event.id);
      assert.equal(header(record.message, "dx-error"), "processing-failed");
      assert.deepEqual(dead, ["processing-failed"]);
    } finally {
      controller.abort();
      await stream.return(undefined);
    }
  },
});

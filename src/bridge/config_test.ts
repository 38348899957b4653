import assert from "node:assert/strict";
import { isDataExchangeError } from "../errors.ts";
import {
  type BridgeConfigInput,
  checkConfig,
  CONFIG_FIELDS,
  crossFieldProblems,
  ENV_FIELDS,
  envName,
  invalidConfigError,
  loadConfigFile,
  misspelledVariables,
  parseConfig,
  redactConfig,
  SECRET_FIELDS,
} from "./config.ts";

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(isDataExchangeError(error), `not a DataExchangeError: ${error}`);
    assert.equal(error.code, "invalid-config");
    return error.message;
  }
  assert.fail("no error thrown");
}

Deno.test("parseConfig() with nothing gives the documented defaults", () => {
  const config = parseConfig({});
  assert.equal(config.mqtt.url, "mqtt://127.0.0.1:1883");
  assert.deepEqual(config.mqtt.topics, ["devices/#"]);
  assert.equal(config.mqtt.clientId, "dx-bridge");
  assert.equal(config.mqtt.protocolVersion, 5);
  assert.equal(config.mqtt.qos, 1);
  assert.deepEqual(config.kafka.brokers, ["127.0.0.1:9092"]);
  assert.equal(config.kafka.mode, "binary");
  assert.deepEqual(config.routes, {
    telemetry: "dx.telemetry",
    alert: "dx.alerts",
  });
  assert.equal(config.defaultTopic, "dx.unclassified");
  assert.equal(config.deadLetterTopic, "dx.deadletter");
  assert.equal(config.log.level, "info");
  assert.deepEqual(parseConfig(undefined), config);
});

Deno.test("parseConfig() keeps given values and fills the rest", () => {
  const config = parseConfig({
    mqtt: { url: "mqtts://broker.example:8883", clientId: "b1" },
    routes: { metrics: "m.topic" },
  });
  assert.equal(config.mqtt.url, "mqtts://broker.example:8883");
  assert.equal(config.mqtt.clientId, "b1");
  assert.deepEqual(config.mqtt.topics, ["devices/#"]);
  assert.deepEqual(config.routes, { metrics: "m.topic" });
});

Deno.test("parseConfig() applies DX_MQTT_URL, DX_KAFKA_BROKERS and DX_LOG_LEVEL", () => {
  const config = parseConfig({ mqtt: { url: "mqtt://file:1883" } }, {
    DX_MQTT_URL: "mqtt://env:1884",
    DX_KAFKA_BROKERS: "k1:9092, k2:9093,",
    DX_LOG_LEVEL: "debug",
  });
  assert.equal(config.mqtt.url, "mqtt://env:1884");
  assert.deepEqual(config.kafka.brokers, ["k1:9092", "k2:9093"]);
  assert.equal(config.log.level, "debug");
});

Deno.test("parseConfig() names the field, the value given and what is allowed", () => {
  const message = configError(() =>
    parseConfig({ kafka: { brokers: "localhost:9092", batchSize: 0 } })
  );
  assert.match(message, /kafka\.brokers: .*array.*given "localhost:9092"/);
  assert.match(message, /kafka\.batchSize: .*>=\s*1.*given 0/);
});

Deno.test("parseConfig() rejects unknown keys, which catches typos", () => {
  const message = configError(() =>
    parseConfig({ mqtt: { topic: ["a/#"] }, deadLetter: "x" })
  );
  assert.match(message, /mqtt\.topic: unknown field/);
  assert.match(message, /^ {2}deadLetter: unknown field/m);
});

Deno.test("parseConfig() rejects topic names Kafka would refuse", () => {
  const message = configError(() =>
    parseConfig({ routes: { alert: "bad topic/name" }, defaultTopic: ".." })
  );
  assert.match(message, /routes\.alert: .*Kafka topic name/);
  assert.match(message, /defaultTopic: /);
});

Deno.test("parseConfig() rejects a configuration that is not a mapping", () => {
  assert.throws(() => parseConfig(["a"]), { code: "invalid-config" });
  assert.throws(() => parseConfig("text"), { code: "invalid-config" });
});

Deno.test("loadConfigFile() reads YAML and says which file cannot be read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/bridge.yaml`;
    await Deno.writeTextFile(
      path,
      'mqtt:\n  topics: ["a/#"]\nroutes:\n  alert: dx.alerts\n',
    );
    const config = await loadConfigFile(path);
    assert.deepEqual(config.mqtt.topics, ["a/#"]);
    await assert.rejects(
      () => loadConfigFile(`${dir}/missing.yaml`),
      (error) => {
        assert.ok(isDataExchangeError(error));
        assert.equal(error.code, "config-unreadable");
        assert.match(error.message, /missing\.yaml/);
        assert.ok(error.cause instanceof Error);
        return true;
      },
    );
    await Deno.writeTextFile(path, "mqtt: [unclosed");
    await assert.rejects(() => loadConfigFile(path), {
      code: "config-unreadable",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a YAML syntax error names the place, never the line, which may hold a password", async () => {
  const dir = await Deno.makeTempDir();
  const secret = "LeakMe-Secret-45";
  try {
    const path = `${dir}/bridge.yaml`;
    for (
      const text of [
        `mqtt:\n  url: mqtt://u:${secret}@h:1\n   bad: indent\n`,
        `kafka:\n  sasl:\n    password: [${secret}\n`,
      ]
    ) {
      await Deno.writeTextFile(path, text);
      await assert.rejects(() => loadConfigFile(path), (error) => {
        assert.ok(isDataExchangeError(error));
        assert.equal(error.code, "config-unreadable");
        assert.match(error.message, /line \d+, column \d+/);
        for (
          let e: unknown = error;
          e instanceof Error;
          e = (e as Error).cause
        ) {
          assert.ok(
            !String(e.message).includes(secret),
            `the secret is in: ${e.message}`,
          );
        }
        return true;
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The value at a field path; `undefined` where the path leads nowhere. */
function valueAt(target: unknown, path: string): unknown {
  let node = target;
  for (const key of path.split(".")) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

function setAt(target: Record<string, unknown>, path: string, value: unknown) {
  const keys = path.split(".");
  let node = target;
  for (const key of keys.slice(0, -1)) {
    node[key] ??= {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]] = value;
}

/** A value as it is written in a DX_ variable of the given kind. */
function envText(value: unknown, kind: string | undefined): string {
  return kind === "list"
    ? (value as unknown[]).join(",")
    : kind === "json"
    ? JSON.stringify(value)
    : String(value);
}

/** Fields set with the fields of a prefix, for the rules between fields. */
const COMPANIONS: Record<string, string[]> = {
  "mqtt.tls.": ["mqtt.url", "mqtt.tls.cert", "mqtt.tls.key"],
  "kafka.tls.": ["kafka.tls.enabled", "kafka.tls.cert", "kafka.tls.key"],
};

Deno.test("every field of the schema has a DX_ variable by the one naming rule, and its example set there comes through", () => {
  const outside = CONFIG_FIELDS.filter((field) => !field.path.includes("[]"));
  assert.deepEqual(
    outside.filter((field) => field.env !== envName(field.path))
      .map((field) => field.path),
    [],
    "fields without their DX_ variable",
  );
  assert.deepEqual(
    Object.keys(ENV_FIELDS),
    outside.map((field) => field.path),
  );
  for (const field of outside) {
    // The field, the other fields of its optional section (kafka.sasl needs
    // its mechanism, user and password together), and those a rule between
    // fields asks for (TLS settings need a URL with TLS, or Kafka TLS on; a
    // client certificate needs its key).
    const companions = Object.entries(COMPANIONS)
      .filter(([prefix]) => field.path.startsWith(prefix))
      .flatMap(([, paths]) => paths);
    const together = CONFIG_FIELDS.filter((other) =>
      other === field ||
      (field.section !== undefined && other.section === field.section) ||
      companions.includes(other.path)
    );
    const env = Object.fromEntries(
      together.map((
        other,
      ) => [other.env, envText(other.example, other.envKind)]),
    );
    // The same values written in the file; secrets stay in the environment.
    const file: Record<string, unknown> = {};
    for (const other of together.filter((other) => !other.secret)) {
      setAt(file, other.path, other.example);
    }
    const secrets = Object.fromEntries(
      together.filter((other) => other.secret)
        .map((other) => [other.env, String(other.example)]),
    );
    const fromEnv = valueAt(parseConfig({}, env), field.path);
    assert.deepEqual(
      fromEnv,
      valueAt(parseConfig(file, secrets), field.path),
      `${field.env} and the file differ`,
    );
    if (field.envKind !== "json") {
      assert.deepEqual(fromEnv, field.example, field.env);
    }
  }
  // The schema's own walk, checked against a configuration with every
  // optional section: each leaf is a field, and every type is named.
  const full = parseConfig({
    mqtt: {
      url: "mqtts://broker.example:8883",
      username: "u",
      passwordFile: "/p",
      tls: { ca: "/ca" },
    },
    kafka: { sasl: { mechanism: "plain", username: "u", passwordFile: "/p" } },
    metrics: { port: 9464 },
  }, { DX_MQTT_PASSWORD: "x", DX_KAFKA_SASL_PASSWORD: "y" });
  const leaves: string[] = [];
  const walk = (node: unknown, path: string) => {
    if (
      typeof node === "object" && node !== null && !Array.isArray(node) &&
      path !== "routes"
    ) {
      for (const [key, value] of Object.entries(node)) {
        walk(value, path ? `${path}.${key}` : key);
      }
    } else leaves.push(path);
  };
  walk(full, "");
  assert.deepEqual(leaves.filter((path) => !(path in ENV_FIELDS)), []);
  assert.deepEqual(
    CONFIG_FIELDS.filter((field) => field.type.startsWith("unknown")),
    [],
  );
  assert.deepEqual(SECRET_FIELDS, ["mqtt.password", "kafka.sasl.password"]);
  assert.equal(envName("kafka.clientId"), "DX_KAFKA_CLIENT_ID");
  assert.equal(
    envName("mqtt.tls.rejectUnauthorized"),
    "DX_MQTT_TLS_REJECT_UNAUTHORIZED",
  );
});

Deno.test("every field's example in the schema is valid for that field", () => {
  for (const field of CONFIG_FIELDS) {
    assert.notEqual(field.example, undefined, `${field.path} has no example`);
    assert.deepEqual(field.check(field.example), [], field.path);
    assert.notEqual(field.description, "", `${field.path} has no meaning`);
  }
  assert.deepEqual(
    CONFIG_FIELDS.find((field) => field.path === "mqtt.qos")?.check(2),
    ["0 or 1"],
  );
});

Deno.test("DX_ values are read by their field's kind", () => {
  const config = parseConfig({}, {
    DX_KAFKA_CLIENT_ID: "from-env",
    DX_MQTT_MAX_IN_FLIGHT: "50",
    DX_KAFKA_CREATE_TOPICS: "false",
    DX_MQTT_TOPICS: "a/#, b/#",
    DX_ROUTES: '{"alert":"a.topic"}',
  });
  assert.equal(config.kafka.clientId, "from-env");
  assert.equal(config.mqtt.maxInFlight, 50);
  assert.equal(config.kafka.createTopics, false);
  assert.deepEqual(config.mqtt.topics, ["a/#", "b/#"]);
  assert.deepEqual(config.routes, { alert: "a.topic" });
  const message = configError(() =>
    parseConfig({}, { DX_MQTT_MAX_IN_FLIGHT: "many", DX_ROUTES: "{" })
  );
  assert.match(
    message,
    /mqtt\.maxInFlight: DX_MQTT_MAX_IN_FLIGHT must be an integer; given "many"/,
  );
  assert.match(message, /routes: DX_ROUTES must be JSON/);
});

Deno.test("secrets come only from the environment or a file, and are never shown", () => {
  const message = configError(() =>
    parseConfig({ mqtt: { password: "hunter2-in-file" } })
  );
  assert.match(
    message,
    /mqtt\.password: secrets may not be written in the configuration; set DX_MQTT_PASSWORD or mqtt\.passwordFile/,
  );
  assert.ok(!message.includes("hunter2-in-file"));

  const config = parseConfig({
    kafka: { sasl: { mechanism: "scram-sha-256", username: "svc" } },
  }, {
    DX_MQTT_PASSWORD: "mqtt-secret-1",
    DX_KAFKA_SASL_PASSWORD: "sasl-secret-2",
  });
  assert.equal(config.mqtt.password, "mqtt-secret-1");
  assert.equal(config.kafka.sasl?.password, "sasl-secret-2");
  const shown = JSON.stringify(redactConfig(config));
  assert.ok(
    !shown.includes("mqtt-secret-1") && !shown.includes("sasl-secret-2"),
  );
  assert.equal(redactConfig(config).mqtt.password, "***");
  assert.equal(
    config.mqtt.password,
    "mqtt-secret-1",
    "the original is untouched",
  );

  const invalid = configError(() =>
    parseConfig({}, {
      DX_MQTT_PASSWORD: "",
      DX_KAFKA_SASL_PASSWORD: "no-sasl-section",
    })
  );
  assert.ok(!invalid.includes("no-sasl-section"), invalid);
});

Deno.test("BridgeConfigInput takes nested sections and route entries with only some of their fields", () => {
  // Regression: nested sections did not type-check, because interfaces are
  // not assignable to Record<string, unknown>.
  const input: BridgeConfigInput = {
    mqtt: { topics: ["plant/#"] },
    kafka: { brokers: ["127.0.0.1:9092"], batchSize: 100 },
    routes: { telemetry: "plant.telemetry" },
    kafkaToMqtt: [{ topics: ["plant.commands"], mqttTopic: "plant/commands" }],
  };
  const config = parseConfig(input);
  assert.equal(config.kafkaToMqtt[0].mode, "structured");
  assert.deepEqual(config.mqtt.topics, ["plant/#"]);
  assert.equal(config.kafka.batchSize, 100);
  assert.equal(config.mqtt.maxInFlight, 1000);
});

Deno.test("a secret under a misspelled key is never shown in the config error", () => {
  // Regression: unknown keys were reported with their section's values.
  const secret = `pw-${crypto.randomUUID()}`;
  let message = "";
  try {
    parseConfig({
      mqtt: { username: "bridge", passwd: secret, tls: { keypass: secret } },
      kafka: {
        brokers: ["127.0.0.1:9092"],
        sasl: { mechanism: "plain", username: "u", pasword: secret },
      },
      defaultTopik: secret,
    } as unknown as BridgeConfigInput);
  } catch (error) {
    assert.ok(isDataExchangeError(error));
    message = error.message;
  }
  for (
    const field of [
      "mqtt.passwd",
      "mqtt.tls.keypass",
      "kafka.sasl.pasword",
      "defaultTopik",
    ]
  ) {
    assert.match(message, new RegExp(`${field}: unknown field`));
  }
  assert.ok(!message.includes(secret), message);
});

Deno.test("misspelledVariables() names DX_ typos with the variable meant, and leaves other names alone", () => {
  // Regression: DX_MQTT_URLL was ignored without a word, and the bridge
  // connected to the default address instead.
  assert.deepEqual(
    misspelledVariables({
      DX_MQTT_URLL: "mqtt://127.0.0.1:1884",
      DX_KAFKA_BROKER: "127.0.0.1:9093",
      DX_KAFKA_SASL_PASWORD: "secret",
      DX_MQTT_URL: "mqtt://127.0.0.1:1884",
      DX_CONFIG: "bridge.yaml",
      DX_TEST_MQTT_URL: "mqtt://127.0.0.1:1",
      DX_KAFKA_VERSION: "4.1.1",
      HOME: "/root",
    }),
    [
      { name: "DX_KAFKA_BROKER", closest: "DX_KAFKA_BROKERS" },
      { name: "DX_KAFKA_SASL_PASWORD", closest: "DX_KAFKA_SASL_PASSWORD" },
      { name: "DX_MQTT_URLL", closest: "DX_MQTT_URL" },
    ],
  );
});

Deno.test("parseConfig() reports every problem at once, also with a secret in the file and an unreadable DX_ value", () => {
  // Regression: a secret in the file or an unparsable DX_ value stopped
  // validation before the schema ran, so other problems came out one run at
  // a time.
  const secret = `pw-${crypto.randomUUID()}`;
  const message = configError(() =>
    parseConfig({
      mqtt: { password: secret, qos: 2 },
      kafka: { tls: { bogus: true } },
    } as unknown as BridgeConfigInput, { DX_KAFKA_BATCH_SIZE: "many" })
  );
  const lines = message.split("\n").slice(1);
  assert.equal(lines.length, 4, message);
  assert.match(
    message,
    /^ {2}mqtt\.password: secrets may not be written in the configuration; set DX_MQTT_PASSWORD or mqtt\.passwordFile$/m,
  );
  assert.match(
    message,
    /^ {2}kafka\.batchSize: DX_KAFKA_BATCH_SIZE must be an integer; given "many"$/m,
  );
  assert.match(message, /^ {2}mqtt\.qos: 0 or 1; given 2$/m);
  assert.match(message, /^ {2}kafka\.tls\.bogus: unknown field/m);
  assert.ok(!message.includes(secret), message);
});

Deno.test("parseConfig() reports a field once when its DX_ value or its secret in the file is refused", () => {
  // The file's qos would be replaced by DX_MQTT_QOS, and the refused secret
  // is not "missing": neither gets a second line.
  const message = configError(() =>
    parseConfig({
      mqtt: { qos: 2 },
      kafka: {
        sasl: { mechanism: "plain", username: "u", password: "in-file" },
      },
    }, { DX_MQTT_QOS: "high" })
  );
  assert.deepEqual(message.split("\n").slice(1), [
    "  kafka.sasl.password: secrets may not be written in the configuration; set DX_KAFKA_SASL_PASSWORD or kafka.sasl.passwordFile",
    '  mqtt.qos: DX_MQTT_QOS must be an integer; given "high"',
  ]);
});

Deno.test("the effective configuration has every defaulted field, as --print-config prints it", () => {
  // Regression: --print-config left out mqtt.tls and kafkaToMqtt[].groupId,
  // so it did not show all the settings the bridge ran with.
  const config = parseConfig({
    kafkaToMqtt: [{ topics: ["dx.commands"], mqttTopic: "devices/out" }],
  });
  const shown: unknown = JSON.parse(JSON.stringify(redactConfig(config)));
  for (const field of CONFIG_FIELDS) {
    const given = field.default;
    if (typeof given !== "object" || field.path === "kafkaToMqtt") continue;
    const [list, entryPath] = field.path.split("[].");
    const values = entryPath === undefined
      ? [valueAt(shown, field.path)]
      : (valueAt(shown, list) as unknown[]).map((entry) =>
        valueAt(entry, entryPath)
      );
    for (const value of values) {
      if ("value" in given) assert.deepEqual(value, given.value, field.path);
      else assert.equal(typeof value, "string", field.path);
    }
  }
  assert.deepEqual(config.mqtt.tls, { rejectUnauthorized: true });
  assert.equal(config.kafkaToMqtt[0].groupId, "dx-bridge-to-mqtt-0");
});

Deno.test("parseConfig() names each Kafka to MQTT route's group after kafka.clientId and its index, unless given", () => {
  const route = { topics: ["dx.commands"], mqttTopic: "devices/out" };
  const config = parseConfig({
    kafka: { clientId: "plant-1" },
    kafkaToMqtt: [{ ...route, groupId: "mine" }, route],
  });
  assert.deepEqual(config.kafkaToMqtt.map((entry) => entry.groupId), [
    "mine",
    "plant-1-to-mqtt-1",
  ]);
});

Deno.test("parseConfig() reports the rules between fields together with the schema's problems", () => {
  // Regression: zod skips an object's refinements once one of its fields is
  // invalid, so SASL without a password came out only in a second run, and
  // TLS on a URL without it only from the connections, in a third.
  const message = configError(() =>
    parseConfig({
      mqtt: {
        url: "mqtt://bridge:hunter2@broker.example:1883",
        qos: 2,
        tls: { ca: "/etc/dx/ca.pem" },
      },
      kafka: { sasl: { mechanism: "scram-sha-512", username: "svc" } },
    }, {})
  );
  const [header, ...lines] = message.split("\n");
  assert.equal(header, "The configuration is invalid:");
  assert.deepEqual(lines.map((line) => line.split(":")[0]), [
    "  mqtt.url",
    "  mqtt.qos",
    "  mqtt.url",
    "  kafka.sasl.password",
  ]);
  assert.match(
    lines[2],
    /^ {2}mqtt\.url: a URL with TLS \(mqtts:\/\/ or wss:\/\/\), since mqtt\.tls is set \(ca\): .*; given "mqtt:\/\/bridge:\*\*\*@broker\.example:1883"$/,
  );
  assert.equal(
    lines[3],
    "  kafka.sasl.password: SASL needs a password: set DX_KAFKA_SASL_PASSWORD or kafka.sasl.passwordFile; given nothing",
  );
  assert.ok(!message.includes("hunter2"), message);
});

Deno.test("parseConfig() refuses each rule between fields on one line naming the field, what was given and what is allowed", () => {
  const route = { topics: ["dx.commands"], mqttTopic: "devices/out" };
  const message = configError(() =>
    parseConfig({
      mqtt: {
        protocolVersion: 4,
        reconnectPeriodMs: 5000,
        reconnectMaxDelayMs: 1000,
        tls: { cert: "/etc/dx/client.pem", rejectUnauthorized: false },
      },
      kafka: { tls: { key: "/etc/dx/kafka-client-key.pem" } },
      routes: { alert: "dx.alerts", default: "dx.other" },
      deadLetterTopic: "dx.alerts",
      kafkaToMqtt: [route, { ...route, mode: "binary" }],
    })
  );
  assert.deepEqual(message.split("\n").slice(1), [
    '  routes: keys must be a classification value other than "default", the label of the default route; given the key "default"',
    '  mqtt.url: a URL with TLS (mqtts:// or wss://), since mqtt.tls is set (cert, rejectUnauthorized: false): on this URL it would be ignored and the password sent in clear; or remove mqtt.tls; given "mqtt://127.0.0.1:1883"',
    "  kafka.tls.enabled: true (DX_KAFKA_TLS_ENABLED=true), since kafka.tls is set (key): with TLS off it would be ignored; or remove those files; given nothing (the default is false)",
    "  mqtt.tls.key: a PEM private key file, since mqtt.tls.cert is set: a client certificate needs its key, so set both or neither; given nothing",
    "  kafka.tls.cert: a PEM client certificate file, since kafka.tls.key is set: a client certificate needs its key, so set both or neither; given nothing",
    '  kafkaToMqtt.1.mode: "structured" while mqtt.protocolVersion is 4: binary mode carries the attributes in user properties, which MQTT 3.1.1 does not have; or set mqtt.protocolVersion to 5; given "binary"',
    '  deadLetterTopic: a topic of its own: it is also a route or the default topic, so dead letters would mix with events; given "dx.alerts"',
    "  mqtt.reconnectPeriodMs: at most mqtt.reconnectMaxDelayMs (1000), the largest reconnection wait; or raise mqtt.reconnectMaxDelayMs; given 5000",
  ]);
});

Deno.test("parseConfig() judges no rule between fields by a value that is invalid or that a refused DX_ variable replaces", () => {
  const binary = [{ topics: ["a"], mqttTopic: "x", mode: "binary" }];
  // The file's protocolVersion 4 would be replaced by DX_MQTT_PROTOCOL_VERSION.
  assert.deepEqual(
    configError(() =>
      parseConfig({ mqtt: { protocolVersion: 4 }, kafkaToMqtt: binary }, {
        DX_MQTT_PROTOCOL_VERSION: "five",
      })
    ).split("\n").slice(1),
    [
      '  mqtt.protocolVersion: DX_MQTT_PROTOCOL_VERSION must be an integer; given "five"',
    ],
  );
  // An invalid URL gets its own line, not a second one about TLS.
  const lines = configError(() =>
    parseConfig({ mqtt: { url: "broker:1883", tls: { ca: "/ca.pem" } } })
  ).split("\n").slice(1);
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0], /^ {2}mqtt\.url: a URL such as /);
});

Deno.test("parseConfig() accepts TLS settings with a TLS URL, a certificate with its key, and binary mode on MQTT 5", () => {
  const config = parseConfig({
    mqtt: {
      url: "wss://broker.example:443/mqtt",
      tls: { cert: "/c.pem", key: "/k.pem", rejectUnauthorized: false },
    },
    kafka: {
      tls: { enabled: true, cert: "/c.pem", key: "/k.pem" },
      sasl: { mechanism: "plain", username: "svc" },
    },
    kafkaToMqtt: [{ topics: ["a"], mqttTopic: "x", mode: "binary" }],
  }, { DX_KAFKA_SASL_PASSWORD_FILE: "/run/secrets/p" });
  assert.equal(config.kafkaToMqtt[0].mode, "binary");
  assert.deepEqual(crossFieldProblems(config), []);
  // A configuration written in code is checked again by the connections.
  assert.equal(
    crossFieldProblems({ ...config, mqtt: { ...config.mqtt, url: "ws://b" } })
      .length,
    1,
  );
});

Deno.test("checkConfig() returns the problems and the settings as given, for the checks of the files they name", () => {
  const checked = checkConfig(["not", "a", "mapping"], {
    DX_MQTT_TLS_CA: "/etc/dx/ca.pem",
    DX_MQTT_QOS: "2",
  });
  assert.equal(checked.config, undefined);
  assert.deepEqual(checked.problems, [
    "  (root): a mapping of fields; given a list",
    "  mqtt.qos: 0 or 1; given 2",
    '  mqtt.url: a URL with TLS (mqtts:// or wss://), since mqtt.tls is set (ca): on this URL it would be ignored and the password sent in clear; or remove mqtt.tls; given "mqtt://127.0.0.1:1883"',
  ]);
  assert.deepEqual(checked.given, {
    mqtt: { tls: { ca: "/etc/dx/ca.pem" }, qos: 2 },
  });
  assert.equal(
    invalidConfigError(checked.problems).message,
    `The configuration is invalid:\n${checked.problems.join("\n")}`,
  );
});

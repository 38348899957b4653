import assert from "node:assert/strict";
import { isDataExchangeError } from "../errors.ts";
import {
  type BridgeConfigInput,
  CONFIG_FIELDS,
  ENV_FIELDS,
  envName,
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
    // The field, and the other fields of its optional section (kafka.sasl
    // needs its mechanism, user and password together).
    const together = CONFIG_FIELDS.filter((other) =>
      other === field ||
      (field.section !== undefined && other.section === field.section)
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
    mqtt: { username: "u", passwordFile: "/p", tls: { ca: "/ca" } },
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

import assert from "node:assert/strict";
import { isDataExchangeError } from "../errors.ts";
import {
  type BridgeConfigInput,
  ENV_FIELDS,
  envName,
  loadConfigFile,
  misspelledVariables,
  parseConfig,
  redactConfig,
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

Deno.test("every configuration field can be set from DX_ and its path", () => {
  // Walk the leaves of a configuration with every optional section present.
  const full = parseConfig({
    mqtt: {
      username: "u",
      passwordFile: "/p",
      sharedGroup: "g",
      tls: { ca: "/ca" },
    },
    kafka: { sasl: { mechanism: "plain", username: "u", passwordFile: "/p" } },
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
  const missing = leaves.filter((path) =>
    !(path in ENV_FIELDS) && !path.startsWith("kafkaToMqtt")
  );
  assert.deepEqual(missing, [], "fields without an environment variable");
  assert.equal(envName("kafka.clientId"), "DX_KAFKA_CLIENT_ID");
  assert.equal(
    envName("mqtt.tls.rejectUnauthorized"),
    "DX_MQTT_TLS_REJECT_UNAUTHORIZED",
  );

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

import assert from "node:assert/strict";
import { main, parseArgs } from "./main.ts";

/** Runs `main` and returns its exit code and what it wrote to the console. */
async function run(argv: string[]) {
  const output: string[] = [];
  const { log, error } = console;
  console.log = (...args: unknown[]) => output.push(args.join(" "));
  console.error = console.log;
  try {
    return { code: await main(argv), output: output.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("dx-bridge --help lists every flag and exits 0", async () => {
  const { code, output } = await run(["--help"]);
  assert.equal(code, 0);
  for (
    const flag of ["--config", "--check-config", "--print-config", "--help"]
  ) {
    assert.ok(output.includes(flag), `help mentions ${flag}`);
  }
});

Deno.test("dx-bridge --help states the exit codes and what a second signal does", async () => {
  const { code, output } = await run(["--help"]);
  assert.equal(code, 0);
  assert.match(
    output,
    /0 clean stop, 1 failure at run time, 2 bad configuration/,
  );
  // tests/cli_test.ts checks the behaviour itself against real brokers.
  assert.match(
    output,
    /A second signal, a second or more\s+after the first, exits at once/,
  );
});

Deno.test("dx-bridge exits 2 with one line per problem for a bad config", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/bad.yaml`;
    await Deno.writeTextFile(path, "kafka:\n  brokers: []\n  lingerMs: -1\n");
    const { code, output } = await run(["--config", path]);
    assert.equal(code, 2);
    assert.match(output, /^ {2}kafka\.brokers: .*$/m);
    assert.match(output, /^ {2}kafka\.lingerMs: .*given -1$/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dx-bridge --check-config validates without connecting", async () => {
  const { code, output } = await run(["--check-config"]);
  assert.equal(code, 0);
  assert.equal(output, "configuration ok");
});

Deno.test("dx-bridge rejects unknown arguments with exit 2", async () => {
  const { code, output } = await run(["--verbose"]);
  assert.equal(code, 2);
  assert.match(output, /Unknown argument "--verbose"/);
  assert.deepEqual(parseArgs(["--config=a.yaml"]).config, "a.yaml");
  assert.throws(() => parseArgs(["--config"]), TypeError);
});

/**
 * Runs `main` with only the given DX_ variables set (others are set aside
 * and restored after).
 */
async function runWithEnv(argv: string[], vars: Record<string, string>) {
  const saved = Object.entries(Deno.env.toObject()).filter(([name]) =>
    name.startsWith("DX_")
  );
  for (const [name] of saved) Deno.env.delete(name);
  for (const [name, value] of Object.entries(vars)) Deno.env.set(name, value);
  try {
    return await run(argv);
  } finally {
    for (const name of Object.keys(vars)) Deno.env.delete(name);
    for (const [name, value] of saved) Deno.env.set(name, value);
  }
}

/** The problem lines of a configuration error, after its one header. */
function problemLines(output: string): string[] {
  const lines = output.split("\n");
  assert.equal(
    lines.filter((line) => line === "The configuration is invalid:").length,
    1,
    output,
  );
  return lines.slice(lines.indexOf("The configuration is invalid:") + 1);
}

Deno.test("dx-bridge reports a schema problem, the rules between fields and a missing CA file in one run", async () => {
  // Regression: this file took four runs, one problem each, and the last
  // two came without the header.
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/bridge.yaml`;
    await Deno.writeTextFile(
      path,
      `mqtt:
  url: mqtt://broker.example:1883
  qos: 2
  tls:
    ca: ${dir}/missing-ca.pem
kafka:
  sasl:
    mechanism: scram-sha-512
    username: svc
`,
    );
    for (
      const argv of [["--config", path], ["--check-config", "--config", path]]
    ) {
      const { code, output } = await runWithEnv(argv, {});
      assert.equal(code, 2, output);
      const lines = problemLines(output);
      assert.equal(lines.length, 4, output);
      assert.match(lines[0], /^ {2}mqtt\.qos: 0 or 1; given 2$/);
      assert.match(
        lines[1],
        /^ {2}mqtt\.url: a URL with TLS .*since mqtt\.tls is set \(ca\).*; given "mqtt:\/\/broker\.example:1883"$/,
      );
      assert.match(
        lines[2],
        /^ {2}kafka\.sasl\.password: SASL needs a password: .*; given nothing$/,
      );
      assert.match(
        lines[3],
        /^ {2}mqtt\.tls\.ca: a PEM file of CA certificates; given ".*missing-ca\.pem", which cannot be read: /,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dx-bridge --check-config refuses binary mode on MQTT 3.1.1 with exit 2", async () => {
  // Regression: --check-config said "configuration ok", and the bridge then
  // failed at run time with exit 1.
  const { code, output } = await runWithEnv(["--check-config"], {
    DX_KAFKA_TO_MQTT: '[{"topics":["a"],"mqttTopic":"x","mode":"binary"}]',
    DX_MQTT_PROTOCOL_VERSION: "4",
  });
  assert.equal(code, 2, output);
  assert.doesNotMatch(output, /configuration ok/);
  assert.deepEqual(problemLines(output), [
    '  kafkaToMqtt.0.mode: "structured" while mqtt.protocolVersion is 4: binary mode carries the attributes in user properties, which MQTT 3.1.1 does not have; or set mqtt.protocolVersion to 5; given "binary"',
  ]);
});

Deno.test("dx-bridge names a misspelled DX_ variable before the problems of an invalid configuration", async () => {
  // Regression: the warning was printed only for a valid configuration,
  // though the typo is often why it is invalid.
  for (const argv of [[], ["--check-config"], ["--print-config"]]) {
    const { code, output } = await runWithEnv(argv, {
      DX_MQTT_URLL: "mqtt://127.0.0.1:1884",
      DX_MQTT_QOS: "5",
    });
    assert.equal(code, 2, output);
    const lines = output.split("\n");
    assert.deepEqual(lines, [
      "warning: DX_MQTT_URLL is not a configuration variable and is ignored; did you mean DX_MQTT_URL?",
      "The configuration is invalid:",
      "  mqtt.qos: 0 or 1; given 5",
    ]);
  }
  const valid = await runWithEnv(["--check-config"], {
    DX_MQTT_URLL: "mqtt://127.0.0.1:1884",
  });
  assert.equal(valid.code, 0, valid.output);
  assert.match(valid.output, /^warning: DX_MQTT_URLL .*DX_MQTT_URL\?$/m);
});

Deno.test("dx-bridge names a misspelled DX_CONFIG when the configuration file cannot be read", async () => {
  const { code, output } = await runWithEnv(["--config", "/no/such/dx.yaml"], {
    DX_CONFGI: "bridge.yaml",
  });
  assert.equal(code, 2, output);
  assert.match(output, /^warning: DX_CONFGI .*did you mean DX_CONFIG\?\n/);
  assert.match(
    output,
    /Cannot read the configuration file \/no\/such\/dx\.yaml/,
  );
});

Deno.test("dx-bridge reports every problem of the files it needs together, with the rules between fields", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const notPem = `${dir}/not-pem.crt`;
    const empty = `${dir}/empty-password`;
    const encrypted = `${dir}/encrypted.key`;
    await Deno.writeTextFile(notPem, "not a certificate\n");
    await Deno.writeTextFile(empty, "\n");
    await Deno.writeTextFile(
      encrypted,
      "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    const { code, output } = await runWithEnv(["--check-config"], {
      DX_MQTT_URL: "mqtts://127.0.0.1:8883",
      DX_MQTT_TLS_CA: `${dir}/missing-ca.pem`,
      DX_MQTT_TLS_KEY: encrypted,
      DX_MQTT_USERNAME: "bridge",
      DX_MQTT_PASSWORD_FILE: empty,
      DX_KAFKA_TLS_ENABLED: "true",
      DX_KAFKA_TLS_CA: notPem,
    });
    assert.equal(code, 2, output);
    const lines = problemLines(output);
    assert.equal(lines.length, 5, output);
    // The rules between fields first, then the files in field order.
    assert.match(
      lines[0],
      /^ {2}mqtt\.tls\.cert: a PEM client certificate file, since mqtt\.tls\.key is set: .*; given nothing$/,
    );
    assert.match(
      lines[1],
      /^ {2}mqtt\.passwordFile: a file holding the password; given ".*empty-password", which is empty/,
    );
    assert.match(
      lines[2],
      /^ {2}mqtt\.tls\.ca: a PEM file of CA certificates; given ".*missing-ca\.pem", which cannot be read: /,
    );
    assert.match(
      lines[3],
      /^ {2}mqtt\.tls\.key: a PEM private key, unencrypted, since the bridge has no passphrase setting; given ".*encrypted\.key", an encrypted key/,
    );
    assert.match(
      lines[4],
      /^ {2}kafka\.tls\.ca: a PEM file of CA certificates; given ".*not-pem\.crt", which holds no "-----BEGIN CERTIFICATE-----" line$/,
    );
    assert.doesNotMatch(output, /not a certificate|AAAA/, "no file's text");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

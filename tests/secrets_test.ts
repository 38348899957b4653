import assert from "node:assert/strict";
import {
  createCloudEvent,
  serializeStructured,
} from "../src/cloudevents/mod.ts";
import { spawnCli } from "./_bridge.ts";
import { testBrokers } from "./_brokers.ts";
import { publishAll, uniqueName } from "./_kafka.ts";

const brokers = await testBrokers();
const CLI = new URL("../src/cli/main.ts", import.meta.url).pathname;

Deno.test({
  name: "the bridge never writes a password, at any log level, in any output",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const secret = `pw-${crypto.randomUUID()}`;
    const id = uniqueName("secrets");
    const env = {
      NO_COLOR: "1",
      DX_MQTT_URL: brokers!.mqttUrl,
      DX_KAFKA_BROKERS: brokers!.kafkaBrokers.join(","),
      DX_MQTT_TOPICS: `${id}/#`,
      DX_MQTT_CLIENT_ID: `${id}-bridge`,
      DX_MQTT_USERNAME: "bridge-user",
      DX_MQTT_PASSWORD: secret,
      DX_DEFAULT_TOPIC: `${id}.events`,
      DX_DEAD_LETTER_TOPIC: `${id}.dlq`,
      DX_ROUTES: "{}",
      DX_LOG_LEVEL: "trace",
    };
    const run = (args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-net=127.0.0.1",
          "--allow-env",
          "--allow-read",
          CLI,
          ...args,
        ],
        env,
        stdout: "piped",
        stderr: "piped",
      });

    // --print-config and a configuration error.
    const printed = await run(["--print-config"]).output();
    const printedText = new TextDecoder().decode(printed.stdout);
    assert.match(printedText, /"password": "\*\*\*"/);
    const invalid = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-env", "--allow-read", CLI, "--check-config"],
      env: { ...env, DX_MQTT_QOS: "7" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(invalid.code, 2);

    // A run at trace level that connects, delivers a message and stops.
    const child = run([]).spawn();
    const decoder = new TextDecoder();
    let output = "";
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) output += decoder.decode(chunk);
    };
    const collecting = Promise.all([
      collect(child.stdout),
      collect(child.stderr),
    ]);
    const deadline = Date.now() + 60000;
    while (!output.includes("MQTT subscribed") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(output.includes("MQTT subscribed"), output.slice(-2000));
    const event = createCloudEvent({ source: "/secrets", type: "t", data: 1 });
    await publishAll(brokers!.mqttUrl, [{
      topic: `${id}/d`,
      payload: serializeStructured(event),
    }]);
    while (!output.includes(`Delivered`) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
    await collecting;

    for (
      const [what, text] of [
        ["--print-config", printedText],
        [
          "config error",
          decoder.decode(invalid.stdout) + decoder.decode(invalid.stderr),
        ],
        ["trace-level run", output],
      ]
    ) {
      assert.ok(!text.includes(secret), `${what} shows the password`);
    }
    assert.ok(output.includes("Delivered"), "the run delivered a message");
  },
});

/**
 * Runs the CLI once with only the given DX_ variables; returns its exit code
 * and output. A run that has not ended after `timeoutMs` is killed and gets
 * code -1, so a bridge that retries instead of failing fails the test.
 */
async function runCli(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<{ code: number; output: string }> {
  const child = spawnCli(args, env);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  try {
    const result = await child.output();
    const decoder = new TextDecoder();
    const output = decoder.decode(result.stdout) +
      decoder.decode(result.stderr);
    return timedOut
      ? { code: -1, output: `(killed after ${timeoutMs} ms)\n${output}` }
      : { code: result.code, output };
  } finally {
    clearTimeout(timer);
  }
}

/** Fails when any secret, or any 8-character piece of one, is in `text`. */
function assertHidden(
  what: string,
  text: string,
  secrets: readonly string[],
): void {
  for (const secret of secrets) {
    for (let at = 0; at + 8 <= secret.length; at += 4) {
      assert.ok(
        !text.includes(secret.slice(at, at + 8)),
        `${what} shows a piece of a secret:\n${text}`,
      );
    }
  }
}

/** Files for one test: a fake PEM key with a recognisable body, a certificate. */
async function tlsFiles(): Promise<
  { dir: string; key: string; cert: string; keyBody: string } & AsyncDisposable
> {
  const dir = await Deno.makeTempDir({ prefix: "dx-secrets-" });
  const keyBody = btoa(crypto.randomUUID() + crypto.randomUUID());
  const key = `${dir}/client.key`;
  const cert = `${dir}/client.crt`;
  await Deno.writeTextFile(
    key,
    `-----BEGIN PRIVATE KEY-----\n${keyBody}\n-----END PRIVATE KEY-----\n`,
  );
  await Deno.writeTextFile(
    cert,
    `-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`,
  );
  return {
    dir,
    key,
    cert,
    keyBody,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

Deno.test("--print-config and --check-config hide passwords, URL credentials and keys", async () => {
  await using files = await tlsFiles();
  const mqttSecret = `mqtt-${crypto.randomUUID()}`;
  const urlSecret = `url-${crypto.randomUUID()}`;
  const saslSecret = `sasl-${crypto.randomUUID()}`;
  const env = {
    DX_MQTT_URL: `mqtts://bridge:${urlSecret}@127.0.0.1:8883`,
    DX_MQTT_PASSWORD: mqttSecret,
    DX_MQTT_TLS_CA: files.cert,
    DX_MQTT_TLS_CERT: files.cert,
    DX_MQTT_TLS_KEY: files.key,
    DX_KAFKA_TLS_ENABLED: "true",
    DX_KAFKA_TLS_CERT: files.cert,
    DX_KAFKA_TLS_KEY: files.key,
    DX_KAFKA_SASL_MECHANISM: "scram-sha-512",
    DX_KAFKA_SASL_USERNAME: "svc",
    DX_KAFKA_SASL_PASSWORD: saslSecret,
    DX_LOG_LEVEL: "trace",
  };
  const secrets = [mqttSecret, urlSecret, saslSecret, files.keyBody];

  const printed = await runCli(["--print-config"], env);
  assert.equal(printed.code, 0, printed.output);
  assertHidden("--print-config", printed.output, secrets);
  const shown = JSON.parse(printed.output);
  assert.equal(shown.mqtt.url, "mqtts://bridge:***@127.0.0.1:8883");
  assert.equal(shown.mqtt.password, "***");
  assert.equal(shown.kafka.sasl.password, "***");
  assert.equal(shown.mqtt.tls.key, files.key, "the key's path, not its text");

  const checked = await runCli(["--check-config"], env);
  assert.equal(checked.code, 0, checked.output);
  assertHidden("--check-config", checked.output, secrets);
});

Deno.test("configuration errors never show a password, not even inside a URL", async () => {
  const secret = `s${crypto.randomUUID().replaceAll("-", "")}`;
  const long = secret.repeat(4);
  const dir = await Deno.makeTempDir({ prefix: "dx-secrets-" });
  try {
    const withPasswordInFile = `${dir}/url.yaml`;
    await Deno.writeTextFile(
      withPasswordInFile,
      `mqtt:\n  url: mqtt://bridge:${secret}@127.0.0.1:1883\n`,
    );
    const saslWithoutPassword = `${dir}/sasl.yaml`;
    await Deno.writeTextFile(
      saslWithoutPassword,
      "kafka:\n  sasl:\n    mechanism: scram-sha-256\n    username: svc\n",
    );
    const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
      [
        "a URL of the wrong scheme",
        ["--check-config"],
        { DX_MQTT_URL: `http://bridge:${secret}@127.0.0.1:1883` },
        /mqtt\.url: .*given "http:\/\/bridge:\*\*\*@127\.0\.0\.1:1883"/,
      ],
      [
        "a long password, where the value shown is shortened",
        ["--check-config"],
        { DX_MQTT_URL: `ftp://bridge:${long}@127.0.0.1:1883` },
        /mqtt\.url: .*given "ftp:\/\/bridge:\*\*\*@127\.0\.0\.1:1883"/,
      ],
      [
        "a password in the file's URL",
        ["--check-config", "--config", withPasswordInFile],
        {},
        /mqtt\.url: secrets may not be written in the configuration, and this URL holds a password; set mqtt\.username and DX_MQTT_PASSWORD/,
      ],
      [
        "SASL without a password",
        ["--check-config", "--config", saslWithoutPassword],
        { DX_MQTT_PASSWORD: secret },
        /kafka\.sasl\.password: SASL needs a password: set DX_KAFKA_SASL_PASSWORD or kafka\.sasl\.passwordFile/,
      ],
      [
        "a SASL password beside a bad mechanism",
        ["--check-config"],
        {
          DX_KAFKA_SASL_MECHANISM: "md5",
          DX_KAFKA_SASL_USERNAME: "svc",
          DX_KAFKA_SASL_PASSWORD: secret,
        },
        /kafka\.sasl\.mechanism/,
      ],
    ];
    for (const [what, args, env, expected] of cases) {
      const { code, output } = await runCli(args, env);
      assert.equal(code, 2, `${what}: exit code 2\n${output}`);
      assert.match(output, expected, what);
      assertHidden(what, output, [long]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file and TLS errors are configuration errors (exit 2, also for --check-config) that name the setting and the file, never a secret or a key", async () => {
  await using files = await tlsFiles();
  const secret = `s${crypto.randomUUID().replaceAll("-", "")}`;
  const notAKey = `${files.dir}/not-a-key.pem`;
  await Deno.writeTextFile(notAKey, `password=${secret}\n`);
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    [
      "TLS files for a URL without TLS",
      {
        DX_MQTT_URL: `mqtt://bridge:${secret}@127.0.0.1:1883`,
        DX_MQTT_TLS_CA: files.cert,
      },
      /^ {2}mqtt\.url: a URL with TLS .*; given "mqtt:\/\/bridge:\*\*\*@127\.0\.0\.1:1883"$/m,
    ],
    [
      "a key file that holds no key",
      {
        DX_MQTT_URL: "mqtts://127.0.0.1:8883",
        DX_MQTT_TLS_CERT: files.cert,
        DX_MQTT_TLS_KEY: notAKey,
      },
      /^ {2}mqtt\.tls\.key: a PEM private key, unencrypted; given ".*not-a-key\.pem", which holds no "-----BEGIN \.\.\. PRIVATE KEY-----" line$/m,
    ],
    [
      "Kafka TLS files with TLS off",
      { DX_KAFKA_TLS_KEY: files.key, DX_KAFKA_TLS_CERT: files.cert },
      /^ {2}kafka\.tls\.enabled: true .*since kafka\.tls is set \(cert, key\).*; given nothing \(the default is false\)$/m,
    ],
    [
      "a client certificate without its key",
      { DX_KAFKA_TLS_ENABLED: "true", DX_KAFKA_TLS_CERT: files.cert },
      /^ {2}kafka\.tls\.key: a PEM private key file, since kafka\.tls\.cert is set: .*; given nothing$/m,
    ],
    [
      "a password file that is missing",
      {
        DX_MQTT_USERNAME: "bridge",
        DX_MQTT_PASSWORD_FILE: `${files.dir}/missing`,
      },
      /^ {2}mqtt\.passwordFile: a file holding the password; given ".*missing", which cannot be read: /m,
    ],
  ];
  for (const [what, env, expected] of cases) {
    // Unreachable brokers: every case fails before it connects.
    const { code, output } = await runCli([], {
      DX_KAFKA_BROKERS: "127.0.0.1:1",
      DX_LOG_LEVEL: "trace",
      ...env,
    });
    // A configuration error: exit 2 before anything connects, also from
    // --check-config (regression: it said "configuration ok").
    assert.equal(code, 2, `${what}: exit code 2\n${output}`);
    assert.match(output, expected, what);
    assert.match(output, /^The configuration is invalid:$/m, what);
    assertHidden(what, output, [secret, files.keyBody]);
    const checked = await runCli(["--check-config"], {
      DX_KAFKA_BROKERS: "127.0.0.1:1",
      ...env,
    });
    assert.equal(
      checked.code,
      2,
      `${what}: --check-config exit code 2\n${checked.output}`,
    );
    assert.doesNotMatch(checked.output, /configuration ok/, what);
    assert.match(checked.output, expected, `${what} (--check-config)`);
    assertHidden(`${what} (--check-config)`, checked.output, [
      secret,
      files.keyBody,
    ]);
  }
});

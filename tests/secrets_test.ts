import assert from "node:assert/strict";
import {
  createCloudEvent,
  serializeStructured,
} from "../src/cloudevents/mod.ts";
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

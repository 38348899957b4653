import assert from "node:assert/strict";
import {
  createCloudEvent,
  serializeStructured,
} from "../src/cloudevents/mod.ts";
import { waitFor } from "./_bridge.ts";
import { testBrokers } from "./_brokers.ts";
import {
  createTopics,
  header,
  publishAll,
  readTopics,
  uniqueName,
} from "./_kafka.ts";
import { prepareSession } from "./_mqtt.ts";
import { bridgeEnv, type CommandResult, runCommand } from "./_process.ts";

const REPO_ROOT = new URL("../", import.meta.url).pathname;
const BINARY = `${REPO_ROOT}dist/dx-bridge`;

/**
 * `deno compile` builds on `denort`, a runtime it downloads once per Deno
 * version from Deno's own servers, not from a package registry. The test
 * runs when that runtime is at hand: named by `DENORT_BIN`, already in the
 * Deno cache, or allowed to be downloaded (`DX_COMPILE_DOWNLOAD=1`, as the
 * GitHub workflow sets).
 */
async function denortAvailable(): Promise<string | undefined> {
  const bin = Deno.env.get("DENORT_BIN");
  if (bin) return `DENORT_BIN (${bin})`;
  if (Deno.env.get("DX_COMPILE_DOWNLOAD") === "1") return "a download";
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdout: "piped",
    stderr: "null",
  }).output();
  const { denoDir } = JSON.parse(new TextDecoder().decode(output.stdout));
  const zip =
    `${denoDir}/dl/release/v${Deno.version.deno}/denort-${Deno.build.target}.zip`;
  try {
    await Deno.stat(zip);
    return zip;
  } catch {
    return undefined;
  }
}

const runtime = await denortAvailable();
if (runtime === undefined) {
  console.error(
    "[tests] dx-bridge compile test skipped: deno compile needs the denort runtime, " +
      "which is not in the Deno cache; set DX_COMPILE_DOWNLOAD=1 to let deno compile download it, " +
      "or DENORT_BIN to its path",
  );
}
const brokers = runtime === undefined ? undefined : await testBrokers();

Deno.test({
  name:
    "deno task compile builds dx-bridge, which shows its help and carries one event from MQTT to Kafka",
  ignore: runtime === undefined || brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const build = await run(Deno.execPath(), ["task", "compile"]);
    assert.equal(build.code, 0, build.stderr);
    const help = await run(BINARY, ["--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(
      help.stdout,
      /^dx-bridge: moves CloudEvents from MQTT to Kafka/,
    );

    // The event waits in the bridge's session until the bridge connects.
    const clientId = uniqueName("compiled-bridge");
    const mqttTopic = `devices/${uniqueName("compiled")}`;
    const kafkaTopic = uniqueName("compiled-telemetry");
    await prepareSession(brokers!.mqttUrl, clientId, mqttTopic);
    await createTopics(brokers!.kafkaBrokers, [kafkaTopic]);
    const event = createCloudEvent({
      source: "/compile-test",
      type: "dev.dataexchange.reading",
      classification: "telemetry",
      data: { t: 21.5 },
    });
    await publishAll(brokers!.mqttUrl, [{
      topic: mqttTopic,
      payload: serializeStructured(event),
    }]);

    const bridge = new Deno.Command(BINARY, {
      env: {
        NO_COLOR: "1",
        ...bridgeEnv({
          mqttUrl: brokers!.mqttUrl,
          kafkaBrokers: brokers!.kafkaBrokers,
          clientId,
          mqttTopic,
          kafkaTopic,
        }),
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdout = new Response(bridge.stdout).text();
    const stderr = new Response(bridge.stderr).text();
    let exited = false;
    bridge.status.then(() => exited = true);
    try {
      const records = await readTopics(brokers!.kafkaBrokers, [kafkaTopic], {
        until: (read) =>
          read.some((record) => header(record.message, "ce_id") === event.id),
        timeoutMs: 60_000,
      });
      assert.equal(records.length, 1);
    } finally {
      if (!exited) bridge.kill("SIGTERM");
    }
    await waitFor("dx-bridge to exit after SIGTERM", () => exited, 30_000)
      .catch((error) => {
        bridge.kill("SIGKILL");
        throw error;
      });
    const status = await bridge.status;
    assert.equal(status.code, 0, `${await stdout}\n${await stderr}`);
    assert.match(await stdout, /Bridge stopped/);
  },
});

/** Runs a command from the repository root and collects its output. */
function run(command: string, args: string[]): Promise<CommandResult> {
  return runCommand(command, { args, cwd: REPO_ROOT });
}

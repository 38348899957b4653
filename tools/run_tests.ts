/**
 * `deno task test [deno test args...]`: starts one Mosquitto and one Kafka
 * for the whole run, runs `deno test` against them, stops them, and exits
 * with `deno test`'s exit code.
 *
 * The brokers reach the tests as env `DX_TEST_MQTT_URL` and
 * `DX_TEST_KAFKA_BROKERS` (see tests/_brokers.ts). When both are already set,
 * no broker is started. When a tool is missing, the reason (what is missing
 * and how to install it) is printed on one line, the only one of the run,
 * and the tests still run (those needing brokers skip quietly), unless env
 * `DX_REQUIRE_BROKERS=1`, which makes that exit code 1. Arguments are passed
 * to `deno test`, such as a file filter: `deno task test tests/brokers_test.ts`.
 *
 * @module
 */

import {
  type Brokers,
  describeErrorChain,
  isBrokerUnavailableError,
  startBrokers,
} from "./brokers/mod.ts";
import { reportBrokersUnavailable } from "../tests/_brokers.ts";

const SIGNALS = ["SIGINT", "SIGTERM"] as const;
const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;

/**
 * The permissions of the test run: loopback only, and writes only to the
 * temporary directory (brokers' data) and .cache (Kafka jars).
 */
function testPermissions(): string[] {
  const repoRoot = decodeURIComponent(new URL("../", import.meta.url).pathname)
    .replace(/\/$/, "");
  const tempDir = Deno.env.get("TMPDIR") || "/tmp";
  return [
    "--allow-net=127.0.0.1,localhost",
    "--allow-env",
    "--allow-read",
    `--allow-write=${tempDir},${repoRoot}/.cache`,
    "--allow-run",
  ];
}

/**
 * Runs the tests.
 *
 * @param args Arguments for `deno test`.
 * @returns The exit code.
 */
async function main(args: string[]): Promise<number> {
  const interrupted = new AbortController();
  let received: (typeof SIGNALS)[number] | undefined;
  let child: Deno.ChildProcess | undefined;
  const listeners = SIGNALS.map((name) => {
    const listener = () => {
      received ??= name;
      interrupted.abort(new Error(`${name} received`));
      // `deno test` gets SIGINT from the terminal itself; SIGTERM is passed on.
      if (child && name === "SIGTERM") child.kill("SIGTERM");
    };
    Deno.addSignalListener(name, listener);
    return { name, listener };
  });

  let brokers: Brokers | undefined;
  try {
    const env: Record<string, string> = {};
    if (
      !Deno.env.get("DX_TEST_MQTT_URL") ||
      !Deno.env.get("DX_TEST_KAFKA_BROKERS")
    ) {
      try {
        brokers = await startBrokers({ signal: interrupted.signal });
        env.DX_TEST_MQTT_URL = brokers.mqttUrl;
        env.DX_TEST_KAFKA_BROKERS = brokers.kafkaBrokers.join(",");
        console.error(
          `[test] Mosquitto at ${brokers.mqttUrl} (${brokers.mosquitto.startupMs} ms), ` +
            `Kafka ${brokers.kafka.version} at ${env.DX_TEST_KAFKA_BROKERS} (${brokers.kafka.startupMs} ms)`,
        );
      } catch (error) {
        if (received) return SIGNAL_EXIT_CODES[received];
        if (!isBrokerUnavailableError(error)) throw error;
        if (Deno.env.get("DX_REQUIRE_BROKERS") === "1") {
          const line = error.message.split("\n")[0];
          console.error(
            `[test] brokers required (DX_REQUIRE_BROKERS=1) but unavailable: ${line}`,
          );
          return 1;
        }
        // Prints the line and sets the env that `deno test` inherits, so
        // that the test files skip without printing it again.
        reportBrokersUnavailable(error.message);
      }
    }

    child = new Deno.Command(Deno.execPath(), {
      args: ["test", ...testPermissions(), ...args],
      env,
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const status = await child.status;
    if (received && status.success) return SIGNAL_EXIT_CODES[received];
    return status.code;
  } finally {
    await brokers?.stop();
    for (const { name, listener } of listeners) {
      Deno.removeSignalListener(name, listener);
    }
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    console.error(`[test] ${describeErrorChain(error)}`);
    Deno.exit(1);
  }
}

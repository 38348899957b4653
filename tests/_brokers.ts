/**
 * The real brokers that integration tests run against.
 *
 * `deno task test` starts one Mosquitto and one Kafka for the whole run and
 * passes them in env `DX_TEST_MQTT_URL` and `DX_TEST_KAFKA_BROKERS`
 * (comma-separated); {@linkcode testBrokers} then only reads them. Run
 * without those (plain `deno test`), it starts the brokers itself, once per
 * process, and kills them and deletes their data when the process ends.
 *
 * When a tool is missing (`mosquitto`, `java`, `mvn`), one line on stderr says
 * what and how to install it, and {@linkcode testBrokers} returns
 * `undefined`, so the tests skip; with env `DX_REQUIRE_BROKERS=1` it throws
 * instead. A broker that is installed but fails to start always throws: that
 * is a bug to see, not a reason to skip.
 *
 * The line is printed once per run, not once per test file: by
 * tools/run_tests.ts when it could not start the brokers, else by the first
 * test file that finds them missing. Either sets env
 * {@linkcode BROKERS_UNAVAILABLE_ENV} to the reason, which tells every later
 * test file of the run (they share the process's environment) to skip
 * quietly, without trying to start the brokers again.
 *
 * @example A test file
 * ```ts ignore
 * import { testBrokers } from "./_brokers.ts";
 *
 * const brokers = await testBrokers();
 * Deno.test({
 *   name: "the bridge forwards one message",
 *   ignore: !brokers,
 *   fn: async () => {
 *     // connect to brokers!.mqttUrl and brokers!.kafkaBrokers
 *   },
 * });
 * ```
 *
 * @module
 */

import {
  type Brokers,
  isBrokerUnavailableError,
  startBrokers,
} from "../tools/brokers/mod.ts";

/** Where the tests find the brokers. */
export interface TestBrokers {
  /** `mqtt://127.0.0.1:<port>`. */
  readonly mqttUrl: string;
  /** Bootstrap list, such as `["127.0.0.1:9092"]`. */
  readonly kafkaBrokers: string[];
  /**
   * The broker handles, only when this process started the brokers itself
   * (no `DX_TEST_*` env); `undefined` under `deno task test`. They are shared
   * by every test in the process, so a test that kills or restarts a broker
   * should take its own from {@linkcode isolatedTestBrokers} instead.
   */
  readonly started?: Brokers;
}

/**
 * The env variable that holds, once reported, why the brokers cannot run
 * here; set by {@linkcode reportBrokersUnavailable}.
 */
export const BROKERS_UNAVAILABLE_ENV = "DX_TEST_BROKERS_UNAVAILABLE";

let shared: Promise<TestBrokers | undefined> | undefined;
const toStopOnUnload = new Set<Brokers>();
let unloadRegistered = false;

/**
 * Prints the one line of a run that says the broker tests skip and why
 * (what is missing and how to install it), unless it was printed already in
 * this run, and records the reason in env {@linkcode BROKERS_UNAVAILABLE_ENV}
 * for the test files that follow.
 *
 * @param reason The message of the `BrokerUnavailableError`; only its first
 *   line is printed.
 *
 * @example
 * ```ts ignore
 * import { reportBrokersUnavailable } from "./_brokers.ts";
 *
 * reportBrokersUnavailable("Java (`java`) is not installed; ...");
 * // [test] broker tests skipped: Java (`java`) is not installed; ...
 * ```
 */
export function reportBrokersUnavailable(reason: string): void {
  if (Deno.env.get(BROKERS_UNAVAILABLE_ENV)) return;
  const line = reason.split("\n")[0];
  console.error(
    `[test] broker tests skipped: ${line} (DX_REQUIRE_BROKERS=1 makes this a failure)`,
  );
  Deno.env.set(BROKERS_UNAVAILABLE_ENV, line);
}

/**
 * The brokers for this test process: from `DX_TEST_MQTT_URL` and
 * `DX_TEST_KAFKA_BROKERS` when both are set, else started once (memoized)
 * and stopped when the process exits.
 *
 * @returns The brokers, or `undefined` when they cannot run here (the reason
 * is printed once per run on stderr).
 * @throws {Error} When only one of the two `DX_TEST_*` variables is set.
 * @throws {BrokerUnavailableError} When a tool is missing and env
 * `DX_REQUIRE_BROKERS` is `1`.
 * @throws {BrokerStartError} When a broker is installed but does not start.
 */
export function testBrokers(): Promise<TestBrokers | undefined> {
  shared ??= resolveShared();
  return shared;
}

/**
 * Starts a Mosquitto and a Kafka that belong to the caller alone, for tests
 * that kill, restart or otherwise disturb a broker. The caller stops them
 * (`await using`); should it not, they are killed when the process exits.
 * Takes a few seconds, mostly Kafka's start.
 *
 * @returns Fresh brokers, or `undefined` when they cannot run here.
 * @throws {BrokerUnavailableError} When a tool is missing and env
 * `DX_REQUIRE_BROKERS` is `1`.
 * @throws {BrokerStartError} When a broker is installed but does not start.
 *
 * @example Restart Kafka under a client
 * ```ts ignore
 * import { isolatedTestBrokers } from "./_brokers.ts";
 *
 * await using brokers = await isolatedTestBrokers();
 * await brokers?.kafka.kill();
 * await brokers?.kafka.restart();
 * ```
 */
export async function isolatedTestBrokers(): Promise<Brokers | undefined> {
  // Reported already in this run: skip quietly.
  if (Deno.env.get(BROKERS_UNAVAILABLE_ENV)) return undefined;
  try {
    const brokers = await startBrokers();
    stopOnUnload(brokers);
    return brokers;
  } catch (error) {
    if (!isBrokerUnavailableError(error)) throw error;
    if (Deno.env.get("DX_REQUIRE_BROKERS") === "1") throw error;
    reportBrokersUnavailable(error.message);
    return undefined;
  }
}

async function resolveShared(): Promise<TestBrokers | undefined> {
  const mqttUrl = Deno.env.get("DX_TEST_MQTT_URL");
  const kafkaList = Deno.env.get("DX_TEST_KAFKA_BROKERS");
  if (mqttUrl && kafkaList) {
    return {
      mqttUrl,
      kafkaBrokers: kafkaList.split(",").map((broker) => broker.trim())
        .filter((broker) => broker !== ""),
    };
  }
  if (mqttUrl || kafkaList) {
    throw new Error(
      `Set both DX_TEST_MQTT_URL and DX_TEST_KAFKA_BROKERS or neither; got only ${
        mqttUrl ? "DX_TEST_MQTT_URL" : "DX_TEST_KAFKA_BROKERS"
      }`,
    );
  }

  const started = await isolatedTestBrokers();
  if (!started) return undefined;
  return {
    mqttUrl: started.mqttUrl,
    kafkaBrokers: started.kafkaBrokers,
    started,
  };
}

function stopOnUnload(brokers: Brokers): void {
  toStopOnUnload.add(brokers);
  if (unloadRegistered) return;
  unloadRegistered = true;
  // Nothing async runs during unload: kill synchronously, delete the data.
  globalThis.addEventListener("unload", () => {
    for (const each of toStopOnUnload) each.stopSync();
  });
}

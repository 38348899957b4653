/**
 * `deno task brokers`: starts a private Mosquitto and Kafka on 127.0.0.1 and
 * keeps them running in the foreground until SIGINT or SIGTERM.
 *
 * Contract for scripts: once both accept connections, stdout gets exactly two
 * lines, `MQTT_URL=mqtt://127.0.0.1:<port>` and
 * `KAFKA_BROKERS=127.0.0.1:<port>`; everything else goes to stderr, including
 * one line `BROKERS_STARTED {json}` with the pid, port, data directory and
 * log of each broker. On SIGINT or SIGTERM both are stopped, their data is
 * deleted, and the exit code is 0. Exit code 1 means a broker could not start
 * (a missing tool is named on stderr) or exited by itself; 2 a usage error;
 * 130 or 143 a signal before the brokers were ready.
 *
 * @module
 */

import { readTail } from "./_process.ts";
import {
  type Brokers,
  describeErrorChain,
  isBrokerUnavailableError,
  kafkaVersion,
  startBrokers,
} from "./mod.ts";

const USAGE = `Usage: deno task brokers [--help]

Starts a private Mosquitto and a single-node Kafka (KRaft) on 127.0.0.1 and
keeps them running until Ctrl-C or SIGTERM, then stops both and deletes
their data.

stdout, once both are ready (nothing else goes to stdout):
  MQTT_URL=mqtt://127.0.0.1:<port>
  KAFKA_BROKERS=127.0.0.1:<port>

Environment:
  MQTT_PORT          Mosquitto's port (default: a free port)
  KAFKA_PORT         Kafka's port (default: a free port)
  DX_KAFKA_VERSION   Kafka release to run (default: ${kafkaVersion()})
  DX_MOSQUITTO       path of the mosquitto program
  JAVA_HOME          Java installation to run Kafka with

Needs mosquitto, java and (once per Kafka version) mvn:
  apt-get install mosquitto openjdk-17-jre-headless maven

Exit codes: 0 stopped by a signal, 1 could not start or a broker died,
2 usage error, 130/143 interrupted before the brokers were ready.`;

const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
type StopSignal = keyof typeof SIGNAL_EXIT_CODES;

/**
 * Runs the CLI.
 *
 * @param args The command-line arguments.
 * @returns The exit code.
 */
async function main(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  if (args.length > 0) {
    console.error(`dx-brokers: unknown argument ${args[0]}\n\n${USAGE}`);
    return 2;
  }
  let mqttPort: number | undefined;
  let kafkaPort: number | undefined;
  try {
    mqttPort = portFromEnv("MQTT_PORT");
    kafkaPort = portFromEnv("KAFKA_PORT");
  } catch (error) {
    console.error(`dx-brokers: ${(error as Error).message}`);
    return 2;
  }

  const interrupted = new AbortController();
  const firstSignal = Promise.withResolvers<StopSignal>();
  let brokers: Brokers | undefined;
  let firstAt = 0;
  // SIGHUP too: closing the terminal must not leave the brokers running.
  const listeners = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((name) => {
    const listener = () => {
      // One Ctrl-C arrives twice (from the terminal and from `deno task`).
      if (interrupted.signal.aborted && Date.now() - firstAt < 1000) return;
      if (interrupted.signal.aborted) {
        console.error(`dx-brokers: ${name} again, killing the brokers now`);
        brokers?.stopSync();
        Deno.exit(SIGNAL_EXIT_CODES[name]);
      }
      firstAt = Date.now();
      interrupted.abort(new Error(`${name} received`));
      firstSignal.resolve(name);
    };
    Deno.addSignalListener(name, listener);
    return { name, listener };
  });

  try {
    try {
      brokers = await startBrokers({
        mqttPort,
        kafkaPort,
        signal: interrupted.signal,
      });
    } catch (error) {
      if (interrupted.signal.aborted) {
        const name = await firstSignal.promise;
        console.error(`dx-brokers: ${name} before the brokers were ready`);
        return SIGNAL_EXIT_CODES[name];
      }
      console.error(
        isBrokerUnavailableError(error)
          ? `dx-brokers: ${error.message}`
          : `dx-brokers: ${describeErrorChain(error)}`,
      );
      return 1;
    }
    return await serve(brokers, firstSignal.promise);
  } finally {
    for (const { name, listener } of listeners) {
      Deno.removeSignalListener(name, listener);
    }
  }
}

async function serve(
  brokers: Brokers,
  firstSignal: Promise<StopSignal>,
): Promise<number> {
  const { mosquitto, kafka } = brokers;
  try {
    console.error(
      `BROKERS_STARTED ${
        JSON.stringify({
          mosquitto: {
            pid: mosquitto.pid,
            port: mosquitto.port,
            dataDir: mosquitto.dataDir,
            logPath: mosquitto.logPath,
          },
          kafka: {
            pid: kafka.pid,
            port: kafka.port,
            controllerPort: kafka.controllerPort,
            version: kafka.version,
            dataDir: kafka.dataDir,
            logPath: kafka.logPath,
          },
        })
      }`,
    );
    console.log(`MQTT_URL=${brokers.mqttUrl}`);
    console.log(`KAFKA_BROKERS=${brokers.kafkaBrokers.join(",")}`);
    console.error(
      `dx-brokers: Mosquitto ready in ${mosquitto.startupMs} ms, ` +
        `Kafka ${kafka.version} ready in ${kafka.startupMs} ms ` +
        `(logs: ${mosquitto.logPath}, ${kafka.logPath}). ` +
        `Ctrl-C or SIGTERM stops both and deletes their data.`,
    );

    const outcome = await Promise.race([
      firstSignal.then((name) => ({ name })),
      mosquitto.exited().then((status) => ({ died: mosquitto, status })),
      kafka.exited().then((status) => ({ died: kafka, status })),
    ]);
    if ("name" in outcome) {
      console.error(`dx-brokers: ${outcome.name}, stopping both brokers`);
      return 0;
    }
    console.error(
      `dx-brokers: ${outcome.died.label} exited by itself with code ${outcome.status.code}; ` +
        `stopping the other. The end of ${outcome.died.logPath} says:\n${await readTail(
          outcome.died.logPath,
        )}`,
    );
    return 1;
  } finally {
    await brokers.stop();
    console.error("dx-brokers: stopped; data deleted");
  }
}

function portFromEnv(name: string): number | undefined {
  const text = Deno.env.get(name);
  if (text === undefined || text === "") return undefined;
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new RangeError(
      `${name} must be a port number from 1 to 65535, got ${
        JSON.stringify(text)
      }; unset it to use a free port`,
    );
  }
  return port;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}

/**
 * `dx-bridge`: the command that runs the MQTT → Kafka bridge.
 *
 * Exit codes: 0 after a clean stop, 2 for a bad configuration or bad
 * arguments, 1 for a failure at run time.
 *
 * @module
 */
import {
  configure,
  getAnsiColorFormatter,
  getLogger,
  jsonLinesFormatter,
  type LogRecord,
} from "@logtape/logtape";
import { runBridge } from "../bridge/bridge.ts";
import {
  type BridgeConfig,
  checkConfig,
  type ConfigCheck,
  invalidConfigError,
  type MisspelledVariable,
  misspelledVariables,
  readConfigFile,
  redactConfig,
} from "../bridge/config.ts";
import { redactUrl } from "../mqtt/stream.ts";
import { connectionProblems } from "../bridge/_connections.ts";
import { isDataExchangeError } from "../errors.ts";
import { BridgeMetrics } from "../metrics/metrics.ts";
import { type HealthServer, serveHealth } from "../metrics/server.ts";

const HELP = `dx-bridge: moves CloudEvents from MQTT to Kafka, at least once.

Usage: deno task bridge [options]
       dx-bridge [options]          (the executable of \`deno task compile\`)

Options:
  --config FILE    YAML or JSON configuration file (or set DX_CONFIG).
                   Without one, the defaults are used: local brokers on
                   their standard ports (mqtt://127.0.0.1:1883, 127.0.0.1:9092).
  --check-config   Validate the configuration, print "configuration ok", exit.
  --print-config   Print the effective configuration as JSON, exit.
  -h, --help       Show this help.

Environment:
  DX_CONFIG         Configuration file, when --config is not given.
  DX_<PATH>         Sets any configuration field, and wins over the file:
                    DX_ and the field's path in upper snake case, such as
                    DX_MQTT_URL, DX_KAFKA_BROKERS (comma-separated),
                    DX_KAFKA_CLIENT_ID, DX_LOG_LEVEL (trace, debug, info,
                    warning, error, fatal). Secrets come only from here or a
                    file: DX_MQTT_PASSWORD, DX_KAFKA_SASL_PASSWORD.

Signals: SIGINT or SIGTERM stops reading, waits for messages in flight to be
delivered and acknowledged, then exits 0. A second signal, a second or more
after the first, exits at once with code 1; what was in flight stays
unacknowledged at the broker and is delivered again.

Exit codes: 0 clean stop, 1 failure at run time, 2 bad configuration.
`;

/** Signals closer together than this count as one (see `main`). */
const SIGNAL_REPEAT_WINDOW_MS = 1000;

interface Args {
  config?: string;
  help: boolean;
  checkConfig: boolean;
  printConfig: boolean;
}

/** Parses the command line; throws a `TypeError` naming an unknown flag. */
export function parseArgs(argv: readonly string[]): Args {
  const args: Args = { help: false, checkConfig: false, printConfig: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "-h" || arg === "--help") args.help = true;
    else if (arg === "--check-config") args.checkConfig = true;
    else if (arg === "--print-config") args.printConfig = true;
    else if (arg === "--config") {
      const value = argv[++i];
      if (value === undefined) {
        throw new TypeError("--config needs a file path: --config FILE");
      }
      args.config = value;
    } else if (arg.startsWith("--config=")) {
      args.config = arg.slice("--config=".length);
    } else {
      throw new TypeError(`Unknown argument "${arg}"; see --help`);
    }
  }
  return args;
}

/**
 * Reads and validates the configuration; throws `config-unreadable` when the
 * file cannot be read or parsed.
 */
async function loadConfig(
  args: Args,
  env: Readonly<Record<string, string>>,
): Promise<{ checked: ConfigCheck; source: string }> {
  const given = args.config ?? env.DX_CONFIG;
  // `deno task` runs in the project's folder; a relative path is meant
  // from where the user typed the command (INIT_CWD).
  const path = given && env.INIT_CWD && !given.startsWith("/")
    ? `${env.INIT_CWD}/${given}`
    : given;
  if (!path) return { checked: checkConfig({}, env), source: "defaults" };
  return {
    checked: checkConfig(await readConfigFile(path), env),
    source: path,
  };
}

/** Writes the misspelled DX_ variables to stderr, one warning each. */
function warnMisspelled(misspelled: readonly MisspelledVariable[]): void {
  for (const { name, closest } of misspelled) {
    console.error(
      `warning: ${name} is not a configuration variable and is ignored; did you mean ${closest}?`,
    );
  }
}

async function setUpLogging(level: BridgeConfig["log"]["level"]) {
  const encoder = new TextEncoder();
  const format = Deno.stdout.isTerminal()
    ? getAnsiColorFormatter({ timestamp: "time" })
    : jsonLinesFormatter;
  const sink = (record: LogRecord) => {
    Deno.stdout.writeSync(encoder.encode(format(record)));
  };
  await configure({
    sinks: { stdout: sink },
    loggers: [
      { category: ["dataexchange"], lowestLevel: level, sinks: ["stdout"] },
      {
        category: ["logtape", "meta"],
        lowestLevel: "warning",
        sinks: ["stdout"],
      },
    ],
  });
}

/**
 * Runs the command with the given arguments and returns its exit code.
 *
 * @param argv The arguments after the program name.
 * @returns 0, 1 or 2, as documented in the module.
 */
export async function main(argv: readonly string[]): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    return 2;
  }
  if (args.help) {
    console.log(HELP);
    return 0;
  }

  // A misspelled variable is often why the configuration is invalid: its
  // warning comes first, before the problems.
  const env = Deno.env.toObject();
  const misspelled = misspelledVariables(env);
  let loaded: { checked: ConfigCheck; source: string };
  try {
    loaded = await loadConfig(args, env);
  } catch (error) {
    warnMisspelled(misspelled);
    console.error(error instanceof Error ? error.message : String(error));
    return 2;
  }
  const { checked, source } = loaded;
  // The files the connections need (TLS files, password files) are
  // configuration too: read and reported with the other problems, before
  // anything connects, for --check-config as for a run.
  const fileProblems = await connectionProblems(
    checked.config ?? checked.given,
  );
  if (checked.config === undefined || fileProblems.length > 0) {
    warnMisspelled(misspelled);
    console.error(
      invalidConfigError([...checked.problems, ...fileProblems]).message,
    );
    return 2;
  }
  const config = checked.config;
  if (args.checkConfig || args.printConfig) warnMisspelled(misspelled);
  if (args.checkConfig) {
    console.log("configuration ok");
    return 0;
  }
  if (args.printConfig) {
    const shown = redactConfig(config);
    shown.mqtt.url = redactUrl(shown.mqtt.url);
    console.log(JSON.stringify(shown, null, 2));
    return 0;
  }

  await setUpLogging(config.log.level);
  const logger = getLogger(["dataexchange", "cli"]);
  for (const { name, closest } of misspelled) {
    logger.warn(
      "{name} is not a configuration variable and is ignored; did you mean {closest}?",
      { name, closest },
    );
  }
  logger.info(
    source === "defaults"
      ? "No configuration file given: using defaults and DX_ variables (MQTT at {mqttUrl}, Kafka at {kafkaBrokers})"
      : "Configuration loaded from {source} (MQTT at {mqttUrl}, Kafka at {kafkaBrokers})",
    {
      source,
      mqttUrl: redactUrl(config.mqtt.url),
      kafkaBrokers: config.kafka.brokers,
    },
  );

  const controller = new AbortController();
  let firstSignalAt = 0;
  const onSignal = (signal: Deno.Signal) => () => {
    if (controller.signal.aborted) {
      // One Ctrl-C can arrive twice (from the terminal and forwarded by
      // `deno task`); only a signal sent after that counts as a second one.
      if (Date.now() - firstSignalAt < SIGNAL_REPEAT_WINDOW_MS) {
        logger.info(
          "{signal} within 1 s of the first signal: taken as the same one (send another to exit at once)",
          { signal },
        );
        return;
      }
      logger.warn("Second {signal}: exiting at once", { signal });
      Deno.exit(1);
    }
    firstSignalAt = Date.now();
    logger.info("{signal} received: draining", { signal });
    controller.abort(new Error(`${signal} received`));
  };
  const handlers = (["SIGINT", "SIGTERM"] as const).map((signal) => {
    const handler = onSignal(signal);
    Deno.addSignalListener(signal, handler);
    return [signal, handler] as const;
  });
  const metrics = new BridgeMetrics({
    routes: Object.keys(config.routes),
    kafkaToMqttRoutes: config.kafkaToMqtt.map((_, index) => String(index)),
  });
  let health: HealthServer | undefined;
  try {
    if (config.metrics.port !== undefined) {
      health = serveHealth({
        port: config.metrics.port,
        hostname: config.metrics.hostname,
        metrics,
      });
    }
    await runBridge(config, { signal: controller.signal, metrics });
    return 0;
  } catch (error) {
    if (controller.signal.aborted && !isDataExchangeError(error)) return 0;
    logger.fatal("Bridge failed: {message}", {
      message: error instanceof Error ? error.message : String(error),
      error,
    });
    return 1;
  } finally {
    await health?.shutdown();
    for (const [signal, handler] of handlers) {
      Deno.removeSignalListener(signal, handler);
    }
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}

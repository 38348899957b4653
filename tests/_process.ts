/**
 * Child processes in tests: running a command to its end, reading a running
 * child's output as it comes, and the environment that points the bridge CLI
 * at the test brokers.
 *
 * @module
 */

/** A child's output stream, read into a string as it comes. */
export interface Collected {
  /** Everything read so far. */
  readonly text: string;
  /** Settles when the stream has ended. */
  readonly done: Promise<void>;
}

/**
 * Reads a stream of UTF-8 bytes into {@linkcode Collected.text} as it comes.
 *
 * @param stream A child's stdout or stderr.
 * @returns The text so far, and a promise of the stream's end.
 */
export function collect(stream: ReadableStream<Uint8Array>): Collected {
  const collected = { text: "", done: Promise.resolve() };
  collected.done = (async () => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      collected.text += chunk;
    }
  })();
  return collected;
}

/** Options of {@linkcode runCommand}. */
export interface RunCommandOptions {
  /** The arguments. Default: none. */
  args?: string[];
  /** The working directory. Default: the test's own. */
  cwd?: string;
  /** Variables added to the inherited environment. Default: none. */
  env?: Record<string, string>;
  /** The child's stdin. Default: `"null"`. */
  stdin?: "null" | "inherit";
}

/** How a command ended, with its output decoded. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to its end and collects its output.
 *
 * @param command The program to run.
 * @param options Its arguments, directory, environment and stdin.
 * @returns Its exit code, and its stdout and stderr as text.
 */
export async function runCommand(
  command: string,
  options: RunCommandOptions = {},
): Promise<CommandResult> {
  const { args = [], cwd, env, stdin = "null" } = options;

  const output = await new Deno.Command(command, {
    args,
    cwd,
    env,
    stdin,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Options of {@linkcode bridgeEnv}. */
export interface BridgeEnvOptions {
  /** The MQTT broker, as a URL. */
  mqttUrl: string;
  /** The Kafka bootstrap brokers, `host:port` each. */
  kafkaBrokers: string[];
  /** The bridge's MQTT client id, whose session holds the test's events. */
  clientId: string;
  /** The MQTT topic filter the bridge subscribes to. */
  mqttTopic: string;
  /**
   * The Kafka topic of the `telemetry` route; the default and dead-letter
   * topics are named after it (`.default`, `.dlq`).
   */
  kafkaTopic: string;
}

/**
 * The `DX_` variables that make the bridge CLI carry `telemetry` events from
 * one MQTT topic to one Kafka topic.
 *
 * @param options The brokers, the client id and the two topics.
 * @returns The variables, to merge into a child's `env`.
 */
export function bridgeEnv(options: BridgeEnvOptions): Record<string, string> {
  const { mqttUrl, kafkaBrokers, clientId, mqttTopic, kafkaTopic } = options;
  return {
    DX_MQTT_URL: mqttUrl,
    DX_KAFKA_BROKERS: kafkaBrokers.join(","),
    DX_MQTT_CLIENT_ID: clientId,
    DX_MQTT_TOPICS: mqttTopic,
    DX_ROUTES: JSON.stringify({ telemetry: kafkaTopic }),
    DX_DEFAULT_TOPIC: `${kafkaTopic}.default`,
    DX_DEAD_LETTER_TOPIC: `${kafkaTopic}.dlq`,
  };
}

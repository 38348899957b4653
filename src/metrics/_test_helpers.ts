/**
 * Reading the Prometheus text format back, and running promtool, for the
 * tests of the metrics.
 *
 * @module
 */

/** One sample line of the Prometheus text format. */
export interface Sample {
  /** The series name, such as `dx_delivery_latency_seconds_bucket`. */
  name: string;
  /** Its labels. */
  labels: Record<string, string>;
  /** Its value. */
  value: number;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/;
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/**
 * Parses the sample lines of an exposition, skipping comments and blank
 * lines.
 *
 * @param text The exposition.
 * @returns Every sample, in order.
 * @throws {SyntaxError} On a line that is not a sample.
 */
export function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = SAMPLE_LINE.exec(line);
    if (match === null) {
      throw new SyntaxError(`Not a sample line: ${JSON.stringify(line)}`);
    }
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(LABEL_PAIR)) {
      labels[pair[1]] = pair[2];
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/**
 * The value of the one sample with exactly these name and labels.
 *
 * @param samples Parsed samples.
 * @param name The series name.
 * @param labels Its labels, all of them.
 * @returns The value, or `undefined` when there is no such sample.
 */
export function valueOf(
  samples: readonly Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const wanted = JSON.stringify(Object.entries(labels).sort());
  return samples.find((sample) =>
    sample.name === name &&
    JSON.stringify(Object.entries(sample.labels).sort()) === wanted
  )?.value;
}

/**
 * The values one label takes across the samples of a series.
 *
 * @param samples Parsed samples.
 * @param name The series name.
 * @param label The label name.
 * @returns The distinct values, sorted.
 */
export function labelValues(
  samples: readonly Sample[],
  name: string,
  label: string,
): string[] {
  const values = new Set<string>();
  for (const sample of samples) {
    if (sample.name === name && label in sample.labels) {
      values.add(sample.labels[label]);
    }
  }
  return [...values].sort();
}

/** Whether promtool can be run, and if not, why. */
export type PromtoolAvailability =
  | { available: true }
  | { available: false; reason: string };

/**
 * Finds out whether `promtool` can be run here.
 *
 * @returns Whether it can, and the reason when it cannot.
 */
export function findPromtool(): PromtoolAvailability {
  try {
    const { success } = new Deno.Command("promtool", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return success
      ? { available: true }
      : { available: false, reason: "promtool --version failed" };
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "promtool is not installed (apt-get install prometheus)"
      : error instanceof Deno.errors.NotCapable
      ? "promtool may not be run (grant --allow-run)"
      : `promtool cannot be run (${(error as Error).message})`;
    return { available: false, reason };
  }
}

/** How the promtool tests of a file run, or why they are skipped. */
export interface PromtoolGate {
  /** Whether the tests are skipped: promtool is missing and not required. */
  ignore: boolean;
  /** Fails, saying how to install promtool, when it is missing. */
  assertAvailable(): void;
}

/**
 * Decides whether the promtool tests run: when promtool is missing they are
 * skipped with one line saying how to install it, unless env
 * `DX_REQUIRE_BROKERS=1` (as in CI), where they run and fail.
 *
 * @param what What the skipped tests check, for the skip line.
 * @returns Whether to skip, and the check that fails when promtool is missing.
 */
export function promtoolGate(what: string): PromtoolGate {
  const availability = findPromtool();
  const required = readEnv("DX_REQUIRE_BROKERS") === "1";
  const reason = availability.available ? "" : availability.reason;
  if (!availability.available && !required) {
    console.warn(`Skipping ${what}: ${reason}`);
  }
  return {
    ignore: !availability.available && !required,
    assertAvailable() {
      if (availability.available) return;
      throw new Error(
        `${reason}; DX_REQUIRE_BROKERS=1 requires promtool, from the Debian package prometheus`,
      );
    },
  };
}

/** What promtool said. */
export interface PromtoolResult {
  /** Its exit code: 0 when content, 3 for lint problems, 1 for errors. */
  code: number;
  /** Its output, stdout then stderr. */
  output: string;
}

/**
 * Runs promtool with `input` on its standard input.
 *
 * @param args Its arguments, such as `["check", "metrics"]`.
 * @param input What it reads on standard input (`/dev/stdin` for a file).
 * @returns Its exit code and output.
 */
export async function runPromtool(
  args: string[],
  input: string,
): Promise<PromtoolResult> {
  const child = new Deno.Command("promtool", {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return {
    code,
    output: decoder.decode(stdout) + decoder.decode(stderr),
  };
}

/**
 * Runs `promtool check metrics` on an exposition.
 *
 * @param text The exposition.
 * @returns Its exit code and output: nothing when it finds no fault.
 */
export function promtoolCheckMetrics(text: string): Promise<PromtoolResult> {
  return runPromtool(["check", "metrics"], text);
}

/** An environment variable, or `undefined` when it cannot be read. */
function readEnv(name: string): string | undefined {
  const { state } = Deno.permissions.querySync({ name: "env", variable: name });
  return state === "granted" ? Deno.env.get(name) : undefined;
}

/**
 * The bridge CLI as a child process for integration tests: started with a
 * configuration file, its JSON log lines kept in memory, stopped by a
 * signal with a deadline.
 *
 * The CLI runs as `deno task bridge` runs it: its flags (the `--v8-flags`
 * that bound the heap included) are read from that task in deno.json, so
 * the tests cannot drift from it. The one difference: the network
 * permission is narrowed to 127.0.0.1, where the tests' brokers are.
 *
 * @module
 */
import { abortableDelay } from "../src/_retry.ts";
import {
  type BridgeConfig,
  type BridgeStats,
  runBridge,
} from "../src/bridge/mod.ts";

const CLI_SCRIPT = "src/cli/main.ts";
const CLI = new URL(`../${CLI_SCRIPT}`, import.meta.url).pathname;

/**
 * The `deno run` flags of the `bridge` task in deno.json, network narrowed
 * to 127.0.0.1: what every CLI the tests start runs with.
 */
export const BRIDGE_TASK_FLAGS: readonly string[] = bridgeTaskFlags(
  await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
);

/**
 * Reads the flags between `deno run` and the CLI's path in the `bridge`
 * task of a deno.json text.
 *
 * @param denoJson The text of deno.json.
 * @returns The flags, with `--allow-net` narrowed to 127.0.0.1.
 * @throws {Error} When the task is missing or is not `deno run <flags>
 * src/cli/main.ts`.
 */
export function bridgeTaskFlags(denoJson: string): string[] {
  const task: unknown = JSON.parse(denoJson).tasks?.bridge;
  const words = typeof task === "string" ? task.trim().split(/\s+/) : [];
  if (
    words[0] !== "deno" || words[1] !== "run" || words.at(-1) !== CLI_SCRIPT
  ) {
    throw new Error(
      `deno.json's bridge task must be "deno run <flags> ${CLI_SCRIPT}"; got ${
        JSON.stringify(task)
      }`,
    );
  }
  return words.slice(2, -1).map((flag) =>
    flag === "--allow-net" || flag.startsWith("--allow-net=")
      ? "--allow-net=127.0.0.1"
      : flag
  );
}

/** One JSON log line of the bridge. */
export interface LogLine {
  time: string;
  level: string;
  logger: string;
  message: string;
  properties: Record<string, unknown>;
}

/**
 * The bridge CLI running as a child process, with the flags of
 * `deno task bridge` ({@linkcode BRIDGE_TASK_FLAGS}) and its log kept in
 * memory.
 */
export class BridgeProcess {
  readonly lines: LogLine[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #reading: Promise<void>;
  #exit: Deno.CommandStatus | undefined;

  constructor(configPath: string) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...BRIDGE_TASK_FLAGS, CLI, "--config", configPath],
      stdout: "piped",
      stderr: "inherit",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.#child.status.then((status) => this.#exit = status);
    this.#reading = this.#read();
  }

  get pid(): number {
    return this.#child.pid;
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  /** Log lines whose message contains `text` (and match `where`, if given). */
  find(text: string, where?: (line: LogLine) => boolean): LogLine[] {
    return this.lines.filter((line) =>
      line.message.includes(text) && (where?.(line) ?? true)
    );
  }

  /** Waits until `count` lines contain `text`; fails if the bridge exits. */
  async waitForLog(
    text: string,
    { count = 1, timeoutMs = 60_000, where }: {
      count?: number;
      timeoutMs?: number;
      where?: (line: LogLine) => boolean;
    } = {},
  ): Promise<LogLine[]> {
    await waitFor(
      `${count} bridge log line(s) containing "${text}"`,
      () => {
        if (!this.running) {
          throw new Error(
            `the bridge exited (${
              JSON.stringify(this.#exit)
            }) while waiting for "${text}"; its log:\n${this.tail()}`,
          );
        }
        return this.find(text, where).length >= count;
      },
      timeoutMs,
    );
    return this.find(text, where);
  }

  /** The last log lines, for failure messages. */
  tail(lines = 30): string {
    return this.lines.slice(-lines).map((line) =>
      `  ${line.level} ${line.message}`
    ).join("\n");
  }

  /** Current and peak resident memory, in MiB, from /proc (read by `cat`). */
  async memory(): Promise<{ rssMb: number; peakMb: number }> {
    const output = await new Deno.Command("cat", {
      args: [`/proc/${this.pid}/status`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(output.stdout);
    const kb = (field: string) => {
      const match = text.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
      if (!match) {
        throw new Error(`no ${field} in /proc/${this.pid}/status:\n${text}`);
      }
      return Number(match[1]);
    };
    return { rssMb: kb("VmRSS") / 1024, peakMb: kb("VmHWM") / 1024 };
  }

  /**
   * Sends `signal` and resolves with the exit status and how long it took.
   * A bridge still running after `timeoutMs` is killed and the stop fails.
   */
  async stop(
    signal: Deno.Signal = "SIGTERM",
    timeoutMs = 30_000,
  ): Promise<{ code: number; signal: Deno.Signal | null; ms: number }> {
    const began = performance.now();
    if (this.running) this.#child.kill(signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      this.#child.status.then(() => true),
      new Promise<false>((resolve) =>
        timer = setTimeout(() => resolve(false), timeoutMs)
      ),
    ]);
    clearTimeout(timer);
    if (!exited) {
      this.#child.kill("SIGKILL");
      await this.#child.status;
      await this.#reading;
      throw new Error(
        `the bridge did not exit within ${timeoutMs} ms of ${signal}; killed. Its log:\n${this.tail()}`,
      );
    }
    const status = await this.#child.status;
    await this.#reading;
    return {
      code: status.code,
      signal: status.signal,
      ms: Math.round(performance.now() - began),
    };
  }

  async #read(): Promise<void> {
    let buffered = "";
    const decoder = new TextDecoderStream();
    for await (const chunk of this.#child.stdout.pipeThrough(decoder)) {
      buffered += chunk;
      const parts = buffered.split("\n");
      buffered = parts.pop()!;
      for (const part of parts) this.lines.push(parseLine(part));
    }
    if (buffered !== "") this.lines.push(parseLine(buffered));
  }
}

/** Reads one line of the bridge's JSON log; other text becomes a `RAW` line. */
export function parseLine(text: string): LogLine {
  try {
    const json = JSON.parse(text) as Partial<LogLine>;
    return {
      time: String((json as { "@timestamp"?: string })["@timestamp"]),
      level: String(json.level),
      logger: String(json.logger),
      message: String(json.message),
      properties: json.properties ?? {},
    };
  } catch {
    return {
      time: "",
      level: "RAW",
      logger: "",
      message: text,
      properties: {},
    };
  }
}

/**
 * Polls `condition` until it holds, failing after `timeoutMs`. The pause
 * between polls paces the polling; it synchronises nothing.
 */
export async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 60_000,
  intervalMs = 50,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await abortableDelay(intervalMs);
  }
}

/** A bridge running in the test's own process. */
export interface InProcessBridge {
  /** Aborting it stops the bridge. */
  controller: AbortController;
  /** Settles with the final counts once the bridge has stopped. */
  running: Promise<BridgeStats>;
  /** Stops the bridge and resolves with its final counts. */
  stop(): Promise<BridgeStats>;
}

/**
 * Runs the bridge in this process and resolves once it is subscribed; fails
 * at once if the bridge fails before that.
 */
export async function startBridgeInProcess(
  config: BridgeConfig,
): Promise<InProcessBridge> {
  const controller = new AbortController();
  let ready!: () => void;
  const isReady = new Promise<void>((resolve) => ready = resolve);
  const running = runBridge(config, {
    signal: controller.signal,
    onReady: ready,
  });
  await Promise.race([isReady, running]);
  return {
    controller,
    running,
    stop: () => {
      controller.abort();
      return running;
    },
  };
}

/**
 * Starts the bridge CLI with the flags of `deno task bridge` and `args`,
 * piped output, and none of this process's `DX_` variables: only those in
 * `env` apply.
 */
export function spawnCli(
  args: readonly string[],
  env: Record<string, string> = {},
): Deno.ChildProcess {
  const inherited = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([name]) =>
      !name.startsWith("DX_")
    ),
  );
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...BRIDGE_TASK_FLAGS, CLI, ...args],
    clearEnv: true,
    env: { ...inherited, NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/**
 * Child processes of the bench: a role of `_roles.ts` or the bridge CLI,
 * their stdout read as JSON lines, and their memory read from /proc.
 *
 * @module
 */
import { type Command, lines } from "./_child_io.ts";

const ROLES = new URL("./_roles.ts", import.meta.url).pathname;
const CLI = new URL("../src/cli/main.ts", import.meta.url).pathname;
const PERMISSIONS = ["--allow-net=127.0.0.1", "--allow-env", "--allow-read"];

/** Children still running, for {@linkcode killAll}. */
const running = new Set<Deno.ChildProcess>();

/** SIGKILLs every child still running (when the bench is interrupted). */
export function killAll(): void {
  for (const child of running) {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }
}

/** One line a child wrote on stdout: parsed JSON, or `{ text }`. */
export type Line = Record<string, unknown>;

/** A running child process of the bench. */
export class Child {
  readonly label: string;
  readonly #process: Deno.ChildProcess;
  readonly #lines: Line[] = [];
  readonly #listeners = new Set<() => void>();
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #status: Deno.CommandStatus | undefined;
  readonly exited: Promise<Deno.CommandStatus>;

  /**
   * @param label Names the child in messages.
   * @param args Arguments of `deno`.
   */
  constructor(label: string, args: string[]) {
    this.label = label;
    this.#process = new Deno.Command(Deno.execPath(), {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.#stdin = this.#process.stdin.getWriter();
    running.add(this.#process);
    this.exited = this.#process.status.then((status) => {
      running.delete(this.#process);
      this.#status = status;
      this.#notify();
      return status;
    });
    this.#read();
  }

  /** A role of `_roles.ts`. */
  static role(
    role: string,
    options: unknown,
    extraFlags: string[] = [],
  ): Child {
    return new Child(role, [
      "run",
      ...PERMISSIONS,
      ...extraFlags,
      ROLES,
      role,
      JSON.stringify(options),
    ]);
  }

  /** The bridge CLI with a configuration file. */
  static bridge(
    label: string,
    configPath: string,
    extraFlags: string[] = [],
  ): Child {
    return new Child(label, [
      "run",
      ...PERMISSIONS,
      ...extraFlags,
      CLI,
      "--config",
      configPath,
    ]);
  }

  get pid(): number {
    return this.#process.pid;
  }

  get running(): boolean {
    return this.#status === undefined;
  }

  /** Lines read so far. */
  get lines(): readonly Line[] {
    return this.#lines;
  }

  /**
   * Resolves with the first line (from `since` on) that `match` accepts.
   *
   * @throws {Error} When the child exits first or `timeoutMs` passes.
   */
  waitFor(
    what: string,
    match: (line: Line) => boolean,
    { timeoutMs = 120_000, since = 0 } = {},
  ): Promise<Line> {
    return new Promise((resolve, reject) => {
      let index = since;
      const check = () => {
        for (; index < this.#lines.length; index++) {
          if (match(this.#lines[index])) {
            done();
            resolve(this.#lines[index]);
            return;
          }
        }
        if (!this.running) {
          done();
          reject(
            new Error(
              `${this.label} exited (${
                JSON.stringify(this.#status)
              }) before ${what}; its last lines:\n${this.tail()}`,
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `${this.label}: no ${what} within ${timeoutMs} ms; last lines:\n${this.tail()}`,
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** Waits for the line `{"event": name}`. */
  waitForEvent(name: string, options?: { timeoutMs?: number; since?: number }) {
    return this.waitFor(`"${name}"`, (line) => line.event === name, options);
  }

  /** Calls `listener` after each line until it returns false. */
  onLine(listener: (line: Line) => boolean | void): void {
    let index = this.#lines.length;
    const check = () => {
      for (; index < this.#lines.length; index++) {
        if (listener(this.#lines[index]) === false) {
          this.#listeners.delete(check);
          return;
        }
      }
    };
    this.#listeners.add(check);
  }

  /** Sends a command line on stdin. */
  async send(command: Command | string): Promise<void> {
    const text = typeof command === "string"
      ? command
      : [command.name, ...command.args].join(" ");
    await this.#stdin.write(new TextEncoder().encode(text + "\n"));
  }

  /**
   * Stops the child: closes its stdin (roles stop on that) or sends
   * `signal`, then SIGKILL after `timeoutMs`.
   */
  async stop(
    { signal, timeoutMs = 15_000 }: {
      signal?: Deno.Signal;
      timeoutMs?: number;
    } = {},
  ): Promise<Deno.CommandStatus> {
    if (this.running) {
      if (signal) {
        try {
          this.#process.kill(signal);
        } catch { /* it exited meanwhile */ }
      }
      await this.#stdin.close().catch(() => {});
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([
      this.exited,
      new Promise<undefined>((resolve) =>
        timer = setTimeout(() => resolve(undefined), timeoutMs)
      ),
    ]);
    clearTimeout(timer);
    if (status !== undefined) return status;
    console.error(`${this.label} did not stop in ${timeoutMs} ms; killing it`);
    try {
      this.#process.kill("SIGKILL");
    } catch { /* it exited meanwhile */ }
    return await this.exited;
  }

  /** The last lines, for error messages. */
  tail(count = 15): string {
    return this.#lines.slice(-count).map((line) => JSON.stringify(line))
      .join("\n");
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  async #read(): Promise<void> {
    for await (const text of lines(this.#process.stdout)) {
      // V8's own output (--trace-gc) shares stdout and may end up on the
      // same line as a JSON one: read the JSON from its first brace.
      const brace = text.indexOf("{");
      let line: Line = { text };
      if (brace >= 0) {
        try {
          const parsed = JSON.parse(text.slice(brace));
          if (typeof parsed === "object" && parsed !== null) line = parsed;
        } catch { /* not JSON: kept as text */ }
      }
      if (brace > 0 && line.text === undefined) {
        this.#lines.push({ text: text.slice(0, brace) });
      }
      this.#lines.push(line);
      this.#notify();
    }
  }
}

/** Resident and peak memory of a process, in kB, from /proc. */
export interface MemoryStatus {
  rssKb: number;
  hwmKb: number;
}

/**
 * Reads VmRSS and VmHWM of `pid`. Deno reads /proc of other processes only
 * with --allow-all, so `cat` reads it.
 *
 * @returns The status, or undefined when the process is gone.
 */
export async function memoryStatus(
  pid: number,
): Promise<MemoryStatus | undefined> {
  const { stdout, success } = await new Deno.Command("cat", {
    args: [`/proc/${pid}/status`],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!success) return undefined;
  const text = new TextDecoder().decode(stdout);
  const rss = Number(/VmRSS:\s+(\d+)/.exec(text)?.[1]);
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(text)?.[1]);
  return rss > 0 && hwm > 0 ? { rssKb: rss, hwmKb: hwm } : undefined;
}

/** One sample of a process's resident memory. */
export interface RssSample {
  /** Epoch milliseconds of the sample. */
  at: number;
  pid: number;
  rssKb: number;
}

/**
 * Samples the resident memory of processes every `intervalMs`, from a
 * shell loop (one process for the whole run, not one per sample).
 */
export class RssSampler {
  readonly samples: RssSample[] = [];
  readonly #process: Deno.ChildProcess;
  readonly #reading: Promise<void>;

  constructor(pids: number[], intervalMs = 200) {
    const script = `
while :; do
  for p in "$@"; do
    rss=
    while read -r key value _; do
      case $key in VmRSS:) rss=$value;; esac
    done < /proc/$p/status 2>/dev/null
    [ -n "$rss" ] && echo "$p $rss"
  done
  sleep ${intervalMs / 1000}
done`;
    const process = new Deno.Command("bash", {
      args: ["-c", script, "rss-sampler", ...pids.map(String)],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.#process = process;
    running.add(process);
    process.status.then(() => running.delete(process));
    this.#reading = (async () => {
      for await (const line of lines(process.stdout)) {
        const [pid, rss] = line.split(" ").map(Number);
        this.samples.push({
          at: performance.timeOrigin + performance.now(),
          pid,
          rssKb: rss,
        });
      }
    })();
  }

  /** The largest sample of `pid` (any pid when omitted) between two times. */
  peakKb(from = 0, to = Infinity, pid?: number): number {
    let peak = 0;
    for (const sample of this.samples) {
      if (sample.at < from || sample.at > to) continue;
      if (pid !== undefined && sample.pid !== pid) continue;
      if (sample.rssKb > peak) peak = sample.rssKb;
    }
    return peak;
  }

  async stop(): Promise<void> {
    try {
      this.#process.kill("SIGTERM");
    } catch { /* already gone */ }
    await this.#process.status;
    await this.#reading;
  }
}

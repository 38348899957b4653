/**
 * The process handling shared by the Mosquitto and Kafka launchers: free
 * ports, abortable waits, tool checks, and {@linkcode BrokerProcess}, which
 * owns one broker process with its data directory.
 *
 * @module
 */

import { BrokerStartError, BrokerUnavailableError } from "./errors.ts";

/**
 * A running local broker. Both `MosquittoBroker` and `KafkaBroker` extend
 * it.
 */
export interface BrokerHandle extends AsyncDisposable {
  /** Kind and address, for messages: `Mosquitto on 127.0.0.1:1883`. */
  readonly label: string;
  /** The TCP port clients connect to, on 127.0.0.1. Kept across restarts. */
  readonly port: number;
  /** Process id of the current broker process; changes on restart. */
  readonly pid: number;
  /** The temporary directory with config, data and log; deleted by `stop()`. */
  readonly dataDir: string;
  /** The file that receives the broker's stdout and stderr. */
  readonly logPath: string;
  /** Whether the current process has not exited yet. */
  readonly running: boolean;
  /** Milliseconds the last start or restart took until the broker was ready. */
  readonly startupMs: number;
  /**
   * Resolves with the exit status of the current process when it exits, for
   * whatever reason (including `kill()` and `stop()`).
   */
  exited(): Promise<Deno.CommandStatus>;
  /**
   * Sends SIGTERM, waits for the exit (SIGKILL when it takes too long), then
   * deletes the data directory. Idempotent; a stopped broker cannot restart.
   */
  stop(): Promise<void>;
  /** Sends SIGKILL and waits for the exit; keeps the data for `restart()`. */
  kill(): Promise<void>;
  /**
   * Starts the broker again on the same port with the same data, after
   * terminating it gracefully if it still runs. Resolves when it is ready.
   *
   * @throws {BrokerStartError} When it does not become ready, for instance
   * because another process took the port while it was down.
   */
  restart(options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Sends SIGKILL without waiting and deletes the data directory
   * synchronously. Only for `unload` handlers, where nothing async runs.
   */
  stopSync(): void;
}

/** How {@linkcode BrokerProcess} runs and probes one broker. */
export interface BrokerProcessOptions {
  /** Kind and address, for messages: `Mosquitto on 127.0.0.1:1883`. */
  label: string;
  /** The TCP port clients connect to. */
  port: number;
  /** Program to run, a name on PATH or a path. */
  executable: string;
  /** Its arguments. */
  args: readonly string[];
  /** The temporary directory this broker owns; deleted by `stop()`. */
  dataDir: string;
  /** Where stdout and stderr are appended. */
  logPath: string;
  /** One readiness check; rejects while the broker is not ready yet. */
  probe: (signal: AbortSignal) => Promise<void>;
  /** How long a start may take until the broker is ready. */
  readyTimeoutMs: number;
  /** How long a single probe may take. */
  probeTimeoutMs: number;
  /** How long `stop()` waits after SIGTERM before it sends SIGKILL. */
  stopTimeoutMs: number;
}

const PROBE_INTERVAL_MS = 50;

/**
 * Owns one broker process and its data directory. The process runs under
 * `/bin/sh -c 'exec ...'` so its output goes straight to the log file, with
 * no pipe that this process must keep draining; the child is unref'd so it
 * does not keep a script alive by itself.
 */
export class BrokerProcess implements BrokerHandle {
  readonly #options: BrokerProcessOptions;
  #child: Deno.ChildProcess | undefined;
  #status: Promise<Deno.CommandStatus> | undefined;
  #exit: Deno.CommandStatus | undefined;
  #stopping: Promise<void> | undefined;
  #startupMs = 0;

  /** @param options How to run and probe the broker. */
  constructor(options: BrokerProcessOptions) {
    this.#options = options;
  }

  /** Kind and address, for messages. */
  get label(): string {
    return this.#options.label;
  }

  /** The TCP port clients connect to. */
  get port(): number {
    return this.#options.port;
  }

  /** Process id of the current broker process, or 0 before the first start. */
  get pid(): number {
    return this.#child?.pid ?? 0;
  }

  /** The temporary directory this broker owns. */
  get dataDir(): string {
    return this.#options.dataDir;
  }

  /** The file that receives the broker's output. */
  get logPath(): string {
    return this.#options.logPath;
  }

  /** Whether the current process has not exited yet. */
  get running(): boolean {
    return this.#child !== undefined && this.#exit === undefined;
  }

  /** Milliseconds the last start took until the broker was ready. */
  get startupMs(): number {
    return this.#startupMs;
  }

  /**
   * Spawns the process and waits until its probe succeeds. On failure the
   * process is killed (the data directory stays; the caller decides).
   *
   * @param signal Aborts the wait; the process is then killed.
   * @throws {BrokerStartError} When the process exits or is not ready in time.
   */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.#stopping) {
      throw new Error(
        `Cannot start ${this.label}: it was stopped and its data deleted; start a new broker instead`,
      );
    }
    if (this.running) {
      throw new Error(
        `Cannot start ${this.label}: it already runs as pid ${this.pid}; call kill() or stop() first`,
      );
    }
    signal?.throwIfAborted();

    const began = performance.now();
    const child = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        'exec "$@" >>"$DX_BROKER_LOG" 2>&1',
        "sh",
        this.#options.executable,
        ...this.#options.args,
      ],
      env: { DX_BROKER_LOG: this.#options.logPath },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    child.unref();
    this.#child = child;
    this.#exit = undefined;
    this.#status = child.status.then((status) => {
      if (this.#child === child) this.#exit = status;
      return status;
    });

    try {
      await this.#waitUntilReady(signal);
    } catch (error) {
      await this.#signalAndWait("SIGKILL", 0);
      throw error;
    }
    this.#startupMs = Math.round(performance.now() - began);
  }

  /** Resolves when the current process exits. */
  exited(): Promise<Deno.CommandStatus> {
    if (!this.#status) {
      return Promise.reject(
        new Error(`${this.label} has not been started, so it cannot exit`),
      );
    }
    return this.#status;
  }

  /** Sends SIGTERM, SIGKILL after the timeout, then deletes the data. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.#signalAndWait("SIGTERM", this.#options.stopTimeoutMs);
      await removeIfExists(this.#options.dataDir);
    })();
    return this.#stopping;
  }

  /** Sends SIGKILL and waits for the exit; keeps the data. */
  async kill(): Promise<void> {
    await this.#signalAndWait("SIGKILL", 0);
  }

  /** Starts again on the same port with the same data. */
  async restart(options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.#signalAndWait("SIGTERM", this.#options.stopTimeoutMs);
    await this.start(options.signal);
  }

  /** SIGKILL without waiting, then a synchronous delete of the data. */
  stopSync(): void {
    this.#stopping ??= Promise.resolve();
    if (this.running) {
      try {
        Deno.kill(this.pid, "SIGKILL");
      } catch (error) {
        // ESRCH: it exited between the check and the kill, which is the goal.
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    try {
      Deno.removeSync(this.#options.dataDir, { recursive: true });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #waitUntilReady(signal: AbortSignal | undefined): Promise<void> {
    const { label, logPath, readyTimeoutMs, probeTimeoutMs } = this.#options;
    const deadline = performance.now() + readyTimeoutMs;
    let lastError: unknown;
    while (true) {
      signal?.throwIfAborted();
      if (this.#exit) {
        throw new BrokerStartError(
          `${label} exited with code ${this.#exit.code} before it was ready; ` +
            `the end of ${logPath} says:\n${await readTail(logPath)}`,
          { cause: lastError },
        );
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new BrokerStartError(
          `${label} was not ready after ${readyTimeoutMs} ms (last probe: ${
            describe(lastError)
          }); the machine may be overloaded, or the broker stuck. ` +
            `The end of ${logPath} says:\n${await readTail(logPath)}`,
          { cause: lastError },
        );
      }
      const probe = await this.#probeOnce(
        Math.min(probeTimeoutMs, left),
        signal,
      );
      if (probe.ready) return;
      lastError = probe.error;
      await delay(PROBE_INTERVAL_MS, signal);
    }
  }

  /** One probe, cut short when the process exits or `signal` aborts. */
  async #probeOnce(
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<{ ready: true } | { ready: false; error: unknown }> {
    const attempt = new AbortController();
    const onAbort = () => attempt.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let probing = true;
    this.#status?.then((status) => {
      if (probing) {
        attempt.abort(new Error(`the process exited with code ${status.code}`));
      }
    });
    try {
      await withTimeout(timeoutMs, attempt.signal, this.#options.probe);
      return { ready: true };
    } catch (error) {
      signal?.throwIfAborted();
      return { ready: false, error };
    } finally {
      probing = false;
      signal?.removeEventListener("abort", onAbort);
    }
  }

  async #signalAndWait(
    signal: "SIGTERM" | "SIGKILL",
    timeoutMs: number,
  ): Promise<void> {
    const child = this.#child;
    const status = this.#status;
    if (!child || !status || this.#exit) return;
    child.ref();
    try {
      child.kill(signal);
    } catch (error) {
      // The child exited on its own after we last looked: nothing to signal.
      if (!(error instanceof TypeError)) throw error;
    }
    if (signal === "SIGTERM") {
      const exited = await raceTimeout(status, timeoutMs);
      if (!exited && this.#exit === undefined) {
        try {
          child.kill("SIGKILL");
        } catch (error) {
          if (!(error instanceof TypeError)) throw error;
        }
      }
    }
    await status;
  }
}

/**
 * Picks a free TCP port on 127.0.0.1 by binding port 0 and closing again.
 * Another process may take it before the broker binds it; a start then fails
 * with {@linkcode BrokerStartError}, which is retriable.
 *
 * @param exclude Ports already chosen for the same broker, not to pick again.
 * @returns A port number that was free a moment ago.
 *
 * @example Pick a port
 * ```ts
 * import { freePort } from "./_process.ts";
 *
 * console.log(freePort() > 0); // true
 * ```
 */
export function freePort(exclude: readonly number[] = []): number {
  while (true) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    let port: number;
    try {
      port = (listener.addr as Deno.NetAddr).port;
    } finally {
      listener.close();
    }
    if (!exclude.includes(port)) return port;
  }
}

/**
 * Throws unless `port` on 127.0.0.1 is free. A broker checked for readiness
 * on a taken port would otherwise find the other program answering there.
 *
 * @param port The port the broker is asked to use.
 * @param what Which broker, and where its port came from, for the message.
 * @throws {BrokerStartError} When something already listens there.
 */
export function ensurePortFree(port: number, what: string): void {
  let listener: Deno.Listener;
  try {
    listener = Deno.listen({ hostname: "127.0.0.1", port });
  } catch (error) {
    throw new BrokerStartError(
      `${what}: port ${port} on 127.0.0.1 is already in use by another program; stop it, or choose another port (unset the port variable to pick a free one)`,
      { cause: error },
    );
  }
  listener.close();
}

/**
 * Runs a program once to learn whether it exists, and returns what it
 * printed (stdout then stderr).
 *
 * @param executable A name on PATH or a path.
 * @param args Arguments that make it print and exit, such as `-version`.
 * @param missing The message of the error when it does not exist: what is
 * missing and how to install it.
 * @returns Its combined output.
 * @throws {BrokerUnavailableError} When the program is not found.
 */
export async function probeTool(
  executable: string,
  args: readonly string[],
  missing: string,
): Promise<string> {
  try {
    const output = await new Deno.Command(executable, {
      args: [...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    return decoder.decode(output.stdout) + decoder.decode(output.stderr);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new BrokerUnavailableError(missing, { cause: error });
    }
    throw error;
  }
}

/**
 * Waits, abortably, and clears its timer either way.
 *
 * @param ms Milliseconds to wait.
 * @param signal Rejects the wait with `signal.reason` when aborted.
 */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Runs `fn` with a signal that aborts after `ms` or when `signal` aborts.
 *
 * @param ms The time limit.
 * @param signal An outer signal, if any.
 * @param fn The work; it must honour the signal it is given.
 * @returns What `fn` returns.
 */
export async function withTimeout<T>(
  ms: number,
  signal: AbortSignal | undefined,
  fn: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new Error(`timed out after ${Math.round(ms)} ms`)),
    ms,
  );
  const onAbort = () => controller.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await fn(controller.signal);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * Settles like `promise`, or rejects with `signal.reason` as soon as
 * `signal` aborts (the promise itself then runs on, unobserved).
 *
 * @param promise The work.
 * @param signal The signal to honour.
 * @returns What `promise` resolves to.
 */
export function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal,
): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {}); // Settled later; the abort is the answer.
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() =>
      signal.removeEventListener("abort", onAbort)
    );
  });
}

/**
 * The last lines of a log file, for error messages.
 *
 * @param path The log file.
 * @param lines How many lines at most. Default 40.
 * @returns The tail, indented, or a note saying the log could not be read.
 */
export async function readTail(path: string, lines = 40): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    return `  (could not read the log: ${describe(error)})`;
  }
  const tail = text.trimEnd().split("\n").slice(-lines).join("\n");
  const clipped = tail.length > 8000 ? tail.slice(-8000) : tail;
  return clipped.length === 0
    ? "  (the log is empty)"
    : clipped.replace(/^/gm, "  ");
}

/**
 * Deletes a file or directory tree; a path that is already gone is fine.
 *
 * @param path What to delete.
 */
export async function removeIfExists(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/**
 * Whether a path exists.
 *
 * @param path The path to look at.
 * @returns `false` only when it does not exist; other errors are thrown.
 */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * A short text for any thrown value.
 *
 * @param error Anything caught.
 * @returns Its message, or its string form.
 */
export function describe(error: unknown): string {
  if (error === undefined) return "none yet";
  return error instanceof Error ? error.message : String(error);
}

async function raceTimeout(
  promise: Promise<unknown>,
  ms: number,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Checks a TCP port number.
 *
 * @param port The value to check.
 * @param name The option's name, for the message.
 * @throws {RangeError} When it is not an integer from 1 to 65535.
 */
export function validatePort(port: number, name: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(
      `${name} must be an integer from 1 to 65535, got ${port}`,
    );
  }
}

/**
 * Reads an environment variable; empty counts as unset.
 *
 * @param name The variable.
 * @returns Its value, or `undefined` when unset, empty, or not permitted.
 */
export function readEnv(name: string): string | undefined {
  try {
    const value = Deno.env.get(name);
    return value === "" ? undefined : value;
  } catch (error) {
    // Without --allow-env the variable simply does not apply.
    if (error instanceof Deno.errors.NotCapable) return undefined;
    throw error;
  }
}

import assert from "node:assert/strict";
import { abortableDelay } from "../src/_retry.ts";
import { pathExists } from "../tools/brokers/_process.ts";
import { waitFor } from "./_bridge.ts";
import { testBrokers } from "./_brokers.ts";
import { collect } from "./_process.ts";

const REPO_ROOT = new URL("../", import.meta.url).pathname;

// The demo starts brokers of its own; it needs what the test brokers need.
const brokers = await testBrokers();

Deno.test({
  name:
    "deno task demo tallies every topic, and one SIGINT stops every process it started",
  ignore: brokers === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["task", "demo"],
      cwd: REPO_ROOT,
      env: { DEMO_RATE: "50", NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = collect(child.stdout);
    const errors = collect(child.stderr);
    const diagnostics = () =>
      `stdout:\n${output.text}\nstderr:\n${errors.text}`;
    let started: Process[] = [];
    try {
      // Routes, default topic and dead letters all receive records.
      await waitFor("a tally with records in every topic", () => {
        const tally = lastTally(output.text);
        return tally !== undefined &&
          ["dx.telemetry", "dx.alerts", "dx.unclassified", "dx.deadletter"]
            .every((topic) => (tally.get(topic) ?? 0) > 0);
      }, 180_000).catch((error) => {
        throw new Error(`${error.message}\n${diagnostics()}`);
      });

      started = await descendants(child.pid);
      const names = started.map((process) => process.command);
      assert.ok(names.includes("mosquitto"), names.join(", "));
      assert.ok(names.includes("java"), names.join(", "));
      // The demo itself and the bridge, under `deno task`.
      assert.ok(
        names.filter((name) => name === "deno").length >= 2,
        names.join(", "),
      );
      const dataDirs = output.text.match(/^ {2}data: (\S+) (\S+)$/m);
      assert.ok(dataDirs, diagnostics());

      // Only to `deno task`, as a script would: the demo must stop the rest.
      child.kill("SIGINT");
      const status = await exitOrKill(child, 60_000, started);
      await Promise.all([output.done, errors.done]);
      assert.equal(status.code, 0, diagnostics());
      assert.match(output.text, /^tally: published=\d+ dx\.telemetry=\d+/m);
      assert.match(output.text, /bridge \(exit code 0\)/);

      const left = await stillRunning(started);
      assert.deepEqual(left, [], "processes left behind");
      for (const dir of dataDirs.slice(1)) {
        assert.equal(await pathExists(dir), false, `${dir} was not deleted`);
      }
    } finally {
      // After a failure: kill the demo and every process it started.
      if (await isRunning(child.pid)) {
        if (started.length === 0) started = await descendants(child.pid);
        child.kill("SIGKILL");
      }
      for (const process of await stillRunning(started)) {
        Deno.kill(process.pid, "SIGKILL");
      }
      await child.status;
      await Promise.all([output.done, errors.done]);
    }
  },
});

/** A process as `ps` shows it: its start time tells it from a reused pid. */
interface Process {
  pid: number;
  ppid: number;
  started: string;
  command: string;
}

async function processes(): Promise<Process[]> {
  const output = await new Deno.Command("ps", {
    args: ["-e", "-o", "pid=,ppid=,lstart=,comm="],
    stdout: "piped",
  }).output();
  const rows = new TextDecoder().decode(output.stdout).split("\n");
  return rows.flatMap((row) => {
    const match = row.match(
      /^\s*(\d+)\s+(\d+)\s+(\S+ \S+ +\d+ [\d:]+ \d+)\s+(.+)$/,
    );
    if (!match) return [];
    const [, pid, ppid, started, command] = match;
    return [{ pid: +pid, ppid: +ppid, started, command: command.trim() }];
  });
}

async function descendants(root: number): Promise<Process[]> {
  const all = await processes();
  const found: Process[] = [];
  const parents = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const process of all) {
      if (parents.has(process.ppid) && !parents.has(process.pid)) {
        parents.add(process.pid);
        found.push(process);
        grew = true;
      }
    }
  }
  return found;
}

async function stillRunning(list: Process[]): Promise<Process[]> {
  const now = await processes();
  return list.filter((process) =>
    now.some((other) =>
      other.pid === process.pid && other.started === process.started
    )
  );
}

async function isRunning(pid: number): Promise<boolean> {
  return (await processes()).some((process) => process.pid === pid);
}

/**
 * Waits for the child to exit. One still running after `timeoutMs` is
 * killed, with everything it started, and the test fails: a safety net,
 * not a measure.
 */
async function exitOrKill(
  child: Deno.ChildProcess,
  timeoutMs: number,
  started: Process[],
): Promise<Deno.CommandStatus> {
  const timeout = new AbortController();
  const late = abortableDelay(timeoutMs, timeout.signal).then(() => true)
    .catch(() => false);
  const timedOut = await Promise.race([child.status.then(() => false), late]);
  timeout.abort();
  if (timedOut) {
    for (const process of await stillRunning(started)) {
      Deno.kill(process.pid, "SIGKILL");
    }
    child.kill("SIGKILL");
    throw new Error(`the demo did not exit within ${timeoutMs} ms of SIGINT`);
  }
  return await child.status;
}

/** The counts of the last `tally:` line. */
function lastTally(text: string): Map<string, number> | undefined {
  const lines = text.split("\n").filter((line) => line.startsWith("tally: "));
  const last = lines.at(-1);
  if (last === undefined) return undefined;
  return new Map(
    [...last.matchAll(/(\S+)=(\d+)/g)].map(([, name, n]) => [name, +n]),
  );
}

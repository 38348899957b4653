import assert from "node:assert/strict";
import { main, parseArgs } from "./main.ts";

/** Runs `main` and returns its exit code and what it wrote to the console. */
async function run(argv: string[]) {
  const output: string[] = [];
  const { log, error } = console;
  console.log = (...args: unknown[]) => output.push(args.join(" "));
  console.error = console.log;
  try {
    return { code: await main(argv), output: output.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("dx-bridge --help lists every flag and exits 0", async () => {
  const { code, output } = await run(["--help"]);
  assert.equal(code, 0);
  for (
    const flag of ["--config", "--check-config", "--print-config", "--help"]
  ) {
    assert.ok(output.includes(flag), `help mentions ${flag}`);
  }
});

Deno.test("dx-bridge --help states the exit codes and what a second signal does", async () => {
  const { code, output } = await run(["--help"]);
  assert.equal(code, 0);
  assert.match(
    output,
    /0 clean stop, 1 failure at run time, 2 bad configuration/,
  );
  // tests/cli_test.ts checks the behaviour itself against real brokers.
  assert.match(
    output,
    /A second signal, a second or more\s+after the first, exits at once/,
  );
});

Deno.test("dx-bridge exits 2 with one line per problem for a bad config", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/bad.yaml`;
    await Deno.writeTextFile(path, "kafka:\n  brokers: []\n  lingerMs: -1\n");
    const { code, output } = await run(["--config", path]);
    assert.equal(code, 2);
    assert.match(output, /^ {2}kafka\.brokers: .*$/m);
    assert.match(output, /^ {2}kafka\.lingerMs: .*given -1$/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dx-bridge --check-config validates without connecting", async () => {
  const { code, output } = await run(["--check-config"]);
  assert.equal(code, 0);
  assert.equal(output, "configuration ok");
});

Deno.test("dx-bridge rejects unknown arguments with exit 2", async () => {
  const { code, output } = await run(["--verbose"]);
  assert.equal(code, 2);
  assert.match(output, /Unknown argument "--verbose"/);
  assert.deepEqual(parseArgs(["--config=a.yaml"]).config, "a.yaml");
  assert.throws(() => parseArgs(["--config"]), TypeError);
});

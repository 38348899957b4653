/**
 * The core of the package stays edge-neutral: the CloudEvents conversion and
 * routing, `combine`, the mock sources, the sinks and the envelope and error
 * types run on any JavaScript runtime with Web APIs, because they import
 * nothing from `node:*`, use no `Deno.*` and open no socket.
 *
 * Four checks, each naming the file at fault when it fails:
 * - the import graph of each core entry point (from `deno info --json`) holds
 *   only our own files under `src/` and the npm packages of
 *   {@linkcode PURE_NPM_PACKAGES}: no `node:` module, no other npm package,
 *   no remote module;
 * - no core source mentions `Deno` outside comments and strings, and the core
 *   type-checks with the Web worker library only, so `Deno`, `process`,
 *   `Buffer` and `require` are unknown names there;
 * - `examples/core_route_offline.ts` runs with `deno run` and no permission
 *   at all;
 * - the same example, and each core entry point, bundled to plain JavaScript
 *   for the browser platform, run under Node.js 20 or later and print what
 *   Deno prints.
 *
 * Node.js is looked up as `node` on the PATH (or env `DX_NODE`); without it
 * the last check is skipped with one line on stderr, unless
 * `DX_REQUIRE_BROKERS=1` (set by CI, which wants every external tool), which
 * makes that a failure.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type CommandResult, runCommand } from "./_process.ts";

const ROOT = new URL("../", import.meta.url);
const ROOT_PATH = decodeURIComponent(ROOT.pathname);
const SRC_URL = new URL("src/", ROOT).href;

/** The `exports` of deno.json that make up the core. */
const CORE_EXPORTS = ["./cloudevents", "./streams", "./sinks"] as const;

/** Core modules that are not entry points themselves but are re-exported. */
const CORE_MODULES = ["src/envelope.ts", "src/errors.ts"] as const;

/**
 * The npm packages the core may import. Each has no dependencies of its own
 * (checked below) and was read for Node and Deno APIs:
 * - `@logtape/logtape`, the logging of the library, is written to run on
 *   Deno, Node, Bun, browsers and edge functions; its one Node-specific file
 *   (`node:util`, for `inspect`) is selected by the `node` export condition
 *   only, and Deno's `inspect` is used only after checking that `Deno`
 *   exists.
 * - `cockatiel` computes backoff delays (for `mockSource`, through
 *   `src/_retry.ts`); it is plain ECMAScript whose only Node API,
 *   `process.hrtime`, is a fallback for when `performance` is missing.
 */
const PURE_NPM_PACKAGES: ReadonlySet<string> = new Set([
  "@logtape/logtape",
  "cockatiel",
]);

/** The example that must run anywhere; see its header. */
const CORE_EXAMPLE = "examples/core_route_offline.ts";

const denoConfig = JSON.parse(
  await Deno.readTextFile(new URL("deno.json", ROOT)),
) as { exports: Record<string, string>; imports?: Record<string, string> };

/** The core entry points, as paths relative to the repository root. */
const coreEntries: string[] = CORE_EXPORTS.map((name) => {
  const path = denoConfig.exports[name];
  assert.ok(path, `deno.json has no export ${name}`);
  return path.replace(/^\.\//, "");
});

/** Runs a command from the repository root and collects its output. */
function run(
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<CommandResult> {
  return runCommand(command, {
    args,
    cwd: ROOT_PATH,
    env: { NO_COLOR: "1", ...env },
  });
}

/** Fails with the command's stderr unless it exited with 0. */
function assertSucceeded(result: CommandResult, what: string): void {
  assert.equal(
    result.code,
    0,
    `${what} exited with ${result.code}:\n${result.stderr}${result.stdout}`,
  );
}

interface GraphModule {
  kind: string;
  specifier: string;
  npmPackage?: string;
  error?: string;
  dependencies?: {
    specifier: string;
    code?: { specifier: string };
    type?: { specifier: string };
  }[];
}

interface ModuleGraph {
  modules: GraphModule[];
  npmPackages: Record<string, { name: string; dependencies: string[] }>;
}

/** The module graph of one entry point, type-only imports included. */
async function moduleGraph(entry: string): Promise<ModuleGraph> {
  const result = await run(Deno.execPath(), ["info", "--json", entry]);
  assertSucceeded(result, `deno info ${entry}`);
  return JSON.parse(result.stdout) as ModuleGraph;
}

/** The modules of `graph` that import `specifier`, for error messages. */
function importersOf(graph: ModuleGraph, specifier: string): string[] {
  return graph.modules
    .filter((module) =>
      module.dependencies?.some((dependency) =>
        dependency.code?.specifier === specifier ||
        dependency.type?.specifier === specifier
      )
    )
    .map((module) => relative(module.specifier));
}

function relative(specifier: string): string {
  return specifier.startsWith(ROOT.href)
    ? specifier.slice(ROOT.href.length)
    : specifier;
}

/**
 * What is wrong with the graph of a core entry point: one line per module
 * that is not our own code under `src/` or an allowed npm package.
 */
function graphViolations(graph: ModuleGraph): string[] {
  const violations: string[] = [];
  for (const module of graph.modules) {
    const from = () => `(imported by ${importersOf(graph, module.specifier)})`;
    if (module.error) {
      violations.push(`${module.specifier} does not resolve: ${module.error}`);
    } else if (module.kind === "node") {
      violations.push(`${module.specifier} is a Node built-in ${from()}`);
    } else if (module.kind === "npm") {
      const id = module.npmPackage ?? module.specifier;
      const name = id.replace(/@[^@/]+$/, "");
      if (!PURE_NPM_PACKAGES.has(name)) {
        violations.push(
          `npm package ${id} is not in PURE_NPM_PACKAGES ${from()}`,
        );
      } else if (graph.npmPackages[id]?.dependencies.length) {
        violations.push(
          `npm package ${id} now has dependencies (${
            graph.npmPackages[id].dependencies.join(", ")
          }); review them before allowing it again`,
        );
      }
    } else if (!module.specifier.startsWith(SRC_URL)) {
      violations.push(
        `${relative(module.specifier)} is outside src/ ${from()}`,
      );
    }
  }
  return violations;
}

/**
 * The source with comments, string and template text and regular expression
 * literals blanked out (newlines kept), so that what remains is code.
 * Expressions inside `${...}` of a template stay code.
 */
function codeOnly(source: string): string {
  const out = source.split("");
  const blank = (from: number, to: number) => {
    for (let i = from; i < to; i++) if (out[i] !== "\n") out[i] = " ";
  };
  // Braces open in template substitutions, innermost last.
  const templateDepth: number[] = [];
  let braces = 0;
  let lastSignificant = "";
  let i = 0;
  const readTemplate = (start: number): number => {
    // From just after "`" or "}" of a substitution, to after "`" or "${".
    let j = start;
    while (j < source.length) {
      if (source[j] === "\\") j += 2;
      else if (source[j] === "`") {
        blank(start, j);
        return j + 1;
      } else if (source[j] === "$" && source[j + 1] === "{") {
        blank(start, j);
        templateDepth.push(braces);
        braces++;
        return j + 2;
      } else j++;
    }
    blank(start, j);
    return j;
  };
  while (i < source.length) {
    const c = source[i];
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      const end = source.indexOf("\n", i);
      const stop = end === -1 ? source.length : end;
      blank(i, stop);
      i = stop;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end === -1 ? source.length : end + 2;
      blank(i, stop);
      i = stop;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < source.length && source[j] !== c && source[j] !== "\n") {
        j += source[j] === "\\" ? 2 : 1;
      }
      blank(i + 1, j);
      i = j + 1;
      lastSignificant = c;
    } else if (c === "`") {
      i = readTemplate(i + 1);
      lastSignificant = "`";
    } else if (c === "{") {
      braces++;
      i++;
      lastSignificant = c;
    } else if (c === "}") {
      braces--;
      if (templateDepth.at(-1) === braces) {
        templateDepth.pop();
        i = readTemplate(i + 1);
        lastSignificant = "`";
      } else {
        i++;
        lastSignificant = c;
      }
    } else if (
      c === "/" &&
      (lastSignificant === "" ||
        "(,=:[!&|?{};+-*%<>~^".includes(lastSignificant))
    ) {
      // A regular expression literal: up to the closing "/" outside a class.
      let j = i + 1;
      let inClass = false;
      while (j < source.length && source[j] !== "\n") {
        if (source[j] === "\\") j++;
        else if (source[j] === "[") inClass = true;
        else if (source[j] === "]") inClass = false;
        else if (source[j] === "/" && !inClass) break;
        j++;
      }
      blank(i + 1, j);
      i = j + 1;
      lastSignificant = "/";
    } else {
      if (!/\s/.test(c)) lastSignificant = c;
      i++;
    }
  }
  return out.join("");
}

/** `file:line: text` for each use of `Deno` in the code of a source. */
function denoUses(path: string, source: string): string[] {
  const uses: string[] = [];
  const lines = source.split("\n");
  codeOnly(source).split("\n").forEach((line, index) => {
    if (/(?<![\w$])Deno\b/.test(line)) {
      uses.push(`${path}:${index + 1}: ${lines[index].trim()}`);
    }
  });
  return uses;
}

/** The local source files of the core graphs, as repository paths. */
async function coreSources(): Promise<string[]> {
  const files = new Set<string>();
  for (const entry of [...coreEntries, ...CORE_MODULES]) {
    const graph = await moduleGraph(entry);
    for (const module of graph.modules) {
      if (module.specifier.startsWith(SRC_URL)) {
        files.add(relative(module.specifier));
      }
    }
  }
  return [...files].sort();
}

/** Where Node.js is, or undefined. */
async function findNode(): Promise<string | undefined> {
  const node = Deno.env.get("DX_NODE") || "node";
  try {
    const result = await run(node, ["--version"]);
    return result.code === 0 ? node : undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

const node = await findNode();
if (!node) {
  const message =
    "edge_neutral_test: Node.js not found (install Node.js 20 or later, or set DX_NODE); the Node.js run is skipped";
  if (Deno.env.get("DX_REQUIRE_BROKERS") === "1") {
    throw new Error(`${message}, but DX_REQUIRE_BROKERS=1 requires it`);
  }
  console.error(message);
}

Deno.test("the core entry points import only src/ files and pure npm packages", async () => {
  assert.ok(coreEntries.length > 0);
  for (const entry of [...coreEntries, ...CORE_MODULES]) {
    const violations = graphViolations(await moduleGraph(entry));
    assert.deepEqual(
      violations,
      [],
      `${entry} is not edge-neutral:\n${violations.join("\n")}`,
    );
  }
});

Deno.test("the core sources use no Deno API", async () => {
  const sources = await coreSources();
  assert.ok(sources.includes("src/cloudevents/event.ts"));
  const uses: string[] = [];
  for (const path of sources) {
    uses.push(...denoUses(path, await Deno.readTextFile(new URL(path, ROOT))));
  }
  assert.deepEqual(uses, [], `Deno used in the core:\n${uses.join("\n")}`);
});

Deno.test("denoUses() sees code, not comments or strings", () => {
  const source = [
    "// Deno.env in a comment",
    "/* Deno.exit() */ const a = 'Deno.args';",
    'const b = "Deno" in globalThis;',
    "const c = `${Deno.pid} Deno.cwd`;",
    "const d = /Deno\\./.test(a);",
    "const e = globalThis.Deno;",
    "const f = Deno.env.get('X');",
  ].join("\n");
  assert.deepEqual(denoUses("x.ts", source).map((use) => use.split(":")[1]), [
    "4",
    "6",
    "7",
  ]);
});

Deno.test("the core type-checks without the Deno and Node globals", async () => {
  // A configuration of our own, beside the real one: the same imports and
  // lock file, but only the ECMAScript and Web worker libraries.
  const dir = await Deno.makeTempDir({ prefix: "dx_edge_" });
  try {
    const config = {
      imports: denoConfig.imports ?? {},
      compilerOptions: { lib: ["esnext", "webworker"] },
      lock: { path: `${ROOT_PATH}deno.lock`, frozen: true },
    };
    const configPath = `${dir}/deno.json`;
    await Deno.writeTextFile(configPath, JSON.stringify(config));
    const result = await run(Deno.execPath(), [
      "check",
      "--config",
      configPath,
      ...[...coreEntries, ...CORE_MODULES].map((path) => ROOT_PATH + path),
    ]);
    assertSucceeded(result, "deno check of the core without Deno types");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(`${CORE_EXAMPLE} runs with no permission`, async () => {
  const result = await run(Deno.execPath(), [
    "run",
    "--no-prompt",
    CORE_EXAMPLE,
  ]);
  assertSucceeded(result, `deno run ${CORE_EXAMPLE}`);
  assert.match(result.stdout, /^dx\.deadletter \d+$/m);
  assert.match(
    result.stdout,
    /^routed 30 messages, \d+ bytes of record values\n$/m,
  );
});

Deno.test({
  name: "the core bundled to JavaScript runs under Node.js as under Deno",
  ignore: !node,
  async fn() {
    const version = (await run(node!, ["--version"])).stdout.trim();
    const major = Number(/^v(\d+)\./.exec(version)?.[1]);
    assert.ok(major >= 20, `Node.js 20 or later is needed; found ${version}`);

    const dir = await Deno.makeTempDir({ prefix: "dx_edge_" });
    try {
      const bundle = async (entry: string, output: string) => {
        const result = await run(Deno.execPath(), [
          "bundle",
          "--platform",
          "browser",
          "--output",
          output,
          entry,
        ]);
        assertSucceeded(result, `deno bundle ${entry}`);
      };

      // The example: the same output from Node.js as from Deno.
      const exampleBundle = `${dir}/core_route_offline.mjs`;
      await bundle(CORE_EXAMPLE, exampleBundle);
      const inDeno = await run(Deno.execPath(), [
        "run",
        "--no-prompt",
        CORE_EXAMPLE,
      ]);
      assertSucceeded(inDeno, `deno run ${CORE_EXAMPLE}`);
      const inNode = await run(node!, [exampleBundle]);
      assertSucceeded(inNode, `node ${exampleBundle}`);
      assert.equal(inNode.stdout, inDeno.stdout);

      // Each entry point loads under Node.js and exports what it does in Deno.
      for (const entry of coreEntries) {
        const output = `${dir}/${entry.replaceAll("/", "_")}.mjs`;
        await bundle(entry, output);
        const loaded = await run(node!, [
          "--input-type=module",
          "--eval",
          `const m = await import(${JSON.stringify(`file://${output}`)});` +
          "console.log(JSON.stringify(Object.keys(m).sort()));",
        ]);
        assertSucceeded(loaded, `node importing the bundle of ${entry}`);
        const module = await import(new URL(entry, ROOT).href);
        assert.deepEqual(
          JSON.parse(loaded.stdout),
          Object.keys(module).sort(),
          `the bundle of ${entry} exports other names under Node.js`,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

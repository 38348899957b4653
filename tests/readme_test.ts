import assert from "node:assert/strict";
import { ENV_FIELDS } from "../src/bridge/mod.ts";

Deno.test("the README's configuration reference lists every field of the schema", async () => {
  const readme = await Deno.readTextFile(
    new URL("../README.md", import.meta.url),
  );
  const documented = new Set<string>();
  for (const line of readme.split("\n")) {
    const cell = /^\| `([a-zA-Z.[\]]+)`(?: \/ (`[^|]+))? +\|/.exec(line);
    if (!cell) continue;
    const [, first, more] = cell;
    documented.add(first.replace("[]", ""));
    // `mqtt.tls.ca` / `.cert` / `.key`: siblings written as suffixes.
    const parent = first.slice(0, first.lastIndexOf("."));
    for (const suffix of more?.match(/`\.([a-zA-Z]+)`/g) ?? []) {
      documented.add(`${parent}.${suffix.slice(2, -1)}`);
    }
  }
  const missing = Object.keys(ENV_FIELDS).filter((path) =>
    !documented.has(path)
  );
  assert.deepEqual(missing, [], "fields missing from the README table");
});

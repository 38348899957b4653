import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import {
  CONFIG_FIELDS,
  type ConfigField,
  envName,
} from "../src/bridge/config.ts";

const HEADER = [
  "Field",
  "Type",
  "Default",
  "Example",
  "Environment",
  "Meaning",
];

/** A value as it is written in YAML: a string bare, anything else as JSON. */
function yamlText(value: unknown): string {
  if (typeof value === "string") return value;
  // On one line, with a space after each comma and colon.
  return JSON.stringify(value, null, 1).replace(/\n\s*/g, " ")
    .replace(/([[{]) /g, "$1").replace(/ ([\]}])/g, "$1");
}

/** The cells of a field's row in the README, as the schema says. */
function expectedCells(field: ConfigField): string[] {
  const given = field.default;
  const defaultText = given === "unset"
    ? "none"
    : given === "required"
    ? field.section ? `(required in \`${field.section}\`)` : "(required)"
    : "rule" in given
    ? `\`${given.rule}\``
    : `\`${yamlText(given.value)}\``;
  const listPath = field.path.split("[]")[0];
  const env = field.env === undefined
    ? `in \`${envName(listPath)}\``
    : field.envKind === "list"
    ? `\`${field.env}\` (comma-separated)`
    : field.envKind === "json"
    ? `\`${field.env}\` (JSON)`
    : `\`${field.env}\``;
  return [
    `\`${field.path}\``,
    field.type,
    defaultText,
    `\`${yamlText(field.example)}\``,
    env,
    field.description,
  ];
}

/** A Markdown table row; `|` inside a cell is escaped. */
function row(cells: readonly string[]): string {
  return `| ${cells.map((cell) => cell.replaceAll("|", "\\|")).join(" | ")} |`;
}

/** The cells of a Markdown table row, unescaped and trimmed. */
function cellsOf(line: string): string[] {
  return line.trim().replace(/^\|/, "").replace(/\|$/, "")
    .split(/(?<!\\)\|/).map((cell) => cell.trim().replaceAll("\\|", "|"));
}

/** The rows of the configuration table by field path; none without it. */
async function readmeRows(): Promise<Map<string, string[]> | undefined> {
  const readme = await Deno.readTextFile(
    new URL("../README.md", import.meta.url),
  );
  const lines = readme.split("\n");
  const start = lines.findIndex((line) =>
    line.startsWith("|") &&
    JSON.stringify(cellsOf(line)) === JSON.stringify(HEADER)
  );
  if (start < 0) return undefined;
  const rows = new Map<string, string[]>();
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    const cells = cellsOf(line);
    rows.set(cells[0].replace(/^`|`$/g, ""), cells);
  }
  return rows;
}

Deno.test("the README's configuration reference has one row per schema field, as the schema describes it", async () => {
  const rows = await readmeRows() ?? new Map<string, string[]>();
  const problems: string[] = rows.size > 0
    ? []
    : [`no table with the columns ${HEADER.join(", ")} in README.md`];
  for (const field of CONFIG_FIELDS) {
    const expected = expectedCells(field);
    const actual = rows.get(field.path);
    if (actual === undefined) {
      problems.push(`no row for ${field.path}; expected\n${row(expected)}`);
      continue;
    }
    // The type, the default, the example, the variable and the meaning.
    const differ = HEADER.filter((_, i) => actual[i] !== expected[i]);
    if (differ.length > 0) {
      problems.push(
        `the row of ${field.path} differs in ${differ.join(", ")}; expected\n${
          row(expected)
        }\ngot\n${row(actual)}`,
      );
    }
  }
  const known = new Set(CONFIG_FIELDS.map((field) => field.path));
  for (const path of rows.keys()) {
    if (!known.has(path)) problems.push(`the row ${path} names no field`);
  }
  assert.deepEqual(
    problems,
    [],
    `${problems.join("\n\n")}\n\nThe table as the schema describes it ` +
      "(paste it into README.md, then run deno fmt README.md):\n\n" +
      [
        row(HEADER),
        row(HEADER.map(() => "-")),
        ...CONFIG_FIELDS.map((field) => row(expectedCells(field))),
      ].join("\n"),
  );
});

Deno.test("every example in the README's configuration reference is valid for its field", async () => {
  const rows = await readmeRows();
  assert.ok(
    rows,
    `no table with the columns ${HEADER.join(", ")} in README.md`,
  );
  const fields = new Map(CONFIG_FIELDS.map((field) => [field.path, field]));
  const example = HEADER.indexOf("Example");
  const problems: string[] = [];
  for (const [path, cells] of rows) {
    const field = fields.get(path);
    const text = /^`(.*)`$/.exec(cells[example])?.[1];
    if (field === undefined) continue;
    if (text === undefined) {
      problems.push(`${path}: the example is not one code span`);
      continue;
    }
    const value: unknown = parseYaml(text);
    const errors = field.check(value);
    if (errors.length > 0) {
      problems.push(
        `${path}: example ${text} is invalid: ${errors.join("; ")}`,
      );
    }
  }
  assert.deepEqual(problems, []);
});

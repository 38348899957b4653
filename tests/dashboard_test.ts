/**
 * The Grafana dashboard in examples/ queries only metrics that
 * `BridgeMetrics` exposes, and its queries parse as PromQL.
 *
 * @module
 */
import assert from "node:assert/strict";
import { BridgeMetrics } from "../src/metrics/mod.ts";
import { promtoolGate, runPromtool } from "../src/metrics/_test_helpers.ts";

const DASHBOARD_URL = new URL(
  "../examples/grafana_dashboard.json",
  import.meta.url,
);

/** A query of the dashboard and where it is. */
interface Query {
  /** Where: the panel title and refId, or the variable name. */
  where: string;
  /** The PromQL expression, or a Grafana `label_values(...)` query. */
  expr: string;
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function list(value: unknown): Json[] {
  return Array.isArray(value) ? value.filter(isObject) : [];
}

async function loadDashboard(): Promise<Json> {
  const parsed: unknown = JSON.parse(await Deno.readTextFile(DASHBOARD_URL));
  assert.ok(isObject(parsed), "the dashboard is a JSON object");
  return parsed;
}

/** Every panel, also those inside collapsed rows. */
function panelsOf(container: Json): Json[] {
  return list(container.panels).flatMap((panel) => [
    panel,
    ...panelsOf(panel),
  ]);
}

/** Every query of the dashboard: panel targets and variable queries. */
function queriesOf(dashboard: Json): Query[] {
  const queries: Query[] = [];
  for (const panel of panelsOf(dashboard)) {
    for (const target of list(panel.targets)) {
      if (typeof target.expr !== "string") continue;
      queries.push({
        where: `panel "${panel.title}" ${target.refId}`,
        expr: target.expr,
      });
    }
  }
  const templating = isObject(dashboard.templating) ? dashboard.templating : {};
  for (const variable of list(templating.list)) {
    if (variable.type !== "query") continue;
    const query = isObject(variable.query)
      ? variable.query.query
      : variable.query;
    if (typeof query === "string") {
      queries.push({ where: `variable $${variable.name}`, expr: query });
    }
  }
  return queries;
}

// Words of PromQL that look like metric names but are not.
const KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "bool",
  "offset",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "inf",
  "nan",
]);

/**
 * The metric names a PromQL expression (or a Grafana `label_values(metric,
 * label)` query) selects. Functions and aggregations are followed by `(`;
 * label names sit inside `{}` or grouping clauses; durations inside `[]`.
 */
function metricNamesOf(expr: string): string[] {
  const labelValues = /^\s*label_values\s*\(\s*(.*?)\s*(?:,\s*\w+\s*)?\)\s*$/s
    .exec(expr);
  const source = (labelValues ? labelValues[1] : expr)
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, " ")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(
      /\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g,
      " ",
    )
    .replace(/\$\{?\w+\}?/g, " ")
    .replace(
      /(?<![\w:.])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?(?![\w:])/g,
      " ",
    );
  const names = new Set<string>();
  for (const match of source.matchAll(/[a-zA-Z_:][\w:]*/g)) {
    const after = source.slice(match.index + match[0].length);
    if (/^\s*\(/.test(after)) continue; // a function or an aggregation
    if (KEYWORDS.has(match[0].toLowerCase())) continue;
    names.add(match[0]);
  }
  return [...names];
}

/** The metric families a registry exposes: name and type. */
async function familiesOf(
  metrics: BridgeMetrics,
): Promise<Map<string, string>> {
  const families = new Map<string, string>();
  for (const line of (await metrics.metrics()).split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type !== null) families.set(type[1], type[2]);
  }
  return families;
}

/** The names a query can select: each family's, with the histogram series. */
function seriesNamesOf(families: ReadonlyMap<string, string>): Set<string> {
  const names = new Set<string>();
  for (const [name, type] of families) {
    names.add(name);
    if (type === "histogram") {
      for (const suffix of ["_bucket", "_sum", "_count"]) {
        names.add(name + suffix);
      }
    }
  }
  return names;
}

async function exposedNames(metrics: BridgeMetrics): Promise<Set<string>> {
  return seriesNamesOf(await familiesOf(metrics));
}

/** Each query's metric names that `known` does not have. */
function unknownMetrics(
  queries: readonly Query[],
  known: ReadonlySet<string>,
): string[] {
  return queries.flatMap((query) =>
    metricNamesOf(query.expr)
      .filter((name) => !known.has(name))
      .map((name) => `${name} (${query.where})`)
  );
}

Deno.test("metricNamesOf() reads the metric names out of PromQL", () => {
  const cases: Array<[string, string[]]> = [
    [
      'sum by (direction, route) (rate(dx_messages_delivered_total{instance=~"$instance", route!="x_total"}[$__rate_interval]))',
      ["dx_messages_delivered_total"],
    ],
    [
      "histogram_quantile(0.99, sum by (le) (rate(dx_delivery_latency_seconds_bucket[5m])))",
      ["dx_delivery_latency_seconds_bucket"],
    ],
    [
      "sum(rate(a_sum[1m])) / on (job) group_left (x) sum(rate(a_count[1m] offset 1h)) > bool 1e3",
      ["a_sum", "a_count"],
    ],
    ["max(up) and on() vector(1) or absent(dx_x)", ["up", "dx_x"]],
    ["sum(dx_a) without (instance) * 2", ["dx_a"]],
    ["label_values(dx_messages_received_total, instance)", [
      "dx_messages_received_total",
    ]],
    ['label_values(dx_b{job="x"}, route)', ["dx_b"]],
  ];
  for (const [expr, names] of cases) {
    assert.deepEqual(metricNamesOf(expr).sort(), names.sort(), expr);
  }
});

Deno.test("The dashboard check reports a panel that queries a metric that does not exist", async () => {
  const known = await exposedNames(new BridgeMetrics({ routes: [] }));
  const dashboard = {
    panels: [{
      type: "row",
      title: "Row",
      panels: [{
        title: "Typo",
        targets: [{
          refId: "A",
          expr: "sum(rate(dx_messages_recieved_total[5m]))",
        }],
      }],
    }, {
      title: "Fine",
      targets: [{ refId: "A", expr: "sum(dx_messages_in_flight)" }],
    }],
    templating: {
      list: [{
        type: "query",
        name: "instance",
        query: { query: "label_values(dx_nonexistent, instance)" },
      }],
    },
  };

  assert.deepEqual(unknownMetrics(queriesOf(dashboard), known), [
    'dx_messages_recieved_total (panel "Typo" A)',
    "dx_nonexistent (variable $instance)",
  ]);
});

Deno.test("Every metric the Grafana dashboard queries exists in BridgeMetrics", async () => {
  const dashboard = await loadDashboard();
  const queries = queriesOf(dashboard);
  const known = await exposedNames(
    new BridgeMetrics({ routes: ["telemetry"] }),
  );

  assert.ok(queries.length >= 10, `${queries.length} queries found`);
  assert.deepEqual(unknownMetrics(queries, known), []);
});

Deno.test("The Grafana dashboard shows every dx_ metric", async () => {
  const queries = queriesOf(await loadDashboard());
  const used = new Set(queries.flatMap((query) => metricNamesOf(query.expr)));
  const families = await familiesOf(new BridgeMetrics({ routes: [] }));

  const unused = [...families.keys()].filter((name) =>
    ![...seriesNamesOf(new Map([[name, families.get(name)!]]))]
      .some((series) => used.has(series))
  );
  assert.ok(families.size >= 9);
  assert.deepEqual(unused, []);
});

Deno.test("The Grafana dashboard's panels have unique ids, a data source and a place", async () => {
  const dashboard = await loadDashboard();
  const panels = panelsOf(dashboard);
  const ids = panels.map((panel) => panel.id);

  assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
  for (const panel of panels) {
    assert.ok(typeof panel.title === "string" && panel.title !== "");
    assert.ok(isObject(panel.gridPos), `${panel.title} has a gridPos`);
    if (panel.type === "row") continue;
    assert.deepEqual(panel.datasource, {
      type: "prometheus",
      uid: "${datasource}",
    }, `${panel.title} uses the data source variable`);
    assert.ok(list(panel.targets).length > 0, `${panel.title} has queries`);
  }
});

const promtool = promtoolGate("the PromQL syntax check of the dashboard");

Deno.test({
  name: "promtool parses every query of the Grafana dashboard",
  ignore: promtool.ignore,
  fn: async () => {
    promtool.assertAvailable();
    const queries = queriesOf(await loadDashboard())
      .filter((query) => !query.expr.startsWith("label_values"));
    // Grafana fills these in before Prometheus sees the query.
    const rules = queries.map((query, index) => ({
      record: `dashboard:query_${index}`,
      expr: query.expr
        .replaceAll("$__rate_interval", "5m")
        .replaceAll("$instance", ".*"),
    }));
    const file = JSON.stringify({ groups: [{ name: "dashboard", rules }] });

    const result = await runPromtool(["check", "rules", "/dev/stdin"], file);
    assert.equal(result.code, 0, result.output);
    assert.match(result.output, new RegExp(`SUCCESS: ${rules.length} rules`));
  },
});

/**
 * The bench's output: the table (stdout and Markdown) and the SVG chart.
 *
 * @module
 */
import {
  type BenchReport,
  type CaseResult,
  type OutageResult,
  P99_LIMIT_MS,
  type PhaseResult,
  type TargetResult,
} from "./_results.ts";

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

function sizeLabel(size: number): string {
  return size >= 1024 && size % 1024 === 0 ? `${size / 1024} KiB` : `${size} B`;
}

function latencyCell(phase: PhaseResult | null): string {
  const l = phase?.latency;
  return l ? `${l.p50} / ${l.p95} / ${l.p99}` : "-";
}

const HEADER = [
  "case",
  "payload",
  "messages",
  "msg/s",
  "p50 / p95 / p99 ms at max",
  "half rate msg/s",
  "p50 / p95 / p99 ms at half",
  "peak RSS MB",
  "lost",
  "dup",
  "latency measured",
];
const RIGHT = new Set([2, 3, 4, 5, 6, 7, 8, 9]);

function caseRow(c: CaseResult): string[] {
  if (c.error) {
    return [
      c.label,
      sizeLabel(c.size),
      "-",
      "error",
      c.error.split("\n")[0].slice(0, 60),
      "-",
      "-",
      "-",
      "-",
      "-",
      c.latencyMeasured,
    ];
  }
  const lost = (c.max?.lost ?? 0) + (c.half?.lost ?? 0);
  const dup = (c.max?.duplicates ?? 0) + (c.half?.duplicates ?? 0);
  return [
    c.label,
    sizeLabel(c.size),
    fmt(c.max?.messages ?? 0),
    c.max ? fmt(c.max.throughput) : "-",
    latencyCell(c.max),
    c.half?.offeredRate ? fmt(c.half.offeredRate) : "-",
    latencyCell(c.half),
    c.peakRssMb === null ? "n/a" : String(c.peakRssMb),
    String(lost),
    String(dup),
    c.latencyMeasured,
  ];
}

function table(header: string[], rows: string[][], right: Set<number>) {
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((row) => row[i].length))
  );
  const line = (cells: string[]) =>
    `| ${
      cells.map((cell, i) =>
        right.has(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i])
      ).join(" | ")
    } |`;
  const rule = `|${
    widths.map((w, i) =>
      right.has(i) ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2)
    )
      .join("|")
  }|`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}

/** The table of cases, Markdown, aligned for a terminal. */
export function casesTable(cases: CaseResult[]): string {
  return table(HEADER, cases.map(caseRow), RIGHT);
}

/** The outage case as a one-row table. */
export function outageTable(outage: OutageResult): string {
  const header = [
    "Kafka outage",
    "payload",
    "offered msg/s",
    "messages",
    "Kafka down s",
    "catch-up s",
    "RSS before MB",
    "RSS during MB",
    "peak RSS MB",
    "lost",
    "dup",
  ];
  const row = outage.error
    ? [
      "bridge, at-least-once",
      sizeLabel(outage.size),
      "-",
      "-",
      "-",
      "-",
      "-",
      "-",
      "-",
      "-",
      outage.error.split("\n")[0].slice(0, 60),
    ]
    : [
      "bridge, at-least-once",
      sizeLabel(outage.size),
      fmt(outage.offeredRate),
      fmt(outage.messages),
      outage.outageSeconds.toFixed(1),
      outage.catchUpSeconds.toFixed(1),
      String(outage.rssBeforeMb),
      String(outage.rssDuringMb),
      String(outage.peakRssMb),
      String(outage.lost),
      String(outage.duplicates),
    ];
  return table(header, [row], new Set([2, 3, 4, 5, 6, 7, 8, 9, 10]));
}

/** The targets with PASS or MISS. */
export function targetLines(targets: TargetResult[]): string[] {
  return targets.map((t) =>
    `- ${
      t.pass === null ? "n/a " : t.pass ? "PASS" : "MISS"
    } ${t.target}: ${t.measured}`
  );
}

/** The Markdown that the README's benchmark section shows. */
export function markdown(report: BenchReport, jsonName: string): string {
  const m = report.machine;
  const parts = [
    `Run of ${
      report.date.slice(0, 16).replace("T", " ")
    } UTC (${report.mode}, ${
      fmt(report.messagesPerCase)
    } messages per case at the maximum rate; the fixed rate runs about ${report.halfRateSeconds} s), ${report.durationSeconds} s in all.`,
    `Machine: ${m.cores} cores (${m.cpuModel}), ${
      fmt(m.memoryMb)
    } MB, ${m.os}; load average ${report.loadAverage.before} before, ${report.loadAverage.after} after.`,
    `Deno ${m.deno}, V8 ${m.v8}, TypeScript ${m.typescript}; Kafka ${m.kafka} (${m.java}), Mosquitto ${m.mosquitto}; ${
      Object.entries(m.clients).map(([name, version]) => `${name} ${version}`)
        .join(", ")
    }. Raw results: \`bench/results/${jsonName}\`.`,
    "",
    casesTable(report.cases),
    "",
  ];
  if (report.outage) parts.push(outageTable(report.outage), "");
  parts.push("Targets:", "", ...targetLines(report.targets), "");
  parts.push(
    "How to read it:",
    "",
    ...report.notes.map((note) => `- ${note}`),
    "",
  );
  return parts.join("\n");
}

const escapeXml = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * A bar chart, one row per case and payload size: throughput at the
 * maximum rate on the left, p99 latency at half that rate on the right.
 */
export function svgChart(report: BenchReport): string {
  const rows = report.cases.filter((c) => !c.error && c.max);
  const rowHeight = 22;
  const top = 58;
  const labelWidth = 330;
  const barWidth = 300;
  const gap = 150;
  const width = labelWidth + barWidth + gap + barWidth + 90;
  const height = top + rows.length * rowHeight + 44;
  const maxThroughput = Math.max(1, ...rows.map((c) => c.max!.throughput));
  const p99s = rows.map((c) => c.half?.latency?.p99 ?? 0);
  const maxP99 = Math.max(1, ...p99s);
  const colors: Record<number, string> = { 256: "#3b6ea8", 4096: "#d1843b" };
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${
      escapeXml(
        `dataexchange bench, ${
          report.date.slice(0, 16).replace("T", " ")
        } UTC (${report.mode}), ${report.machine.cores} cores, load ${report.loadAverage.before}`,
      )
    }</text>`,
    `<text x="${labelWidth}" y="46" font-weight="bold">messages per second, as fast as possible</text>`,
    `<text x="${
      labelWidth + barWidth + gap
    }" y="46" font-weight="bold">p99 latency (ms) at half that rate</text>`,
  ];
  rows.forEach((c, i) => {
    const y = top + i * rowHeight;
    const color = colors[c.size] ?? "#777777";
    const w1 = Math.max(1, c.max!.throughput / maxThroughput * barWidth);
    const p99 = p99s[i];
    const w2 = Math.max(1, p99 / maxP99 * barWidth);
    const x2 = labelWidth + barWidth + gap;
    out.push(
      `<text x="${labelWidth - 8}" y="${y + 14}" text-anchor="end">${
        escapeXml(`${c.label}, ${sizeLabel(c.size)}`)
      }</text>`,
      `<rect x="${labelWidth}" y="${y + 3}" width="${w1.toFixed(1)}" height="${
        rowHeight - 6
      }" fill="${color}"/>`,
      `<text x="${labelWidth + w1 + 4}" y="${y + 14}">${
        fmt(c.max!.throughput)
      }</text>`,
      `<rect x="${x2}" y="${y + 3}" width="${w2.toFixed(1)}" height="${
        rowHeight - 6
      }" fill="${color}" fill-opacity="0.7"/>`,
      `<text x="${x2 + w2 + 4}" y="${y + 14}">${
        c.half?.latency ? p99 : "-"
      }</text>`,
    );
  });
  // The target: p99 under 50 ms at half the maximum rate.
  if (maxP99 >= P99_LIMIT_MS) {
    const x = labelWidth + barWidth + gap + P99_LIMIT_MS / maxP99 * barWidth;
    out.push(
      `<line x1="${x.toFixed(1)}" y1="${top - 4}" x2="${x.toFixed(1)}" y2="${
        top + rows.length * rowHeight
      }" stroke="#c0392b" stroke-dasharray="4 3"/>`,
      `<text x="${x.toFixed(1)}" y="${
        top + rows.length * rowHeight + 12
      }" text-anchor="middle" fill="#c0392b">${P99_LIMIT_MS} ms</text>`,
    );
  }
  const legendY = top + rows.length * rowHeight + 28;
  out.push(
    `<rect x="${labelWidth}" y="${legendY - 10}" width="12" height="12" fill="${
      colors[256]
    }"/>`,
    `<text x="${labelWidth + 16}" y="${legendY}">256 B</text>`,
    `<rect x="${labelWidth + 70}" y="${
      legendY - 10
    }" width="12" height="12" fill="${colors[4096]}"/>`,
    `<text x="${labelWidth + 86}" y="${legendY}">4 KiB</text>`,
    `<text x="${labelWidth + 150}" y="${legendY}">${
      escapeXml("QoS 1; brokers, load and processes under test on one machine")
    }</text>`,
    "</svg>",
  );
  return out.join("\n") + "\n";
}

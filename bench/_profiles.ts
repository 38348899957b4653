/**
 * Summaries of V8 profiles: the functions with the most self time in a
 * `.cpuprofile`, and the constructors with the most shallow size in a
 * `.heapsnapshot`.
 *
 * @module
 */

/** One row of a profile summary. */
export interface ProfileEntry {
  name: string;
  /** Self time in ms (CPU) or shallow bytes (heap). */
  amount: number;
  /** Share of the whole, 0 to 1. */
  share: number;
  /** Samples (CPU) or objects (heap). */
  count: number;
}

interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: {
      functionName: string;
      url: string;
      lineNumber: number;
    };
    hitCount?: number;
  }>;
  startTime: number;
  endTime: number;
  samples?: number[];
}

/** Where a script URL belongs: an npm package, a file of ours, or Deno. */
export function origin(url: string): string {
  const npm = /registry\.npmjs\.org\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (npm) return `npm:${npm[1]}`;
  const ours = /\/((?:src|bench|tools)\/.+)$/.exec(url);
  if (ours) return ours[1];
  if (url.startsWith("ext:") || url.startsWith("node:")) {
    return url.split("/")[0];
  }
  return url === "" ? "(V8 / native)" : url;
}

/**
 * Self time per function and per origin (package or file).
 *
 * @param profile The parsed `.cpuprofile`.
 * @param top How many rows of each list.
 */
export function summarizeCpu(
  profile: CpuProfile,
  top = 15,
): { functions: ProfileEntry[]; origins: ProfileEntry[]; totalMs: number } {
  const totalMs = (profile.endTime - profile.startTime) / 1000;
  const hits = new Map<number, number>();
  if (profile.samples) {
    for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  }
  let samples = 0;
  const byFunction = new Map<string, number>();
  const byOrigin = new Map<string, number>();
  for (const node of profile.nodes) {
    const count = hits.get(node.id) ?? node.hitCount ?? 0;
    if (count === 0) continue;
    samples += count;
    const { functionName, url, lineNumber } = node.callFrame;
    const where = origin(url);
    const name = `${functionName || "(anonymous)"} ${where}${
      url ? `:${lineNumber + 1}` : ""
    }`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + count);
    byOrigin.set(where, (byOrigin.get(where) ?? 0) + count);
  }
  const msPerSample = samples > 0 ? totalMs / samples : 0;
  const rows = (map: Map<string, number>) =>
    [...map].sort((a, b) => b[1] - a[1]).slice(0, top).map((
      [name, count],
    ) => ({
      name,
      amount: Math.round(count * msPerSample),
      share: samples > 0 ? count / samples : 0,
      count,
    }));
  return {
    functions: rows(byFunction),
    origins: rows(byOrigin),
    totalMs: Math.round(totalMs),
  };
}

interface HeapSnapshot {
  snapshot: {
    meta: {
      node_fields: string[];
      node_types: [string[], ...unknown[]];
    };
  };
  nodes: number[];
  strings: string[];
}

/**
 * Shallow size per constructor (strings, arrays and code by type), as the
 * Summary view of DevTools groups them.
 *
 * @param snapshot The parsed `.heapsnapshot`.
 * @param top How many rows.
 */
export function summarizeHeap(
  snapshot: HeapSnapshot,
  top = 15,
): { entries: ProfileEntry[]; totalBytes: number } {
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const groups = new Map<string, { bytes: number; count: number }>();
  let totalBytes = 0;
  const nodes = snapshot.nodes;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt]];
    const size = nodes[i + sizeAt];
    totalBytes += size;
    const name = type === "object" || type === "closure" || type === "native"
      ? `${snapshot.strings[nodes[i + nameAt]]}${
        type === "object" ? "" : ` (${type})`
      }`
      : type === "hidden" || type === "array" || type === "synthetic"
      ? `(${type}) ${snapshot.strings[nodes[i + nameAt]]}`
      : `(${type})`;
    const group = groups.get(name) ?? { bytes: 0, count: 0 };
    group.bytes += size;
    group.count++;
    groups.set(name, group);
  }
  const entries = [...groups].sort((a, b) => b[1].bytes - a[1].bytes)
    .slice(0, top).map(([name, { bytes, count }]) => ({
      name,
      amount: bytes,
      share: totalBytes > 0 ? bytes / totalBytes : 0,
      count,
    }));
  return { entries, totalBytes };
}

/** Rows as a Markdown table. */
export function entriesTable(
  entries: ProfileEntry[],
  unit: "ms" | "MB",
): string {
  const amount = (entry: ProfileEntry) =>
    unit === "MB" ? (entry.amount / 1048576).toFixed(1) : String(entry.amount);
  const lines = [
    `| ${unit} | share | ${unit === "ms" ? "samples" : "objects"} | name |`,
    "| ---: | ---: | ---: | --- |",
    ...entries.map((entry) =>
      `| ${amount(entry)} | ${
        (entry.share * 100).toFixed(1)
      }% | ${entry.count} | ${entry.name.replace(/\|/g, "\\|").slice(0, 120)} |`
    ),
  ];
  return lines.join("\n");
}

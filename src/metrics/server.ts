/**
 * The HTTP endpoint operators point Prometheus and health probes at:
 * `/metrics`, `/healthz` and `/readyz`, served with `Deno.serve`.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { DataExchangeError } from "../errors.ts";
import type { BridgeMetrics, Readiness } from "./metrics.ts";

const logger = getLogger(["dataexchange", "metrics", "server"]);

/**
 * The content type of the Prometheus text format the endpoint serves.
 *
 * @example Serve the metrics from a server of your own
 * ```ts
 * import {
 *   BridgeMetrics,
 *   METRICS_CONTENT_TYPE,
 * } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: [] });
 * async function handler(): Promise<Response> {
 *   const body = await metrics.metrics();
 *   return new Response(body, { headers: { "content-type": METRICS_CONTENT_TYPE } });
 * }
 * const response = await handler();
 * console.log(response.headers.get("content-type")); // text/plain; version=0.0.4; charset=utf-8
 * ```
 */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * Options of {@linkcode serveHealth}.
 *
 * @example Readiness that also needs a database
 * ```ts
 * import {
 *   BridgeMetrics,
 *   serveHealth,
 *   type ServeHealthOptions,
 * } from "@dataexchange/streams/metrics";
 *
 * const metrics = new BridgeMetrics({ routes: [] });
 * let databaseUp = false;
 * const options: ServeHealthOptions = {
 *   port: 0,
 *   metrics,
 *   ready: () => {
 *     const { ready, reasons } = metrics.readiness();
 *     if (databaseUp) return { ready, reasons };
 *     return { ready: false, reasons: [...reasons, "database down"] };
 *   },
 *   signal: AbortSignal.timeout(5_000),
 * };
 * await using server = serveHealth(options);
 * const response = await fetch(new URL("/readyz", server.url));
 * console.log(response.status, (await response.json()).reasons.length); // 503 3
 * ```
 */
export interface ServeHealthOptions {
  /** The TCP port; 0 picks a free one (read it from the result). */
  port: number;
  /** The address to listen on. Default `127.0.0.1` (this host only). */
  hostname?: string;
  /** The metrics served at `/metrics`. */
  metrics: BridgeMetrics;
  /**
   * Tells whether the bridge can take traffic, answered at `/readyz`.
   * Default `() => metrics.readiness()`: both brokers connected and the
   * circuit breaker not open.
   */
  ready?: () => boolean | Readiness;
  /** Stops the server, as {@linkcode HealthServer.shutdown} does. */
  signal?: AbortSignal;
}

/**
 * A running health endpoint.
 *
 * @example Stop the endpoint at shutdown
 * ```ts
 * import {
 *   BridgeMetrics,
 *   type HealthServer,
 *   serveHealth,
 * } from "@dataexchange/streams/metrics";
 *
 * const server: HealthServer = serveHealth({
 *   port: 0,
 *   metrics: new BridgeMetrics({ routes: [] }),
 * });
 * const response = await fetch(new URL("/healthz", server.url));
 * console.log(response.status, await response.text()); // 200 ok
 * await server.shutdown();
 * await server.finished; // already settled
 * console.log(server.hostname); // 127.0.0.1
 * ```
 */
export interface HealthServer extends AsyncDisposable {
  /** The address it listens on. */
  readonly hostname: string;
  /** The port it listens on; the one chosen when 0 was asked for. */
  readonly port: number;
  /** Its base URL, such as `http://127.0.0.1:9464/`. */
  readonly url: string;
  /** Resolves once the server has stopped. */
  readonly finished: Promise<void>;
  /**
   * Stops accepting connections, lets requests being answered finish, and
   * resolves once the server has stopped. Calling it again waits the same.
   *
   * @returns A promise that resolves once stopped.
   */
  shutdown(): Promise<void>;
}

/**
 * Serves the bridge's health endpoint:
 *
 * - `GET /metrics`: the metrics in the Prometheus text format
 *   (`text/plain; version=0.0.4`).
 * - `GET /healthz`: 200 `ok` while the process runs (liveness).
 * - `GET /readyz`: 200 `{"ready":true,"reasons":[]}` when `ready()` says
 *   so, otherwise 503 with the reasons, such as
 *   `{"ready":false,"reasons":["kafka disconnected"]}`. A `ready()` that
 *   throws counts as not ready, with its message as the reason.
 * - any other path: 404; another method on these paths: 405.
 *
 * It listens on `127.0.0.1` unless told otherwise. Requests are logged at
 * debug only; starting and stopping at info.
 *
 * @param options Port, address, metrics, readiness check and stop signal.
 * @returns The running server.
 * @throws {RangeError} When `port` is not an integer from 0 to 65535.
 * @throws {TypeError} When `metrics` is not a `BridgeMetrics` or `ready` is
 *   not a function.
 * @throws {DataExchangeError} `health-listen-failed` when the address
 *   cannot be listened on (in use, or not permitted), with the cause.
 * @throws The signal's reason when `signal` is already aborted.
 *
 * @example Serve on a free port and read the metrics
 * ```ts
 * import { BridgeMetrics } from "./metrics.ts";
 * import { serveHealth } from "./server.ts";
 *
 * const metrics = new BridgeMetrics({ routes: ["telemetry"] });
 * await using server = serveHealth({ port: 0, metrics });
 * const response = await fetch(new URL("/metrics", server.url));
 * console.log(response.status); // 200
 * console.log((await response.text()).includes("dx_messages_received_total")); // true
 * ```
 */
export function serveHealth(options: ServeHealthOptions): HealthServer {
  const { port, metrics, signal } = options;
  const readyOption: unknown = options.ready;
  const hostname = options.hostname ?? "127.0.0.1";
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `serveHealth() option port must be an integer from 0 to 65535 (0 for any free port); got ${port}`,
    );
  }
  if (typeof metrics?.metrics !== "function") {
    throw new TypeError(
      `serveHealth() option metrics must be a BridgeMetrics; got ${
        metrics === null ? "null" : typeof metrics
      }`,
    );
  }
  if (readyOption !== undefined && typeof readyOption !== "function") {
    throw new TypeError(
      `serveHealth() option ready must be a function returning a boolean or { ready, reasons }; got ${typeof readyOption}`,
    );
  }
  signal?.throwIfAborted();
  const ready = options.ready ?? (() => metrics.readiness());

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      port,
      hostname,
      onListen: () => {},
      handler: (request) => answer(request, metrics, ready),
    });
  } catch (error) {
    throw new DataExchangeError(
      "health-listen-failed",
      `The health endpoint cannot listen on ${hostname}:${port}: ${
        (error as Error)?.message ?? String(error)
      }; choose another port (or 0 for any free one), or grant --allow-net for this address`,
      { cause: error },
    );
  }
  const actualPort = server.addr.port;
  const url = `http://${
    hostname.includes(":") ? `[${hostname}]` : hostname
  }:${actualPort}/`;
  logger.info("Health endpoint listening on {url}", { url });

  let stopping: Promise<void> | undefined;
  const onAbort = () => void shutdown();
  const shutdown = (): Promise<void> => {
    stopping ??= (async () => {
      signal?.removeEventListener("abort", onAbort);
      await server.shutdown();
      logger.info("Health endpoint at {url} stopped", { url });
    })();
    return stopping;
  };
  signal?.addEventListener("abort", onAbort, { once: true });

  return {
    hostname,
    port: actualPort,
    url,
    finished: server.finished,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

async function answer(
  request: Request,
  metrics: BridgeMetrics,
  ready: () => boolean | Readiness,
): Promise<Response> {
  const path = new URL(request.url).pathname;
  const response = await route(request.method, path, metrics, ready);
  logger.debug("Health endpoint answered {method} {path} with {status}", {
    method: request.method,
    path,
    status: response.status,
  });
  return response;
}

async function route(
  method: string,
  path: string,
  metrics: BridgeMetrics,
  ready: () => boolean | Readiness,
): Promise<Response> {
  if (path !== "/metrics" && path !== "/healthz" && path !== "/readyz") {
    return text(404, "not found: try /metrics, /healthz or /readyz\n");
  }
  if (method !== "GET") {
    return text(405, `method ${method} not allowed: use GET\n`, {
      allow: "GET",
    });
  }
  if (path === "/healthz") return text(200, "ok\n");
  if (path === "/readyz") {
    const readiness = checkReadiness(ready);
    return Response.json(readiness, {
      status: readiness.ready ? 200 : 503,
      headers: { "cache-control": "no-store" },
    });
  }
  try {
    return new Response(await metrics.metrics(), {
      headers: {
        "content-type": METRICS_CONTENT_TYPE,
        "cache-control": "no-store",
      },
    });
  } catch (error) {
    return text(500, `metrics could not be rendered: ${describe(error)}\n`);
  }
}

function checkReadiness(ready: () => boolean | Readiness): Readiness {
  let result: boolean | Readiness;
  try {
    result = ready();
  } catch (error) {
    return {
      ready: false,
      reasons: [`readiness check failed: ${describe(error)}`],
    };
  }
  if (typeof result === "boolean") {
    return { ready: result, reasons: result ? [] : ["not ready"] };
  }
  const reasons = Array.isArray(result?.reasons)
    ? result.reasons.map(String)
    : [];
  if (result?.ready === true) return { ready: true, reasons };
  return { ready: false, reasons: reasons.length ? reasons : ["not ready"] };
}

function text(
  status: number,
  body: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(body, {
    status,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
    },
  });
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

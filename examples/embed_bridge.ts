/**
 * Embedding the bridge in an application, without the CLI.
 *
 * The application builds the configuration in code, owns logging, runs the
 * bridge in its own process with `runBridge`, and serves the bridge's
 * metrics from its own HTTP server, next to its own routes:
 *
 * - `/metrics`: the bridge's Prometheus metrics;
 * - `/status`: the application's own view, from `metrics.snapshot()`;
 * - `/readyz`: 200 when both brokers are connected, else 503.
 *
 * Run against local brokers (`deno task brokers` prints their addresses):
 *
 *   DX_MQTT_URL=mqtt://127.0.0.1:<port> DX_KAFKA_BROKERS=127.0.0.1:<port> \
 *     PORT=8080 deno run --allow-net --allow-env examples/embed_bridge.ts
 *   curl http://127.0.0.1:8080/status
 *
 * Every `DX_` variable of the CLI still applies (it wins over the code), so
 * the same deployment settings work for both. Stops on Ctrl-C or SIGTERM:
 * the bridge drains what is in flight, then the server stops.
 *
 * @module
 */
import { configure, getConsoleSink } from "@logtape/logtape";
import { parseConfig, runBridge } from "@dataexchange/streams/bridge";
import {
  BridgeMetrics,
  METRICS_CONTENT_TYPE,
} from "@dataexchange/streams/metrics";

// The library logs through LogTape and configures nothing: that is the
// application's call.
await configure({
  sinks: { console: getConsoleSink() },
  loggers: [
    { category: ["dataexchange"], lowestLevel: "info", sinks: ["console"] },
    {
      category: ["logtape", "meta"],
      lowestLevel: "warning",
      sinks: ["console"],
    },
  ],
});

const config = parseConfig(
  {
    mqtt: { clientId: "example-embedded-bridge", topics: ["devices/#"] },
    routes: { telemetry: "dx.telemetry", alert: "dx.alerts" },
  },
  Deno.env.toObject(),
);

// Label values come from the configuration, never from messages.
const metrics = new BridgeMetrics({ routes: Object.keys(config.routes) });

const stop = new AbortController();
for (const name of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(name, () => stop.abort());
}

let ready = false;
const server = Deno.serve({
  hostname: "127.0.0.1",
  port: Number(Deno.env.get("PORT") ?? 8080),
  onListen: ({ hostname, port }) =>
    console.log(`listening on http://${hostname}:${port}/`),
}, async (request) => {
  const { pathname } = new URL(request.url);
  if (pathname === "/metrics") {
    return new Response(await metrics.metrics(), {
      headers: { "content-type": METRICS_CONTENT_TYPE },
    });
  }
  if (pathname === "/status") {
    return Response.json({ ready, ...metrics.snapshot() });
  }
  if (pathname === "/readyz") {
    const readiness = metrics.readiness();
    return Response.json(readiness, { status: readiness.ready ? 200 : 503 });
  }
  return new Response("the application's own routes go here\n");
});

try {
  const stats = await runBridge(config, {
    signal: stop.signal,
    metrics,
    onReady: () => {
      ready = true;
      console.log("bridge ready");
    },
  });
  console.log(
    `bridge stopped: ${stats.delivered} delivered, ${stats.deadLettered} dead-lettered, ${stats.failed} left for redelivery`,
  );
} finally {
  await server.shutdown();
}

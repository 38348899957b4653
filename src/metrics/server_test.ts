import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { isDataExchangeError } from "../errors.ts";
import { parseSamples, valueOf } from "./_test_helpers.ts";
import { BridgeMetrics } from "./metrics.ts";
import { type HealthServer, serveHealth } from "./server.ts";

function connectedMetrics(): BridgeMetrics {
  const metrics = new BridgeMetrics({ routes: ["telemetry"] });
  metrics.setConnected("mqtt", true);
  metrics.setConnected("kafka", true);
  return metrics;
}

/** Sends a request and reads the whole answer. */
async function request(
  server: HealthServer,
  path: string,
  init?: RequestInit,
): Promise<{ status: number; headers: Headers; body: string }> {
  const response = await fetch(new URL(path, server.url), init);
  return {
    status: response.status,
    headers: response.headers,
    body: await response.text(),
  };
}

Deno.test("serveHealth() listens on 127.0.0.1 and reports the port it got for port 0", async () => {
  await using server = serveHealth({ port: 0, metrics: connectedMetrics() });

  assert.equal(server.hostname, "127.0.0.1");
  assert.ok(server.port > 0 && server.port <= 65535);
  assert.equal(server.url, `http://127.0.0.1:${server.port}/`);
  assert.equal((await request(server, "/healthz")).status, 200);
});

Deno.test("GET /metrics serves the exposition with its content type", async () => {
  const metrics = connectedMetrics();
  metrics.received("mqtt_to_kafka");
  metrics.received("mqtt_to_kafka");
  await using server = serveHealth({ port: 0, metrics });

  const response = await request(server, "/metrics?debug=1");
  assert.equal(response.status, 200);
  assert.equal(
    response.headers.get("content-type"),
    "text/plain; version=0.0.4; charset=utf-8",
  );
  const samples = parseSamples(response.body);
  assert.equal(
    valueOf(samples, "dx_messages_received_total", {
      direction: "mqtt_to_kafka",
    }),
    2,
  );

  metrics.received("mqtt_to_kafka");
  const again = parseSamples((await request(server, "/metrics")).body);
  assert.equal(
    valueOf(again, "dx_messages_received_total", {
      direction: "mqtt_to_kafka",
    }),
    3,
  );
});

Deno.test("GET /healthz answers ok whether or not the bridge is ready", async () => {
  const metrics = new BridgeMetrics({ routes: [] });
  await using server = serveHealth({ port: 0, metrics });

  const response = await request(server, "/healthz");
  assert.equal(response.status, 200);
  assert.equal(response.body, "ok\n");
  assert.equal(metrics.readiness().ready, false);
});

Deno.test("GET /readyz follows the metrics' readiness by default", async () => {
  const metrics = new BridgeMetrics({ routes: [] });
  await using server = serveHealth({ port: 0, metrics });

  let response = await request(server, "/readyz");
  assert.equal(response.status, 503);
  assert.equal(response.headers.get("content-type"), "application/json");
  assert.deepEqual(JSON.parse(response.body), {
    ready: false,
    reasons: ["mqtt disconnected", "kafka disconnected"],
  });

  metrics.setConnected("mqtt", true);
  metrics.setConnected("kafka", true);
  response = await request(server, "/readyz");
  assert.equal(response.status, 200);
  assert.deepEqual(JSON.parse(response.body), { ready: true, reasons: [] });

  metrics.setBreakerState("open");
  response = await request(server, "/readyz");
  assert.equal(response.status, 503);
  assert.deepEqual(JSON.parse(response.body).reasons, [
    "circuit breaker open",
  ]);
});

Deno.test("GET /readyz asks a given ready() on every request", async () => {
  let answer: boolean | { ready: boolean; reasons: string[] } = true;
  await using server = serveHealth({
    port: 0,
    metrics: new BridgeMetrics({ routes: [] }),
    ready: () => answer,
  });

  assert.equal((await request(server, "/readyz")).status, 200);

  answer = false;
  let response = await request(server, "/readyz");
  assert.equal(response.status, 503);
  assert.deepEqual(JSON.parse(response.body), {
    ready: false,
    reasons: ["not ready"],
  });

  answer = { ready: false, reasons: ["draining"] };
  response = await request(server, "/readyz");
  assert.equal(response.status, 503);
  assert.deepEqual(JSON.parse(response.body).reasons, ["draining"]);
});

Deno.test("GET /readyz answers 503 with the error when ready() throws", async () => {
  await using server = serveHealth({
    port: 0,
    metrics: connectedMetrics(),
    ready: () => {
      throw new Error("state unavailable");
    },
  });

  const response = await request(server, "/readyz");
  assert.equal(response.status, 503);
  assert.deepEqual(JSON.parse(response.body), {
    ready: false,
    reasons: ["readiness check failed: state unavailable"],
  });
});

Deno.test("Unknown paths answer 404 and other methods 405", async () => {
  await using server = serveHealth({ port: 0, metrics: connectedMetrics() });

  for (const path of ["/", "/metrics/", "/health", "/readyz/x"]) {
    const response = await request(server, path);
    assert.equal(response.status, 404, path);
  }
  for (const method of ["POST", "PUT", "DELETE", "HEAD"]) {
    for (const path of ["/metrics", "/healthz", "/readyz"]) {
      const response = await request(server, path, { method });
      assert.equal(response.status, 405, `${method} ${path}`);
      assert.equal(response.headers.get("allow"), "GET");
    }
  }
});

Deno.test("Requests are logged at debug, never above", async () => {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { memory: (record: LogRecord) => records.push(record) },
    loggers: [
      { category: ["dataexchange"], lowestLevel: "debug", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
    ],
  });
  try {
    const server = serveHealth({ port: 0, metrics: connectedMetrics() });
    for (const path of ["/metrics", "/healthz", "/readyz", "/nope"]) {
      await request(server, path);
    }
    await request(server, "/metrics", { method: "POST" });
    await server.shutdown();
  } finally {
    await reset();
  }

  const perRequest = records.filter((record) =>
    record.rawMessage ===
      "Health endpoint answered {method} {path} with {status}"
  );
  assert.equal(perRequest.length, 5);
  assert.ok(perRequest.every((record) => record.level === "debug"));
  const others = records.filter((record) => !perRequest.includes(record));
  assert.deepEqual(
    others.map((record) => [record.level, record.rawMessage]),
    [
      ["info", "Health endpoint listening on {url}"],
      ["info", "Health endpoint at {url} stopped"],
    ],
  );
});

Deno.test("shutdown() stops the server; calling it again waits the same", async () => {
  const server = serveHealth({ port: 0, metrics: connectedMetrics() });
  assert.equal((await request(server, "/healthz")).status, 200);

  await Promise.all([server.shutdown(), server.shutdown()]);
  await server.finished;
  await assert.rejects(fetch(new URL("/healthz", server.url)), TypeError);
});

Deno.test("Aborting the signal stops the server", async () => {
  const controller = new AbortController();
  const server = serveHealth({
    port: 0,
    metrics: connectedMetrics(),
    signal: controller.signal,
  });
  const probe = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.port,
  });
  probe.close();

  controller.abort(new Error("stop"));
  // Refused at once: the listener closes when the signal aborts.
  await assert.rejects(fetch(new URL("/healthz", server.url)), TypeError);
  await server.finished;
});

Deno.test("serveHealth() throws the reason of a signal already aborted", () => {
  const reason = new Error("already stopped");
  assert.throws(
    () =>
      serveHealth({
        port: 0,
        metrics: connectedMetrics(),
        signal: AbortSignal.abort(reason),
      }),
    (error: unknown) => error === reason,
  );
});

Deno.test("serveHealth() says which address is in use, with the cause", async () => {
  await using first = serveHealth({ port: 0, metrics: connectedMetrics() });

  assert.throws(
    () => serveHealth({ port: first.port, metrics: connectedMetrics() }),
    (error: unknown) =>
      isDataExchangeError(error) &&
      error.code === "health-listen-failed" &&
      error.message.includes(`127.0.0.1:${first.port}`) &&
      error.cause instanceof Deno.errors.AddrInUse,
  );
});

Deno.test("serveHealth() rejects a port outside 0 to 65535", () => {
  for (const port of [-1, 65536, 1.5, NaN]) {
    assert.throws(
      () => serveHealth({ port, metrics: connectedMetrics() }),
      (error: unknown) =>
        error instanceof RangeError && error.message.includes(String(port)),
    );
  }
});

Deno.test("serveHealth() rejects metrics or ready() of the wrong kind", () => {
  const metrics = connectedMetrics();
  for (
    const options of [
      { port: 0, metrics: undefined },
      { port: 0, metrics: {} },
      { port: 0, metrics, ready: true },
    ]
  ) {
    assert.throws(
      () =>
        serveHealth(options as unknown as Parameters<typeof serveHealth>[0]),
      (error: unknown) =>
        error instanceof TypeError &&
        /option (metrics|ready)/.test(error.message),
    );
  }
});

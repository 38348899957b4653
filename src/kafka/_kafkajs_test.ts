import assert from "node:assert/strict";
import type * as Kafkajs from "kafkajs";
// kafkajs' error classes; its entry point re-exports them in a way (an
// object spread) that ES module imports of a CommonJS package cannot see.
import kafkajsErrorClasses from "kafkajs/src/errors.js";
// kafkajs' own table of broker error codes, with its `retriable` flags: the
// errors below are the very ones it throws for those codes.
import kafkajsProtocolErrors from "kafkajs/src/protocol/error.js";
import {
  classifyProduceError,
  MISSING_TOPIC_RETRY_MS,
  MissingTopics,
} from "./_kafkajs.ts";

const {
  KafkaJSConnectionError,
  KafkaJSError,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSRequestTimeoutError,
} = kafkajsErrorClasses as Pick<
  typeof Kafkajs,
  | "KafkaJSConnectionError"
  | "KafkaJSError"
  | "KafkaJSNonRetriableError"
  | "KafkaJSNumberOfRetriesExceeded"
  | "KafkaJSRequestTimeoutError"
>;
const { createErrorFromCode } = kafkajsProtocolErrors as {
  createErrorFromCode(code: number): Error & {
    type: string;
    retriable: boolean;
  };
};

/** kafkajs' retrier wraps a non-retriable error this way (src/retry). */
const NonRetriable = KafkaJSNonRetriableError as unknown as new (
  error: Error | string,
  options?: { cause?: Error },
) => Kafkajs.KafkaJSNonRetriableError;

/** A broker error after kafkajs gave up retrying it (src/retry). */
function retriesExceeded(error: Error): Error {
  return new KafkaJSNumberOfRetriesExceeded(error, {
    retryCount: 2,
    retryTime: 1000,
  });
}

/** A broker error kafkajs does not retry, as its retrier rejects with it. */
function notRetried(error: Error): Error {
  return new NonRetriable(error, { cause: error });
}

/** Checks each `[type, error]`: `error` is classified `kind` with that `type`. */
function assertKind(
  kind: "unknown-topic" | "record" | "topic" | "refused",
  cases: ReadonlyArray<readonly [string, Error]>,
): void {
  for (const [type, error] of cases) {
    assert.deepEqual(classifyProduceError(error), { kind, type }, type);
  }
}

Deno.test("classifyProduceError() retries what kafkajs marks retriable: connection lost, timeouts, leaders moving", () => {
  const cases = [
    ["connection lost", new KafkaJSConnectionError("Connection error")],
    ["request timeout", new KafkaJSRequestTimeoutError("Request timed out")],
    ["producer disconnected", new KafkaJSError("The producer is disconnected")],
    [
      "retries exceeded on a lost connection",
      retriesExceeded(new KafkaJSConnectionError("Connection error")),
    ],
    ["an error kafkajs does not flag", new Error("socket hang up")],
    // Broker errors, by code: kafkajs marks each retriable.
    ["LEADER_NOT_AVAILABLE", retriesExceeded(createErrorFromCode(5))],
    ["NOT_LEADER_FOR_PARTITION", retriesExceeded(createErrorFromCode(6))],
    ["REQUEST_TIMED_OUT", retriesExceeded(createErrorFromCode(7))],
    ["NOT_ENOUGH_REPLICAS", retriesExceeded(createErrorFromCode(19))],
  ] as const;
  for (const [what, error] of cases) {
    assert.deepEqual(
      classifyProduceError(error),
      { kind: "transient" },
      what,
    );
  }
});

Deno.test("classifyProduceError() narrows refusals of a record down to the record, whatever kafkajs' retriable flag says", () => {
  const corrupt = createErrorFromCode(2);
  assert.equal(corrupt.retriable, true, "kafkajs retries CORRUPT_MESSAGE");
  assertKind("record", [
    // Produce errors: kafkajs bails out with the broker's error itself.
    ["MESSAGE_TOO_LARGE", createErrorFromCode(10)],
    ["RECORD_LIST_TOO_LARGE", createErrorFromCode(18)],
    ["INVALID_TIMESTAMP", createErrorFromCode(32)],
    ["INVALID_RECORD", createErrorFromCode(87)],
    ["CORRUPT_MESSAGE", retriesExceeded(corrupt)],
  ]);
});

Deno.test("classifyProduceError() rejects the records of a topic Kafka refuses: invalid name, not authorized, unsupported format", () => {
  assertKind("topic", [
    // Metadata errors: kafkajs' retrier wraps them in a non-retriable error.
    ["INVALID_TOPIC_EXCEPTION", notRetried(createErrorFromCode(17))],
    ["TOPIC_AUTHORIZATION_FAILED", notRetried(createErrorFromCode(29))],
    // Produce errors: as they are.
    ["TOPIC_AUTHORIZATION_FAILED", createErrorFromCode(29)],
    ["UNSUPPORTED_FOR_MESSAGE_FORMAT", createErrorFromCode(43)],
    ["UNSUPPORTED_COMPRESSION_TYPE", createErrorFromCode(76)],
  ]);
});

Deno.test("classifyProduceError() refuses, without retrying, a request kafkajs will not retry for a reason of neither a record nor a topic", () => {
  const disconnecting = new KafkaJSNonRetriableError(
    "The producer is disconnecting; therefore, it can't safely accept messages anymore",
  );
  const bug = new TypeError("Cannot read properties of undefined");
  assertKind("refused", [
    ["CLUSTER_AUTHORIZATION_FAILED", createErrorFromCode(31)],
    ["UNSUPPORTED_VERSION", createErrorFromCode(35)],
    ["UNKNOWN", notRetried(createErrorFromCode(-1))],
    ["KAFKAJS_UNKNOWN_ERROR_CODE", createErrorFromCode(9999)],
    // No broker error in the chain: kafkajs' own refusals and bugs.
    ["KafkaJSNonRetriableError", disconnecting],
    ["TypeError", notRetried(bug)],
  ]);
});

Deno.test("classifyProduceError() tells a topic Kafka does not know apart from other retriable errors, wherever kafkajs throws it", () => {
  const unknown = createErrorFromCode(3);
  assert.equal(unknown.retriable, true, "kafkajs retries it");
  assertKind("unknown-topic", [
    // From the metadata request before the produce, once kafkajs' own
    // retries are spent: how a topic that does not exist shows.
    ["UNKNOWN_TOPIC_OR_PARTITION", retriesExceeded(unknown)],
    // From a produce answer, as it is, and if kafkajs bails out with it.
    ["UNKNOWN_TOPIC_OR_PARTITION", unknown],
    ["UNKNOWN_TOPIC_OR_PARTITION", notRetried(unknown)],
  ]);
});

/** A clock the test moves by hand, in milliseconds. */
function manualClock(): { now: () => number; advance(ms: number): void } {
  let time = 1_000_000;
  return { now: () => time, advance: (ms) => time += ms };
}

Deno.test("MissingTopics waits for an unknown topic MISSING_TOPIC_RETRY_MS from its first answer at most, then no more until it is found", () => {
  const clock = manualClock();
  const missing = new MissingTopics(undefined, clock.now);
  assert.equal(missing.windowMs, MISSING_TOPIC_RETRY_MS);
  assert.ok(MISSING_TOPIC_RETRY_MS >= 2_000, "long enough for propagation");
  assert.ok(MISSING_TOPIC_RETRY_MS <= 10_000, "short enough to be noticed");

  // Waits as the backoff asks, each attempt taking 300 ms, until the window
  // is over: the last wait is cut to end with it.
  const waits: number[] = [];
  for (let backoffMs = 100;; backoffMs *= 2) {
    clock.advance(300);
    const wait = missing.retryDelay("dx.a", backoffMs);
    if (wait === undefined) break;
    waits.push(wait);
    clock.advance(wait);
  }
  assert.deepEqual(waits, [100, 200, 400, 800, 1600, 400]);
  assert.equal(missing.missingForMs("dx.a"), MISSING_TOPIC_RETRY_MS + 300);
  assert.equal(missing.retryDelay("dx.b", 100), 100, "a window of its own");

  clock.advance(60_000);
  assert.equal(missing.retryDelay("dx.a", 100), undefined, "later: no wait");

  missing.found("dx.a");
  assert.equal(missing.missingForMs("dx.a"), 0);
  assert.equal(missing.retryDelay("dx.a", 100), 100, "missing again: anew");
});

Deno.test("MissingTopics asks for one recheck per topic and absence, and forgets the oldest topic beyond 1000", () => {
  const clock = manualClock();
  const missing = new MissingTopics(100, clock.now);
  assert.equal(missing.recheck("dx.a"), false, "not missing: nothing to check");
  missing.retryDelay("dx.a", 10);
  assert.equal(missing.recheck("dx.a"), true);
  assert.equal(missing.recheck("dx.a"), false, "once per absence");
  missing.found("dx.a");
  missing.retryDelay("dx.a", 10);
  assert.equal(missing.recheck("dx.a"), true, "again after it was found");

  clock.advance(100);
  for (let n = 0; n < 1000; n++) missing.retryDelay(`dx.t${n}`, 10);
  assert.equal(missing.missingForMs("dx.a"), 0, "the oldest was forgotten");
  assert.equal(missing.retryDelay("dx.t0", 10), 10, "still in its window");
});

/**
 * A sink that logs each event's attributes through LogTape, never its data.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import {
  CLASSIFICATION_EXTENSION,
  type CloudEvent,
} from "../cloudevents/mod.ts";
import { sinkClosedError } from "./_errors.ts";
import type { EventSink } from "./sink.ts";

const MESSAGE = "Event {id} of type {type} from {source}";

/**
 * Options of {@linkcode loggingSink}.
 *
 * @example Send the event log to the console
 * ```ts
 * import { configure, getConsoleSink, reset } from "@logtape/logtape";
 * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
 * import {
 *   loggingSink,
 *   type LoggingSinkOptions,
 * } from "@dataexchange/streams/sinks";
 *
 * const options: LoggingSinkOptions = { category: ["audit"], level: "info" };
 * await configure({
 *   sinks: { console: getConsoleSink() },
 *   loggers: [
 *     { category: ["audit"], sinks: ["console"], lowestLevel: "info" },
 *     { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
 *   ],
 * });
 * const sink = loggingSink(options);
 * await sink.write(createCloudEvent({ source: "/door/3", type: "opened" }));
 * // 12:00:00.000 INF audit Event "<id>" of type "opened" from "/door/3"
 * await sink.close();
 * await reset();
 * ```
 */
export interface LoggingSinkOptions {
  /** The LogTape category to log under. Default `["dataexchange", "sinks", "logging"]`. */
  category?: readonly string[];
  /** The level of each event's log record. Default `"info"`. */
  level?: "debug" | "info";
}

/**
 * The sink returned by {@linkcode loggingSink}.
 *
 * @example Log and count the events of a stream
 * ```ts
 * import { createCloudEvent } from "@dataexchange/streams/cloudevents";
 * import { type LoggingSink, loggingSink } from "@dataexchange/streams/sinks";
 *
 * const sink: LoggingSink = loggingSink({ level: "debug" });
 * await sink.write(createCloudEvent({ source: "/s", type: "t" }));
 * await sink.close();
 * console.log(sink.count); // 1
 * ```
 */
export interface LoggingSink extends EventSink {
  /** Events logged so far. */
  readonly count: number;
}

/**
 * Creates a sink that logs one record per event, with the properties `id`,
 * `type`, `source`, `subject` and `classification`, and resolves at once.
 * The event's data is never logged. Where the records go is up to the
 * application's LogTape configuration; without one they go nowhere. Writes
 * after `close()` reject with a `sink-closed` error.
 *
 * @param options The category and level.
 * @returns The sink.
 * @throws {TypeError} When `category` is not a non-empty array of strings or
 *   `level` is neither `"debug"` nor `"info"`.
 *
 * @example Log events at debug level under the application's category
 * ```ts
 * import { createCloudEvent } from "../cloudevents/mod.ts";
 * import { loggingSink } from "./logging.ts";
 *
 * await using sink = loggingSink({ category: ["my-app", "events"], level: "debug" });
 * await sink.write(createCloudEvent({ source: "/s", type: "t", data: "secret" }));
 * console.log(sink.count); // 1
 * ```
 */
export function loggingSink(options: LoggingSinkOptions = {}): LoggingSink {
  const category = options.category ?? ["dataexchange", "sinks", "logging"];
  const level = options.level ?? "info";
  if (
    !Array.isArray(category) || category.length === 0 ||
    !category.every((part) => typeof part === "string")
  ) {
    throw new TypeError(
      `loggingSink() option category must be a non-empty array of strings; got ${
        JSON.stringify(category)
      }`,
    );
  }
  if (level !== "debug" && level !== "info") {
    throw new TypeError(
      `loggingSink() option level must be "debug" or "info"; got ${
        JSON.stringify(level)
      }`,
    );
  }

  const logger = getLogger([...category]);
  const log = (properties: Record<string, unknown>) => {
    if (level === "debug") logger.debug(MESSAGE, properties);
    else logger.info(MESSAGE, properties);
  };
  let count = 0;
  let closed = false;
  const close = () => {
    closed = true;
    return Promise.resolve();
  };
  return {
    get count() {
      return count;
    },
    write(event: CloudEvent): Promise<void> {
      if (closed) return Promise.reject(sinkClosedError("The logging sink"));
      count++;
      log({
        id: event.id,
        type: event.type,
        source: event.source,
        subject: event.subject,
        classification: event[CLASSIFICATION_EXTENSION],
      });
      return Promise.resolve();
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

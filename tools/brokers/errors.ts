/**
 * Errors raised while preparing or starting the local brokers.
 *
 * @module
 */

import { DataExchangeError } from "../../src/errors.ts";

/**
 * A tool that a local broker needs (`mosquitto`, `java`, `mvn`) is missing,
 * or the Kafka jars could not be resolved. Tests skip on this error; the
 * message names what is missing and how to install it.
 *
 * @example Skip when the brokers cannot run here
 * ```ts
 * import { BrokerUnavailableError } from "./errors.ts";
 *
 * const error = new BrokerUnavailableError("mosquitto is not installed");
 * console.log(error.code); // "broker-unavailable"
 * ```
 */
export class BrokerUnavailableError extends DataExchangeError {
  /**
   * @param message What is missing and how to get it.
   * @param options The underlying error as `cause`.
   */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("broker-unavailable", message, { cause: options.cause });
    this.name = "BrokerUnavailableError";
  }
}

/**
 * A broker process was started but did not become ready: it exited, or it did
 * not answer before the deadline. The message carries the tail of its log.
 * Retriable, because the usual causes (a port taken between choosing and
 * binding it, a slow machine) are transient.
 *
 * @example Read the code of a failed start
 * ```ts
 * import { BrokerStartError } from "./errors.ts";
 *
 * const error = new BrokerStartError("Kafka exited with code 1");
 * console.log(error.code, error.retriable); // "broker-start-failed" true
 * ```
 */
export class BrokerStartError extends DataExchangeError {
  /**
   * @param message What failed, the log tail, and what to do.
   * @param options The underlying error as `cause`.
   */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("broker-start-failed", message, {
      cause: options.cause,
      retriable: true,
    });
    this.name = "BrokerStartError";
  }
}

/**
 * Tells whether a value is a {@linkcode BrokerUnavailableError}, also when it
 * comes from another copy of this module (it checks the `code`).
 *
 * @param value Any value, typically a caught error.
 * @returns `true` when `value` is an `Error` whose `code` is `broker-unavailable`.
 *
 * @example Tell a missing tool from a failed start
 * ```ts
 * import { BrokerUnavailableError, isBrokerUnavailableError } from "./errors.ts";
 *
 * console.log(isBrokerUnavailableError(new BrokerUnavailableError("no java"))); // true
 * console.log(isBrokerUnavailableError(new Error("other"))); // false
 * ```
 */
export function isBrokerUnavailableError(
  value: unknown,
): value is BrokerUnavailableError {
  return value instanceof Error &&
    (value as { code?: unknown }).code === "broker-unavailable";
}

/**
 * An error's message followed by the messages of its causes, one per line,
 * for CLI output where a stack trace would hide the point.
 *
 * @param error Anything caught.
 * @param depth How many causes to follow at most. Default 5.
 * @returns The messages joined by `caused by:` lines.
 *
 * @example Show a wrapped error
 * ```ts
 * import { describeErrorChain } from "./errors.ts";
 *
 * const error = new Error("start failed", { cause: new Error("port taken") });
 * console.log(describeErrorChain(error)); // start failed\n  caused by: port taken
 * ```
 */
export function describeErrorChain(error: unknown, depth = 5): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let level = 0; current !== undefined && level <= depth; level++) {
    parts.push(current instanceof Error ? current.message : String(current));
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join("\n  caused by: ");
}

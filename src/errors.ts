/**
 * The error family shared by every module of `@dataexchange/streams`.
 *
 * Each error carries a stable string `code` that callers can branch on, a
 * `retriable` flag that says whether trying the same operation again may
 * succeed, and the underlying `cause` where there is one.
 *
 * @module
 */

/**
 * Options accepted by {@linkcode DataExchangeError}.
 *
 * @example Wrap a lower-level failure
 * ```ts
 * import {
 *   DataExchangeError,
 *   type DataExchangeErrorOptions,
 * } from "@dataexchange/streams/cloudevents";
 *
 * function parsePort(text: string): number {
 *   const port = Number(text);
 *   if (!Number.isInteger(port)) {
 *     const options: DataExchangeErrorOptions = {
 *       retriable: false,
 *       cause: new TypeError(`not an integer: ${text}`),
 *     };
 *     throw new DataExchangeError(
 *       "invalid-port",
 *       `The port must be an integer; got "${text}"`,
 *       options,
 *     );
 *   }
 *   return port;
 * }
 *
 * try {
 *   parsePort("eighty");
 * } catch (error) {
 *   if (!(error instanceof DataExchangeError)) throw error;
 *   console.log(error.code, error.retriable); // invalid-port false
 * }
 * ```
 */
export interface DataExchangeErrorOptions {
  /** The error that caused this one, if any. */
  cause?: unknown;
  /** Whether the failed operation may succeed when tried again. Default `false`. */
  retriable?: boolean;
}

/**
 * Base class of all errors raised by this package.
 *
 * @example Branch on the code of an error
 * ```ts
 * import { DataExchangeError, isDataExchangeError } from "./errors.ts";
 *
 * const error: unknown = new DataExchangeError("broker-unreachable", "no answer");
 * if (isDataExchangeError(error) && error.code === "broker-unreachable") {
 *   console.log("retry later");
 * }
 * ```
 */
export class DataExchangeError extends Error {
  /** A stable, machine-readable reason, such as `missing-attribute`. */
  readonly code: string;
  /** Whether the failed operation may succeed when tried again. */
  readonly retriable: boolean;

  /**
   * Makes an error with a stable code. It never throws.
   *
   * @param code A stable, machine-readable reason code.
   * @param message A readable message: what failed, with what value, and what to do.
   * @param options The cause and whether the failure is retriable.
   */
  constructor(
    code: string,
    message: string,
    options: DataExchangeErrorOptions = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "DataExchangeError";
    this.code = code;
    this.retriable = options.retriable ?? false;
  }
}

/**
 * Tells whether a value is a {@linkcode DataExchangeError}, also across
 * copies of this module loaded twice (it checks the shape, not only the class).
 * It never throws.
 *
 * @param value Any value, typically a caught error.
 * @returns `true` when `value` is an `Error` with a string `code` and a boolean `retriable`.
 *
 * @example Branch on any error of this package
 * ```ts
 * import {
 *   createCloudEvent,
 *   isDataExchangeError,
 * } from "@dataexchange/streams/cloudevents";
 *
 * try {
 *   createCloudEvent({ source: "", type: "com.example.reading" });
 * } catch (error) {
 *   if (!isDataExchangeError(error)) throw error;
 *   console.log(error.code, error.retriable); // invalid-attribute false
 * }
 * ```
 */
export function isDataExchangeError(
  value: unknown,
): value is DataExchangeError {
  return value instanceof Error &&
    typeof (value as { code?: unknown }).code === "string" &&
    typeof (value as { retriable?: unknown }).retriable === "boolean";
}

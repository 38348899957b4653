/**
 * The errors the sinks of this package share.
 *
 * @module
 */
import { DataExchangeError } from "../errors.ts";

/**
 * The error of a write that a closed (or closing) sink did not confirm.
 *
 * It is retriable: the event was not confirmed as delivered, so writing it
 * again to an open sink is the way to deliver it at least once.
 *
 * @param sink What closed, for the message, such as `The MQTT sink`.
 * @param cause Why it closed, such as an abort reason, if known.
 * @returns A `sink-closed` error.
 */
export function sinkClosedError(
  sink: string,
  cause?: unknown,
): DataExchangeError {
  return new DataExchangeError(
    "sink-closed",
    `${sink} is closed; the event was not confirmed as delivered, write it to an open sink`,
    { cause, retriable: true },
  );
}

/**
 * Calls a function that returns a promise, so that a synchronous throw
 * becomes a rejection too: a sink written by hand may throw before it
 * returns its promise.
 *
 * @module
 */

/**
 * Runs `fn` and returns its promise, or a rejected one if it throws.
 *
 * @param fn The call, such as `() => sink.write(event)`.
 * @returns What `fn` returned, or a promise rejected with what it threw.
 */
export function attempt(fn: () => PromiseLike<void> | void): Promise<void> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * A window of at most `capacity` sends in flight, for sinks whose transport
 * would otherwise buffer without limit (MQTT.js's offline queue has no cap).
 *
 * Policy: wait for room. A send submitted while the window is full waits,
 * in submission order, until one in flight settles; it is only handed to the
 * transport then. Sends start in the order they were submitted, and a send
 * is started synchronously inside `submit()` when there is room, so the
 * gauges are exact as soon as `submit()` returns.
 *
 * @module
 */

interface Queued<T> {
  readonly item: T;
  resolve(): void;
  reject(error: unknown): void;
}

/** Starts one send; the promise settles when the transport confirmed it or failed. */
export type StartSend<T> = (item: T) => Promise<void>;

/** A bounded, first-in first-out window of concurrent sends. */
export class SendWindow<T> {
  #capacity: number;
  #start: StartSend<T>;
  #queue: Array<Queued<T> | undefined> = [];
  #head = 0;
  #active = 0;
  #idleWaiters: Array<() => void> = [];
  #closed = false;
  #closeReason: unknown;

  /**
   * @param capacity Most sends in flight at once, a positive integer.
   * @param start Hands one item to the transport.
   * @throws {RangeError} When `capacity` is not a positive integer.
   */
  constructor(capacity: number, start: StartSend<T>) {
    this.#capacity = checkCapacity(capacity);
    this.#start = start;
  }

  /** Most sends in flight at once. */
  get capacity(): number {
    return this.#capacity;
  }

  /**
   * Changes the capacity. Growing it starts waiting sends at once; shrinking
   * it below the sends in flight lets them finish and starts no more until
   * they are fewer than the new capacity.
   *
   * @throws {RangeError} When `capacity` is not a positive integer.
   */
  set capacity(capacity: number) {
    this.#capacity = checkCapacity(capacity);
    this.#pump();
  }

  /** Sends started and not yet settled; never more than the capacity. */
  get active(): number {
    return this.#active;
  }

  /** Sends waiting for room. */
  get waiting(): number {
    return this.#queue.length - this.#head;
  }

  /**
   * Sends `item` once there is room.
   *
   * @param item What to send.
   * @returns A promise that settles as the send does, or rejects with the
   *   close reason if the window closes while it waits.
   */
  submit(item: T): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closeReason);
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#pump();
    });
  }

  /** Resolves once nothing is in flight or waiting. */
  whenIdle(): Promise<void> {
    if (this.#active === 0 && this.waiting === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Refuses further sends and rejects those still waiting with `reason`.
   * Sends in flight go on and settle as the transport decides.
   *
   * @param reason The rejection of waiting and later sends.
   * @returns How many waiting sends were rejected.
   */
  close(reason: unknown): number {
    this.#closed = true;
    this.#closeReason = reason;
    const queued = this.#queue.slice(this.#head);
    this.#queue = [];
    this.#head = 0;
    for (const entry of queued) entry?.reject(reason);
    this.#notifyIdle();
    return queued.length;
  }

  #pump(): void {
    while (this.#active < this.#capacity && this.waiting > 0) {
      const entry = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined;
      this.#active++;
      let sent: Promise<void>;
      try {
        sent = this.#start(entry.item);
      } catch (error) {
        sent = Promise.reject(error);
      }
      sent.then(
        () => this.#settle(entry.resolve),
        (error: unknown) => this.#settle(() => entry.reject(error)),
      );
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #settle(settleCaller: () => void): void {
    this.#active--;
    settleCaller();
    this.#pump();
    this.#notifyIdle();
  }

  #notifyIdle(): void {
    if (this.#active > 0 || this.waiting > 0) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }
}

function checkCapacity(capacity: number): number {
  if (!Number.isInteger(capacity) || capacity < 1) {
    throw new RangeError(
      `SendWindow capacity must be a positive integer; got ${capacity}`,
    );
  }
  return capacity;
}

/**
 * A small seeded pseudo-random number generator, so that mock data is the
 * same on every run and every runtime. Not for anything secret.
 *
 * @module
 */

const TWO_TO_32 = 4_294_967_296;

/**
 * A 32-bit generator: a Weyl sequence (a counter stepped by an odd
 * constant) passed through an integer hash that spreads every bit. Its
 * period is 2^32 draws.
 *
 * @example The same seed gives the same numbers
 * ```ts
 * import { Prng } from "./_prng.ts";
 *
 * const a = new Prng(7);
 * const b = new Prng(7);
 * console.log(a.next() === b.next()); // true
 * ```
 */
export class Prng {
  #state: number;

  /**
   * @param seed Any safe integer; its low and high 32 bits both count.
   */
  constructor(seed: number) {
    const low = seed >>> 0;
    const high = Math.floor(seed / TWO_TO_32) >>> 0;
    this.#state = (low ^ hash32(high ^ 0x5bd1e995)) | 0;
  }

  /**
   * Draws the next number.
   *
   * @returns A number from 0 (included) to 1 (excluded), a multiple of 2^-32.
   */
  next(): number {
    this.#state = (this.#state + 0x9e3779b9) | 0;
    return hash32(this.#state) / TWO_TO_32;
  }

  /**
   * Draws an integer.
   *
   * @param min The smallest value.
   * @param max The largest value, at least `min`.
   * @returns An integer from `min` to `max`, both included.
   */
  integer(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
}

// A 32-bit finalizer: xor-shifts and odd multipliers, so that each input bit
// flips about half of the output bits. Returns an unsigned 32-bit integer.
function hash32(value: number): number {
  let h = value | 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

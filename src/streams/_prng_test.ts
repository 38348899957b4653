import assert from "node:assert/strict";
import { Prng } from "./_prng.ts";

function draws(seed: number, count: number): number[] {
  const prng = new Prng(seed);
  return Array.from({ length: count }, () => prng.next());
}

Deno.test("Prng gives the same numbers for the same seed, others for another", () => {
  assert.deepEqual(draws(99, 100), draws(99, 100));
  assert.notDeepEqual(draws(99, 100), draws(100, 100));
  // The high bits of a large seed count too.
  assert.notDeepEqual(draws(1, 100), draws(1 + 2 ** 32, 100));
});

Deno.test("Prng draws spread evenly over [0, 1)", () => {
  const buckets = new Array(10).fill(0);
  for (const draw of draws(7, 100_000)) {
    assert.ok(draw >= 0 && draw < 1);
    buckets[Math.floor(draw * 10)]++;
  }
  for (const count of buckets) assert.ok(Math.abs(count - 10_000) < 500);
});

Deno.test("Prng.integer() stays within its bounds and reaches both", () => {
  const prng = new Prng(3);
  const seen = new Set<number>();
  for (let i = 0; i < 1000; i++) {
    const value = prng.integer(-2, 2);
    assert.ok(Number.isInteger(value) && value >= -2 && value <= 2);
    seen.add(value);
  }
  assert.deepEqual([...seen].sort(), [-1, -2, 0, 1, 2]);
});

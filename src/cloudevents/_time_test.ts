import { equal } from "node:assert/strict";
import fc from "fast-check";
import { isRfc3339 } from "./_time.ts";

Deno.test("isRfc3339() accepts every Date.toISOString() and its offset forms", () => {
  fc.assert(
    fc.property(
      fc.date({
        min: new Date("0000-01-01T00:00:00Z"),
        max: new Date("9999-12-31T23:59:59Z"),
        noInvalidDate: true,
      }),
      (date: Date) => {
        const iso = date.toISOString();
        equal(isRfc3339(iso), true, iso);
        equal(isRfc3339(iso.slice(0, 19) + "+05:45"), true, iso);
        equal(isRfc3339(iso.slice(0, 10)), false, iso);
      },
    ),
  );
});

Deno.test("isRfc3339() checks days against the month and leap years", () => {
  equal(isRfc3339("2000-02-29T00:00:00Z"), true);
  equal(isRfc3339("1900-02-29T00:00:00Z"), false);
  equal(isRfc3339("2023-04-31T00:00:00Z"), false);
  equal(isRfc3339("2023-12-31T23:59:60Z"), true);
  equal(isRfc3339("2023-12-31T23:60:00Z"), false);
  equal(isRfc3339("2023-12-31T23:59:00+24:00"), false);
  equal(isRfc3339("2023-12-31T23:59:00Z "), false);
  equal(isRfc3339("２０２３-12-31T23:59:00Z"), false);
});

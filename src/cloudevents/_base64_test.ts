import { deepStrictEqual, equal } from "node:assert/strict";
import fc from "fast-check";
import { decodeBase64, encodeBase64 } from "./_base64.ts";

function binaryString(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

Deno.test("encodeBase64() matches btoa and decodeBase64() inverts it", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes: Uint8Array) => {
      const text = encodeBase64(bytes);
      equal(text, btoa(binaryString(bytes)));
      deepStrictEqual(decodeBase64(text), bytes);
      deepStrictEqual(decodeBase64(text.replace(/=+$/, "")), bytes);
    }),
  );
});

Deno.test("decodeBase64() accepts exactly what atob accepts, less whitespace and non-zero pad bits", () => {
  const alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ ";
  fc.assert(
    fc.property(
      fc.string({ unit: fc.constantFrom(...alphabet), maxLength: 12 }),
      (text: string) => {
        const ours = decodeBase64(text);
        if (ours === undefined) return;
        // Whatever we accept, atob accepts with the same bytes.
        equal(binaryString(ours), atob(text));
        // And we accept only canonical text: it encodes back the same.
        equal(encodeBase64(ours).replace(/=+$/, ""), text.replace(/=+$/, ""));
      },
    ),
  );
});

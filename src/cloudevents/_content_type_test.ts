import { equal } from "node:assert/strict";
import {
  isCloudEventsContentType,
  isJsonContentType,
  isMediaType,
  isUtf8TextContentType,
} from "./_content_type.ts";

Deno.test("isJsonContentType() matches */json and */*+json, ignoring case and parameters", () => {
  for (
    const type of [
      "application/json",
      "APPLICATION/JSON; charset=utf-8",
      "text/json",
      "application/ld+json",
    ]
  ) {
    equal(isJsonContentType(type), true, type);
  }
  for (
    const type of [
      "application/jsonl",
      "application/json-seq",
      "text/plain",
      "json",
    ]
  ) {
    equal(isJsonContentType(type), false, type);
  }
});

Deno.test("isUtf8TextContentType() takes text and XML in UTF-8 or without charset", () => {
  equal(isUtf8TextContentType("text/csv"), true);
  equal(isUtf8TextContentType('text/plain; charset="UTF-8"'), true);
  equal(isUtf8TextContentType("application/soap+xml"), true);
  equal(
    isUtf8TextContentType("text/plain; format=flowed; charset=windows-1252"),
    false,
  );
  equal(isUtf8TextContentType("application/octet-stream"), false);
});

Deno.test("isCloudEventsContentType() matches the prefix in any letter case", () => {
  equal(isCloudEventsContentType("application/cloudevents+json"), true);
  equal(isCloudEventsContentType("Application/CloudEvents-Batch+JSON"), true);
  equal(isCloudEventsContentType("application/cloud"), false);
});

Deno.test("isMediaType() wants type/subtype with token characters", () => {
  equal(isMediaType("application/vnd.a+json; v=1"), true);
  for (
    const bad of [
      "",
      "json",
      "/json",
      "application/",
      "a b/c",
      "a/b c",
      "a/b/c",
      "a/b\n",
    ]
  ) {
    equal(isMediaType(bad), false, JSON.stringify(bad));
  }
});

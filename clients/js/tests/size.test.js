// The SDK's size budget: under 6 KiB minified and gzipped.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { gzipSync } from "node:zlib";

import { transform } from "esbuild";

const BUDGET_BYTES = 6144;

test("presence.js is under 6 KiB minified and gzipped", async (t) => {
  const source = readFileSync(new URL("../presence.js", import.meta.url), "utf8");
  const { code } = await transform(source, { minify: true, format: "esm", target: "es2022" });
  const gz = gzipSync(code, { level: 9 }).length;
  t.diagnostic(`presence.js: ${source.length} B source, ${code.length} B minified, ${gz} B minified+gzip`);
  assert.ok(gz < BUDGET_BYTES, `${gz} B minified+gzip, budget ${BUDGET_BYTES} B`);
});

// The SDK as a package: `exports` resolves to the module and its types, the
// tarball holds what it should, the version is the hub's protocol version,
// and presence.d.ts describes presence.js. No TypeScript compiler is a
// dependency, so the declarations are checked against the module itself:
// esbuild parses them as TypeScript, and every export, class member,
// option and event declared must exist in the code, and the reverse.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { transform } from "esbuild";

import * as sdk from "../presence.js";

const here = (p) => new URL(p, import.meta.url);
const pkg = JSON.parse(readFileSync(here("../package.json"), "utf8"));
const dts = readFileSync(here("../presence.d.ts"), "utf8");
const source = readFileSync(here("../presence.js"), "utf8");

/** The body of `<keyword> <name> ... { ... }` in the declarations (no nested braces at its depth). */
function block(keyword, name) {
  const start = dts.search(new RegExp(`${keyword} ${name}\\b[^{]*\\{`));
  assert.ok(start >= 0, `presence.d.ts declares no ${keyword} ${name}`);
  let depth = 0;
  for (let i = dts.indexOf("{", start); i < dts.length; i++) {
    if (dts[i] === "{") depth++;
    if (dts[i] === "}" && --depth === 0) return dts.slice(dts.indexOf("{", start) + 1, i);
  }
  throw new Error(`unbalanced ${keyword} ${name}`);
}

/** The member names of a declaration body, at its top level (doc comments removed). */
function members(body) {
  const flat = body.replace(/\/\*\*[\s\S]*?\*\//g, "");
  return [...flat.matchAll(/^\s{2}(?:readonly\s+)?(\w+)\??\s*[(:<]/gm)].map((m) => m[1]);
}

const sorted = (xs) => [...new Set(xs)].sort();

test("exports resolve the package name to presence.js, with its types first", () => {
  assert.equal(pkg.type, "module");
  const root = pkg.exports["."];
  assert.deepEqual(Object.keys(root), ["types", "default"], "`types` must come first for TypeScript");
  assert.equal(root.types, "./presence.d.ts");
  // Self-reference: the package's own name resolves through `exports`.
  assert.equal(import.meta.resolve(pkg.name), here("../presence.js").href);
  assert.equal(import.meta.resolve(`${pkg.name}/package.json`), here("../package.json").href);
});

test("the packed tarball holds the module, its types and the manifest only", () => {
  const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
    cwd: fileURLToPath(here("..")),
    encoding: "utf8",
  });
  const files = JSON.parse(out)[0].files.map((f) => f.path).sort();
  assert.deepEqual(files, ["package.json", "presence.d.ts", "presence.js"]);
});

test("the version is the hub's protocol version, and hello says it", () => {
  const cargo = (p) => readFileSync(here(`../../../${p}`), "utf8");
  const protocol = cargo("presence-protocol/Cargo.toml");
  const own = /^version\s*=\s*"([^"]+)"/m.exec(protocol)?.[1];
  const workspace = /\[workspace\.package\][^[]*?^version\s*=\s*"([^"]+)"/ms.exec(cargo("Cargo.toml"))?.[1];
  const expected = /^version\.workspace\s*=\s*true/m.test(protocol) ? workspace : own;
  assert.ok(expected, "no version found for presence-protocol");
  assert.equal(pkg.version, expected, "package.json");
  assert.equal(sdk.VERSION, expected, "presence.js VERSION");
  assert.match(source, /client: this\.opts\.client \|\| `presence\.js\/\$\{VERSION\}`/);
});

test("presence.d.ts parses as TypeScript and holds declarations only", async () => {
  const { code } = await transform(dts, { loader: "ts", format: "esm" });
  assert.equal(code.trim(), "", `runtime code in presence.d.ts:\n${code}`);
});

test("every value the module exports is declared, and nothing else", () => {
  const declared = [...dts.matchAll(/^export declare (?:class|function|const|let) (\w+)/gm)].map((m) => m[1]);
  assert.deepEqual(sorted(declared), sorted(Object.keys(sdk)));
});

test("PresenceClient's declared members are its public members", () => {
  const declared = members(block("class", "PresenceClient")).filter((m) => m !== "constructor");
  const memory = new Map();
  const client = new sdk.PresenceClient({
    url: "ws://127.0.0.1:9/v1/ws",
    token: () => "t",
    target: null,
    storage: { getItem: (k) => memory.get(k) ?? null, setItem: (k, v) => memory.set(k, v) },
  });
  for (const m of declared) assert.ok(m in client, `declared ${m} is not on a PresenceClient`);
  const methods = Object.getOwnPropertyNames(sdk.PresenceClient.prototype).filter((m) => m !== "constructor");
  for (const m of methods) assert.ok(declared.includes(m), `method ${m} is not declared`);
  client.close();
});

test("the declared options are the options the code reads", () => {
  const declared = members(block("interface", "PresenceOptions"));
  const read = [...source.matchAll(/\bopts\.(\w+)/g)].map((m) => m[1]);
  assert.deepEqual(sorted(declared), sorted(read));
});

test("the declared events are the events the code emits", () => {
  const declared = members(block("interface", "Events"));
  const emitted = [...source.matchAll(/#emit\("(\w+)"/g)].map((m) => m[1]);
  assert.deepEqual(sorted(declared), sorted(emitted));
});

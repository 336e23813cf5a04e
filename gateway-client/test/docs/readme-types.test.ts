// Every TypeScript block of the package README type-checks against the package's published
// types (dist/src/*.d.ts through "roster-gateway-client", as a user's project would see them),
// with @types/node and strict settings, and without skipLibCheck for our own declarations.
// Names a snippet uses as placeholders for the reader's own code are declared below.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const here = dirname(fileURLToPath(import.meta.url));
// dist/test/docs → the package root
const pkg = join(here, "..", "..", "..");

/** The reader's own code in the snippets. */
const PLACEHOLDERS = `
declare function callLedger(address: string, port: number): Promise<void>;
declare const app: { get(path: string, h: (req: unknown, reply: { type(t: string): { send(b: string): unknown } }) => unknown): void };
export {};
`;

function blocks(markdown: string): string[] {
  const out: string[] = [];
  const re = /```ts\n([\s\S]*?)```/g;
  for (let m = re.exec(markdown); m; m = re.exec(markdown)) out.push(m[1]!);
  return out;
}

function check(files: Record<string, string>, dir: string): string[] {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const names: string[] = [];
  for (const [name, text] of Object.entries(files)) {
    writeFileSync(join(dir, name), text);
    names.push(join(dir, name));
  }
  const program = ts.createProgram(names, {
    target: ts.ScriptTarget.ES2022,
    lib: ["lib.es2023.d.ts", "lib.esnext.disposable.d.ts"],
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    types: ["node"],
    typeRoots: [join(pkg, "..", "node_modules", "@types")],
    skipLibCheck: false,
  });
  const diags = ts.getPreEmitDiagnostics(program).filter((d) => {
    // Third-party declaration files are not ours to check; our own .d.ts and the snippets are.
    const f = d.file?.fileName ?? "";
    return !f.includes("node_modules") || f.includes("gateway-client/dist");
  });
  return diags.map((d) => `${d.file ? `${d.file.fileName.slice(dir.length + 1)}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1} ` : ""}${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
}

test("readme - every TypeScript block type-checks against the published types", () => {
  const readme = readFileSync(join(pkg, "README.md"), "utf8");
  const found = blocks(readme);
  assert.ok(found.length >= 3, `TypeScript blocks found: ${found.length}`);
  const files: Record<string, string> = { "package.json": JSON.stringify({ type: "module" }) };
  found.forEach((b, i) => (files[`block${i + 1}.mts`] = `${b}\n${PLACEHOLDERS}`));
  const errors = check(files, join(pkg, "dist", "readme-check"));
  assert.deepEqual(errors, []);
});

test("readme - fetch(url, { dispatcher: gw.dispatcher }) compiles against Node's global fetch and undici's", () => {
  const src = `
import { createGateway } from "roster-gateway-client";
import { fetch as undiciFetch, request } from "undici";
const gw = await createGateway({ nats: "nats://127.0.0.1:4222" });
const a: Response = await fetch("http://orders/x", { dispatcher: gw.dispatcher });
const b = await undiciFetch("http://orders/x", { dispatcher: gw.dispatcher });
const c = await request("http://orders/x", { dispatcher: gw.dispatcher });
gw.on("panic", (service: string, on: boolean) => void [service, on]);
// @ts-expect-error events are typed: "change" gives (service: string, revision: number)
gw.on("change", (service: number) => void service);
// @ts-expect-error internals are not in the published types
void gw.engine;
void [a.status, b.status, c.statusCode];
export {};
`;
  const errors = check({ "package.json": JSON.stringify({ type: "module" }), "fetch.mts": src }, join(pkg, "dist", "fetch-check"));
  assert.deepEqual(errors, []);
});

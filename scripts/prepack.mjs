#!/usr/bin/env node
// `prepack` of every published package (npm runs it in the package's folder on `npm pack` and
// `npm publish`): the package gets the repository's LICENSE (one text, copied rather than kept six
// times in git; the copies are ignored), and packing an unbuilt package fails instead of shipping
// a tarball without dist/.
import { copyFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

const pkgDir = process.cwd();
const root = new URL("..", import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const main = join(pkgDir, pkg.main ?? "dist/src/index.js");
if (!existsSync(main)) {
  console.error(`prepack ${pkg.name}: ${main} is missing; run \`npx tsc -b\` at the repository root first`);
  process.exit(1);
}
copyFileSync(join(root, "LICENSE"), join(pkgDir, "LICENSE"));

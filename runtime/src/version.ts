import { readFileSync } from "node:fs";

/**
 * The `version` of the package.json at `packageJson` (a file URL, e.g.
 * `new URL("../../package.json", import.meta.url)` from a package's dist/src/main.js). Read at run
 * time rather than compiled in, so a packed tarball answers with the version it was published as.
 */
export function packageVersion(packageJson: URL): string {
  const pkg = JSON.parse(readFileSync(packageJson, "utf8")) as { version?: unknown };
  if (typeof pkg.version !== "string") throw new Error(`${packageJson.pathname}: no "version"`);
  return pkg.version;
}

/** The line every Roster binary prints for `--version`: its name, its version, the Node running it. */
export function versionLine(name: string, packageJson: URL): string {
  return `${name} ${packageVersion(packageJson)} (node ${process.version})\n`;
}

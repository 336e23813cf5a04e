/** The `roster` process: run one command, exit with its code. */
import { run } from "./cli.js";

// `roster ... | head` closes the pipe early: that is not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const code = await run(process.argv.slice(2), {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
  env: process.env,
});
// exitCode rather than exit(): let stdout drain when it is a pipe.
process.exitCode = code;

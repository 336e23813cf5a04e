import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/dist/**", "dist-test/**", "node_modules/**", ".roster/**", "bench/results/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: "readonly", console: "readonly", URL: "readonly", setTimeout: "readonly", clearTimeout: "readonly", setInterval: "readonly", clearInterval: "readonly", Buffer: "readonly", AbortController: "readonly", AbortSignal: "readonly", TextEncoder: "readonly", TextDecoder: "readonly", performance: "readonly", fetch: "readonly", structuredClone: "readonly" } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }],
      "@typescript-eslint/no-explicit-any": "error",
    },
  },
  {
    // The dashboard's plain browser script (served as is, no build step).
    files: ["registry/ui/**/*.js"],
    languageOptions: { sourceType: "script", globals: { document: "readonly", window: "readonly", location: "readonly", Element: "readonly", requestAnimationFrame: "readonly", EventSource: "readonly" } },
  },
  {
    // core/ is pure: no I/O, no clock, no logger. Time comes in as an argument.
    files: ["*/src/core/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", {
        patterns: [
          { group: ["node:*", "fs", "net", "http", "https", "child_process", "dgram", "os"], message: "core/ is pure: do I/O in adapters/" },
          { group: ["@nats-io/*", "undici", "fastify", "pino"], message: "core/ is pure: do I/O in adapters/" },
        ],
      }],
      "no-restricted-globals": ["error",
        { name: "setTimeout", message: "core/ takes time as an argument" },
        { name: "setInterval", message: "core/ takes time as an argument" },
        { name: "fetch", message: "core/ is pure" },
      ],
      "no-restricted-properties": ["error",
        { object: "Date", property: "now", message: "core/ takes `now` as an argument" },
        { object: "performance", property: "now", message: "core/ takes `now` as an argument" },
      ],
    },
  },
);

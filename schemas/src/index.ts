export * from "./limits.js";
export * from "./subjects.js";
export * from "./messages.js";
export * from "./errors.js";
export * from "./format.js";
export * from "./duration.js";
export * from "./codec.js";
export * from "./status.js";

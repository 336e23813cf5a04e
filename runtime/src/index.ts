// roster-runtime: what every Roster process shares that is not the wire contract (that stays in
// roster-schemas). The pino logger factory is the subpath `roster-runtime/logger`, so that a
// library (the gateway client) can use the rest without loading pino.
export { packageVersion, versionLine } from "./version.js";

export { NatsServer, assertNatsServerInstalled, type NatsRestartOptions, type NatsServerOptions } from "./nats-server.js";
export { waitFor } from "./wait.js";
export { ChildProc, killAll, pauseProcess, spawnNode } from "./process.js";
export { freePort } from "./net.js";
export { NatsCluster, NatsClusterNode, type NatsClusterOptions } from "./nats-cluster.js";
export { filesUnder } from "./files.js";
export { parsePrometheus, metricValue, scrape, type Sample } from "./prometheus.js";
export { startSecuredNats, selfSignedCert, connectAs, repoRoot, type SecuredNats } from "./secured-nats.js";

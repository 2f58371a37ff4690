// Missive's TypeScript SDK: the client protocol of docs/protocol.md for browsers and Node.

export * from "./client.js";
export * from "./commands.js";
export * from "./errors.js";
export * from "./frame.js";
export * from "./http.js";
export * from "./indexeddb.js";
export * from "./link.js";
export * from "./storage.js";
export * as pb from "./gen/client_pb.js";
export * from "./state.js";
export { HeartbeatPolicy, keepHeartbeat, type Advertised } from "./heartbeat.js";

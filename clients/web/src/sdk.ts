// The SDK, from its sources: the bundler compiles it with the app.
export * from "../../sdk/src/index.js";

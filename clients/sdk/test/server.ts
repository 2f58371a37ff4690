// A real `missive serve` for the SDK's tests: the binary named by MISSIVE_BIN, on the embedded
// store in a fresh directory, on free loopback ports; it can be stopped and started again on
// the same ports and data, as a restart.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

export class TestServer {
  private child: ChildProcess | undefined;
  /** `http://127.0.0.1:<port>`. */
  http = "";
  private tcp = "127.0.0.1:0";

  private constructor(
    private readonly data: string,
    private readonly flags: string[],
  ) {}

  static async start(flags: string[] = []): Promise<TestServer> {
    const data = await mkdtemp(path.join(tmpdir(), "missive-sdk-"));
    const server = new TestServer(data, flags);
    await server.launch("127.0.0.1:0");
    return server;
  }

  /** Stops the process at once (SIGKILL: nothing is flushed that was not durable). */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
    this.child = undefined;
  }

  /** Starts again on the same addresses and data. */
  async restart(): Promise<void> {
    await this.kill();
    await this.launch(new URL(this.http).host);
  }

  async stop(): Promise<void> {
    await this.kill();
    await rm(this.data, { recursive: true, force: true });
  }

  private async launch(http: string): Promise<void> {
    const binary = process.env.MISSIVE_BIN;
    if (!binary) throw new Error("MISSIVE_BIN must name the missive binary");
    const args = [
      "serve",
      "--data", this.data,
      "--tcp", this.tcp,
      "--http", http,
      "--admin", "127.0.0.1:0",
      // Cheap password hashing: the tests create accounts, they do not measure them.
      "--password-memory-kib", "64",
      "--password-iterations", "1",
      ...this.flags,
    ];
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    let log = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-8000);
    });
    let out = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 20_000);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`server exited with ${code}:\n${log}`));
      });
      child.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes("missive ready")) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    this.http = /missive listening (http:\/\/[0-9.:]+)/.exec(out)![1]!;
    this.tcp = /missive listening tcp:\/\/([0-9.:]+)/.exec(out)![1]!;
  }
}

let counter = 0;
/** A username no other test of this run uses. */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}${process.pid % 10000}x${counter}`;
}

/** Resolves once `check` holds, polling; fails after `ms`. */
export async function eventually(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

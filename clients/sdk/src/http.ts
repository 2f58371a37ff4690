// The short link (docs/protocol.md §4): one POST /v1/<command> per request, protobuf bodies,
// the session token as a bearer token. No pushes: a client on it polls SYNC.

import { create, fromBinary, toBinary, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { CommandSpec } from "./commands.js";
import { Code, LinkError, MissiveError, codeNamed, errorOf } from "./errors.js";
import { ErrorSchema } from "./gen/client_pb.js";

export const PROTOCOL_VERSION = 3;

export type FetchLike = typeof globalThis.fetch;

export class ShortLink {
  /** The session token, for every command that needs one. */
  token: string | undefined;

  constructor(
    /** The server's HTTP address, e.g. `http://127.0.0.1:7380`. */
    readonly base: string,
    private readonly fetchImpl: FetchLike = globalThis.fetch.bind(globalThis),
    private readonly requestTimeoutMs = 30_000,
  ) {
    this.base = base.replace(/\/+$/, "");
  }

  async call<I extends CommandSpec["request"], O extends CommandSpec["response"]>(
    spec: CommandSpec<I, O>,
    request: MessageInitShape<I>,
  ): Promise<MessageShape<O>> {
    const body = toBinary(spec.request, create(spec.request, request));
    const answer = await this.post(`/v1/${spec.name}`, body, !spec.anonymous);
    return fromBinary(spec.response, answer);
  }

  /** Where an uploaded media's bytes are (`GET /v1/media/<id>`, with the bearer token). */
  mediaUrl(mediaId: string): string {
    return `${this.base}/v1/media/${encodeURIComponent(mediaId)}`;
  }

  /** An uploaded media's bytes, as the server serves them to a browser; up to
   * `timeoutMs` for the whole body (a large file on a slow link takes long). */
  async media(mediaId: string, timeoutMs = 10 * 60_000): Promise<Blob> {
    const response = await this.request(this.mediaUrl(mediaId), { headers: this.headers(true) }, timeoutMs);
    if (!response.ok) throw await failure(response);
    return response.blob();
  }

  private async post(path: string, body: Uint8Array, authenticated: boolean): Promise<Uint8Array> {
    const headers = this.headers(authenticated);
    headers["content-type"] = "application/x-protobuf";
    const response = await this.request(`${this.base}${path}`, {
      method: "POST",
      headers,
      body: body as Uint8Array<ArrayBuffer>,
    });
    if (!response.ok) throw await failure(response);
    return new Uint8Array(await response.arrayBuffer());
  }

  private headers(authenticated: boolean): Record<string, string> {
    const headers: Record<string, string> = { "missive-protocol": String(PROTOCOL_VERSION) };
    if (authenticated) {
      if (!this.token) throw new MissiveError(Code.Unauthenticated, "no session: log in first");
      headers.authorization = `Bearer ${this.token}`;
    }
    return headers;
  }

  private async request(url: string, init: RequestInit, timeoutMs = this.requestTimeoutMs): Promise<Response> {
    try {
      return await this.fetchImpl(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    } catch (error) {
      throw new LinkError(`${url}: ${(error as Error).message}`);
    }
  }
}

/** The error an HTTP answer carries: the code from `x-missive-code`, the rest from the body. */
async function failure(response: Response): Promise<MissiveError | LinkError> {
  const name = response.headers.get("x-missive-code");
  if (!name) {
    // Not an answer of Missive's (a proxy, or the HTTP layer itself: 405, 502).
    return new LinkError(`HTTP ${response.status} ${response.statusText}`);
  }
  const code = codeNamed(name);
  const type = response.headers.get("content-type") ?? "";
  try {
    if (type.startsWith("application/json")) {
      const body = (await response.json()) as { message?: string; retry_after_ms?: number };
      return new MissiveError(code, body.message ?? "", body.retry_after_ms ?? 0);
    }
    const body = fromBinary(ErrorSchema, new Uint8Array(await response.arrayBuffer()));
    return errorOf(body.code || code, body);
  } catch {
    return new MissiveError(code, `HTTP ${response.status}`);
  }
}

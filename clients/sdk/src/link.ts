// The long link over WebSocket (docs/protocol.md §3, §5): one binary message per frame,
// answers matched to requests by seq, NOTIFY pushes handed on as they come.

import { create, fromBinary, toBinary, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { CommandSpec } from "./commands.js";
import { Code, LinkError, MissiveError, errorOf } from "./errors.js";
import { FrameKind, decodeFrame, encodeFrame, type Frame } from "./frame.js";
import { ErrorSchema } from "./gen/client_pb.js";

/** What a WebSocket constructor must offer: the browser's, or Node's (22; 20 with
 * `--experimental-websocket`). */
export type WebSocketLike = new (url: string) => WebSocket;

export interface LongLinkOptions {
  /** `ws://host:port/ws` or `wss://…`. */
  url: string;
  WebSocket?: WebSocketLike;
  /** How long to wait for the WebSocket to open. */
  connectTimeoutMs?: number;
  /** How long to wait for an answer (the reference client's 30 s). */
  requestTimeoutMs?: number;
  /** A push frame (NOTIFY). */
  onPush(frame: Frame): void;
  /** The link is gone; `error` says why when the server said (signed out, bad frame). */
  onClose(error: MissiveError | LinkError): void;
}

interface Pending {
  resolve(body: Uint8Array): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

export class LongLink {
  private readonly pending = new Map<number, Pending>();
  /** The heartbeat PING waiting for its answer (seq 0). */
  private beat: Pending | undefined;
  private nextSeq = 1;
  private closed = false;

  private constructor(
    private readonly socket: WebSocket,
    private readonly options: LongLinkOptions,
  ) {
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = () => this.shut(new LinkError("connection closed"));
    socket.onerror = () => this.shut(new LinkError("connection failed"));
  }

  /** Opens a WebSocket to the server; fails with a `LinkError` when it does not open. */
  static open(options: LongLinkOptions): Promise<LongLink> {
    const Socket = options.WebSocket ?? globalThis.WebSocket;
    if (!Socket) return Promise.reject(new LinkError("no WebSocket in this environment"));
    return new Promise((resolve, reject) => {
      let socket: WebSocket;
      try {
        socket = new Socket(options.url);
      } catch (error) {
        reject(new LinkError(`cannot open ${options.url}: ${String(error)}`));
        return;
      }
      socket.binaryType = "arraybuffer";
      const timer = setTimeout(() => {
        socket.close();
        reject(new LinkError(`no connection to ${options.url} in time`));
      }, options.connectTimeoutMs ?? 10_000);
      socket.onopen = () => {
        clearTimeout(timer);
        resolve(new LongLink(socket, options));
      };
      socket.onerror = socket.onclose = () => {
        clearTimeout(timer);
        reject(new LinkError(`cannot connect to ${options.url}`));
      };
    });
  }

  get open(): boolean {
    return !this.closed;
  }

  /** Sends one request and waits for its answer. */
  async call<I extends CommandSpec["request"], O extends CommandSpec["response"]>(
    spec: CommandSpec<I, O>,
    request: MessageInitShape<I>,
  ): Promise<MessageShape<O>> {
    const body = toBinary(spec.request, create(spec.request, request));
    const answer = await this.exchange(spec.command, body);
    return fromBinary(spec.response, answer);
  }

  /** A heartbeat PING (seq 0, one at a time, docs/protocol.md §2.3): resolves with its
   * answer's body, rejects when none comes within `timeoutMs` or the link is lost first. */
  heartbeat(command: number, body: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new LinkError("connection closed"));
    this.beat?.reject(new LinkError("a newer heartbeat was sent"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.beat = undefined;
        reject(new LinkError("no heartbeat answer in time"));
      }, timeoutMs);
      this.beat = {
        resolve: (answer) => {
          clearTimeout(timer);
          resolve(answer);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
        timer,
      };
      this.write({ kind: FrameKind.Request, command, status: 0, seq: 0, body });
    });
  }

  close(): void {
    if (this.closed) return;
    this.socket.close();
    this.shut(new LinkError("closed by the client"));
  }

  private exchange(command: number, body: Uint8Array): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new LinkError("connection closed"));
    const seq = this.nextSeq;
    this.nextSeq = this.nextSeq >= 0xffff_ffff ? 1 : this.nextSeq + 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new LinkError("no answer in time"));
        // An answer that does not come means a link that does not work.
        this.close();
      }, this.options.requestTimeoutMs ?? 30_000);
      this.pending.set(seq, { resolve, reject, timer });
      this.write({ kind: FrameKind.Request, command, status: 0, seq, body });
    });
  }

  private write(frame: Frame): void {
    if (this.closed) return;
    try {
      this.socket.send(encodeFrame(frame));
    } catch {
      this.shut(new LinkError("write failed"));
    }
  }

  private receive(data: unknown): void {
    if (!(data instanceof ArrayBuffer)) {
      this.fail(new LinkError("the server sent a text message"));
      return;
    }
    let frame: Frame;
    try {
      frame = decodeFrame(new Uint8Array(data));
    } catch (error) {
      this.fail(new LinkError(`bad frame from the server: ${(error as Error).message}`));
      return;
    }
    if (frame.kind === FrameKind.Push) {
      this.options.onPush(frame);
      return;
    }
    if (frame.kind !== FrameKind.Response) {
      this.fail(new LinkError("the server sent a request frame"));
      return;
    }
    if (frame.seq === 0) {
      // Command 0, seq 0: the server ends the link and says why (signed out, bad frame);
      // a heartbeat's answer otherwise.
      if (frame.command === 0 && frame.status !== 0) {
        this.fail(decodeError(frame));
        return;
      }
      const beat = this.beat;
      this.beat = undefined;
      if (frame.status === Code.Ok) beat?.resolve(frame.body);
      else beat?.reject(decodeError(frame));
      return;
    }
    const pending = this.pending.get(frame.seq);
    if (!pending) return;
    this.pending.delete(frame.seq);
    clearTimeout(pending.timer);
    if (frame.status === Code.Ok) pending.resolve(frame.body);
    else pending.reject(decodeError(frame));
  }

  private fail(error: MissiveError | LinkError): void {
    this.socket.close();
    this.shut(error);
  }

  private shut(error: MissiveError | LinkError): void {
    if (this.closed) return;
    this.closed = true;
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new LinkError(`connection lost before the answer (${error.message})`));
    }
    this.pending.clear();
    this.beat?.reject(new LinkError(`connection lost before the heartbeat's answer (${error.message})`));
    this.beat = undefined;
    this.options.onClose(error);
  }
}

function decodeError(frame: Frame): MissiveError {
  try {
    return errorOf(frame.status, fromBinary(ErrorSchema, frame.body));
  } catch {
    return errorOf(frame.status, undefined);
  }
}

// The client: a session, a long link kept open (reconnecting with back-off and jitter, the
// short link in its place while it is down), and the sync loop of docs/protocol.md §11: every
// NOTIFY, every (re)connection and a fallback timer run SYNC from the stored key until the
// server has nothing more, and each batch is stored with its new key before it is handed on.

import { create, fromBinary, toBinary, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { COMMANDS, type CommandName, type CommandSpec, type Commands } from "./commands.js";
import { Code, LinkError, MissiveError } from "./errors.js";
import { FrameKind, type Frame } from "./frame.js";
import { ANSWER_TIMEOUT_MS, HeartbeatPolicy, keepHeartbeat } from "./heartbeat.js";
import * as pb from "./gen/client_pb.js";
import { type FetchLike, ShortLink, PROTOCOL_VERSION } from "./http.js";
import { LongLink, type WebSocketLike } from "./link.js";
import { MemoryStorage, type Session, type Storage } from "./storage.js";

/** Where the client stands: `online` on the long link (pushes arrive), `polling` on the short
 * link only (SYNC every `pollMs`), `connecting` and `offline` in between, `signed-out` once the
 * server refused the session (log in again). */
export type LinkState = "offline" | "connecting" | "online" | "polling" | "signed-out";

export interface ClientOptions {
  /** The server's HTTP address, e.g. `http://127.0.0.1:7380` (the long link is its `/ws`). */
  server: string;
  storage?: Storage;
  /** Shown among the user's devices. */
  deviceName?: string;
  /** `auto` (default): the long link, polling the short link while it is down. */
  transport?: "auto" | "websocket" | "http";
  WebSocket?: WebSocketLike;
  fetch?: FetchLike;
  /** Reconnection delays: full jitter over an exponential back-off. */
  backoff?: { initialMs: number; maxMs: number };
  /** SYNC this often on the long link even without a NOTIFY (default 30 s). */
  fallbackSyncMs?: number;
  /** SYNC this often on the short link (default 1 s). */
  pollMs?: number;
  /** How long to wait for one answer (default 30 s). */
  requestTimeoutMs?: number;
  /** How long `send` keeps retrying a message through lost links (default 2 min). */
  sendRetryMs?: number;
}

export interface ClientEvents {
  state: LinkState;
  /** Items newly synced, in version order, already stored. */
  items: pb.SyncItem[];
  /** The server no longer took the key: syncing starts again from the empty key, and items
   * already handed on come again (de-duplicate messages by id). */
  reset: undefined;
  signedOut: MissiveError;
  /** A background sync or connection attempt failed (it is retried). */
  error: Error;
  /** Someone types, or stopped, in a conversation (version 3, long link; not stored). */
  typing: pb.TypingEvent;
  /** A friend came online or left, or what one may see of them changed (version 3). */
  presence: pb.UserPresence;
}

type Listener<T> = (value: T) => void;

/** Items asked for per SYNC: the most the server gives (docs/protocol.md §7.3), so that a
 * device far behind catches up in few round trips. */
export const SYNC_BATCH_ITEMS = 500;

/** The largest media sent whole with UPLOAD; larger ones go up in parts. */
export const UPLOAD_WHOLE_BYTES_MAX = 512 * 1024;

export class MissiveClient {
  readonly http: ShortLink;
  private readonly storage: Storage;
  private readonly listeners = new Map<keyof ClientEvents, Set<Listener<never>>>();
  private session: Session | undefined;
  private syncKey: Uint8Array = new Uint8Array();
  /** The newest version stored per data type: an item at or below it is never handed on
   * twice. Per type, because versions increase across answers only within a type (§7.4). */
  private newest = new Map<pb.DataType, bigint>();
  private link: LongLink | undefined;
  private current: LinkState = "offline";
  private running = false;
  /** Bumped by every start and stop: a connection loop of an older generation ends at its
   * next step, and closes any link it opened meanwhile. */
  private generation = 0;
  /** The long link being opened or authenticated, so that `stop` can close it too. */
  private opening: LongLink | undefined;
  /** The smart heartbeat's knowledge of the current network; forgotten when it changes. */
  private heartbeat: HeartbeatPolicy | undefined;
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  private wake: (() => void) | undefined;

  constructor(private readonly options: ClientOptions) {
    this.storage = options.storage ?? new MemoryStorage();
    this.http = new ShortLink(options.server, options.fetch, options.requestTimeoutMs);
  }

  /** Loads what the storage holds and answers the stored items, oldest first, for the
   * application to show before anything new arrives. */
  async restore(): Promise<pb.SyncItem[]> {
    const stored = await this.storage.load();
    this.adopt(stored.session);
    this.syncKey = stored.syncKey;
    const items = stored.items.map((bytes) => fromBinary(pb.SyncItemSchema, bytes));
    this.newest.clear();
    for (const item of items) this.noteNewest(item);
    return items;
  }

  get state(): LinkState {
    return this.current;
  }

  /** The logged-in session, if any. */
  get me(): Session | undefined {
    return this.session;
  }

  on<K extends keyof ClientEvents>(event: K, listener: Listener<ClientEvents[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  /** Calls every listener; one that throws neither stops the others nor the client. */
  private emit<K extends keyof ClientEvents>(event: K, value: ClientEvents[K]): void {
    for (const listener of this.listeners.get(event) ?? []) {
      try {
        (listener as Listener<ClientEvents[K]>)(value);
      } catch (error) {
        if (event !== "error") this.emit("error", error as Error);
      }
    }
  }

  // ---- accounts ----

  register(username: string, password: string, nickname = ""): Promise<pb.RegisterResponse> {
    return this.http.call(COMMANDS.register, { username, password, nickname });
  }

  /** Logs in over the short link and keeps the session; a different account than the stored
   * one starts from an empty store. */
  async login(username: string, password: string): Promise<Session> {
    const deviceName = this.options.deviceName ?? "missive-sdk";
    const answer = await this.http.call(COMMANDS.login, { username, password, deviceName });
    const session: Session = { token: answer.token, userId: answer.userId, deviceId: answer.deviceId, username };
    if (this.session?.username !== username) await this.forgetItems();
    await this.storage.saveSession(session);
    this.adopt(session);
    return session;
  }

  /** Revokes the session on the server and forgets it here, with everything synced. */
  async logout(): Promise<void> {
    // Not running, so that the link the server closes after its answer is not reopened.
    this.running = false;
    this.generation += 1;
    try {
      if (this.session) await this.call("logout", {});
    } finally {
      this.stop();
      // A sync in flight finds the session gone and stores nothing.
      await this.syncing?.catch(() => undefined);
      await this.storage.saveSession(undefined);
      await this.forgetItems();
      this.adopt(undefined);
    }
  }

  // ---- the link ----

  /** Connects and keeps connected until `stop`, syncing as notifies come. Needs a session. */
  start(): void {
    if (this.running) return;
    if (!this.session) throw new MissiveError(Code.Unauthenticated, "no session: log in first");
    this.running = true;
    this.generation += 1;
    void this.connectLoop(this.generation);
  }

  /** Closes the link and stops reconnecting; the state becomes "offline" (unless signed out). */
  stop(): void {
    this.running = false;
    this.generation += 1;
    this.opening?.close();
    this.link?.close();
    this.wake?.();
    if (this.current !== "signed-out") this.setState("offline");
  }

  /** Cuts a reconnection wait short (the browser came back online, the user asked). A network
   * that came back may be another one: the heartbeat learns its interval again (§5.4). */
  reconnectNow(): void {
    this.heartbeat = undefined;
    this.wake?.();
  }

  /** Any command, over the long link when it is up, over the short link otherwise. */
  async call<K extends CommandName>(
    name: K,
    request: MessageInitShape<Commands[K]["request"]>,
  ): Promise<MessageShape<Commands[K]["response"]>> {
    const spec = COMMANDS[name] as CommandSpec<Commands[K]["request"], Commands[K]["response"]>;
    try {
      const link = this.link;
      const answer = link?.open ? await link.call(spec, request) : await this.http.call(spec, request);
      if (spec.writes && this.running) this.backgroundSync();
      return answer;
    } catch (error) {
      if (error instanceof MissiveError && !spec.anonymous && signsOut(error)) this.signOut(error);
      throw error;
    }
  }

  /** Runs SYNC until the server has nothing newer; concurrent calls share one run, and a
   * call during a run makes it go round once more. */
  syncNow(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    const run = (async () => {
      try {
        do {
          this.syncAgain = false;
          await this.syncOnce();
        } while (this.syncAgain);
      } finally {
        this.syncing = undefined;
      }
    })();
    this.syncing = run;
    return run;
  }

  // ---- messages and media ----

  /** Sends a message, retrying through lost links and transient refusals with the same
   * client message id (so it is stored once) until `sendRetryMs` has passed. */
  async send(request: MessageInitShape<typeof pb.SendRequestSchema>): Promise<pb.SendResponse> {
    const clientMsgId = request.clientMsgId || newClientMsgId();
    return this.retrying(() => this.call("send", { ...request, clientMsgId }));
  }

  /** Uploads media for a conversation (a peer's user id or a group id): whole when small, in
   * parts otherwise, each part retried where the server says it stands. */
  async upload(
    conversationId: bigint,
    data: Uint8Array,
    name: string,
    mimeType: string,
    onProgress?: (sent: number, total: number) => void,
  ): Promise<pb.MediaRef> {
    if (data.length <= UPLOAD_WHOLE_BYTES_MAX) {
      const answer = await this.retrying(() =>
        this.call("upload", { conversationId, name, mimeType, data }),
      );
      onProgress?.(data.length, data.length);
      return required(answer.media, "upload");
    }
    const begin = await this.retrying(() =>
      this.call("uploadBegin", { conversationId, name, mimeType, size: BigInt(data.length) }),
    );
    const partMax = BigInt(begin.partBytesMax || 256 * 1024);
    let offset = 0n;
    for (;;) {
      const end = offset + partMax < BigInt(data.length) ? offset + partMax : BigInt(data.length);
      const part = await this.retrying(() =>
        this.call("uploadPart", {
          mediaId: begin.mediaId,
          offset,
          data: data.subarray(Number(offset), Number(end)),
        }),
      );
      onProgress?.(Number(part.received), data.length);
      if (part.media) return part.media;
      offset = part.received;
    }
  }

  // ---- edits and reactions (version 3) ----

  /** Replaces the text of one of this user's TEXT messages (within the edit window). */
  async edit(messageId: bigint, text: string): Promise<pb.EditResponse> {
    return this.call("edit", { messageId, text });
  }

  /** Puts this user's reaction on a message (replacing theirs); an empty `emoji` takes it
   * back. Answers the message's reactions after the change. */
  async react(messageId: bigint, emoji: string): Promise<pb.Reaction[]> {
    return (await this.call("react", { messageId, emoji })).reactions;
  }

  /** This user's messages holding every word of `query` (any script), newest first; pass
   * the answer's `nextBeforeVersion` as `beforeVersion` for the next page. */
  async search(
    query: string,
    options: { conversationId?: bigint; senderId?: bigint; beforeVersion?: bigint; limit?: number } = {},
  ): Promise<pb.SearchResponse> {
    return this.call("search", { ...options, query });
  }

  // ---- offline push (version 3) ----

  /** The server's VAPID public key, to subscribe a browser with (`applicationServerKey`). */
  async vapidPublicKey(): Promise<Uint8Array> {
    return (await this.call("pusherList", {})).vapidPublicKey;
  }

  /** Registers a browser's Web Push subscription (`PushSubscription.toJSON()`) as this
   * device's push target. */
  async setWebPush(subscription: { endpoint: string; keys: { p256dh: string; auth: string } }): Promise<void> {
    await this.call("pusherSet", {
      pusher: {
        kind: pb.PusherKind.WEB_PUSH,
        endpoint: subscription.endpoint,
        p256dh: fromBase64Url(subscription.keys.p256dh),
        auth: fromBase64Url(subscription.keys.auth),
      },
    });
  }

  /** Registers a UnifiedPush endpoint as this device's push target. */
  async setUnifiedPush(endpoint: string): Promise<void> {
    await this.call("pusherSet", { pusher: { kind: pb.PusherKind.UNIFIED_PUSH, endpoint } });
  }

  /** No offline push for a conversation until `untilMs` (0 unmutes). */
  async setMuted(conversationId: bigint, untilMs: bigint): Promise<void> {
    await this.call("setMuted", { conversationId, mutedUntilMs: untilMs });
  }

  // ---- typing and presence (version 3) ----

  /** Tells a peer (user id) or a group that this user types (or stopped). A refusal for
   * rate is dropped: a typing signal is worth nothing late. */
  async typing(conversationId: bigint, typing = true): Promise<void> {
    try {
      await this.call("typing", { conversationId, typing });
    } catch (error) {
      if (!(error instanceof MissiveError && error.code === Code.RateLimited)) throw error;
    }
  }

  /** Who sees this user's presence. */
  async setPrivacy(presenceVisibility: pb.PresenceVisibility): Promise<pb.Profile | undefined> {
    return (await this.call("setPrivacy", { presenceVisibility })).profile;
  }

  /** Whether users are online, or when they were last seen, as far as each lets this user. */
  async presence(userIds: bigint[]): Promise<pb.UserPresence[]> {
    return (await this.call("getPresence", { userIds })).presences;
  }

  // ---- inside ----

  private adopt(session: Session | undefined): void {
    this.session = session;
    this.http.token = session?.token;
  }

  private async forgetItems(): Promise<void> {
    await this.storage.clearItems();
    this.syncKey = new Uint8Array();
    this.newest.clear();
  }

  private noteNewest(item: pb.SyncItem): void {
    if (item.version > (this.newest.get(item.type) ?? 0n)) this.newest.set(item.type, item.version);
  }

  private setState(state: LinkState): void {
    if (this.current === state) return;
    this.current = state;
    this.emit("state", state);
  }

  private signOut(error: MissiveError): void {
    if (!this.session) return;
    this.running = false;
    this.generation += 1;
    this.adopt(undefined);
    void this.storage.saveSession(undefined);
    this.link?.close();
    this.wake?.();
    this.setState("signed-out");
    this.emit("signedOut", error);
  }

  private async syncOnce(): Promise<void> {
    const session = this.session;
    for (;;) {
      let answer: pb.SyncResponse;
      try {
        answer = await this.call("sync", { syncKey: this.syncKey, limit: SYNC_BATCH_ITEMS });
      } catch (error) {
        if (error instanceof MissiveError && error.code === Code.BadSyncKey && this.syncKey.length > 0) {
          // §6.11: start again from the empty key, keeping what is stored; what comes again
          // has the versions it had (stored again in place) and is handed on again, for the
          // application to de-duplicate by message id (ChatState does).
          this.syncKey = new Uint8Array();
          this.newest.clear();
          this.emit("reset", undefined);
          continue;
        }
        throw error;
      }
      // Logged out (or signed out) meanwhile: nothing of that account is stored any more.
      if (this.session !== session) return;
      const fresh = answer.items.filter((item) => item.version > (this.newest.get(item.type) ?? 0n));
      // A copy: the decoded key is a view into the whole answer, which storing would keep.
      const key = answer.syncKey.slice();
      await this.storage.commit(
        fresh.map((item) => ({ version: item.version, bytes: toBinary(pb.SyncItemSchema, item) })),
        key,
      );
      this.syncKey = key;
      for (const item of fresh) this.noteNewest(item);
      if (fresh.length > 0) this.emit("items", fresh);
      if (!answer.more) return;
    }
  }

  private backgroundSync(): void {
    this.syncNow().catch((error: Error) => this.emit("error", error));
  }

  private async connectLoop(generation: number): Promise<void> {
    const transport = this.options.transport ?? "auto";
    const backoff = this.options.backoff ?? { initialMs: 500, maxMs: 30_000 };
    const current = () => this.running && this.generation === generation;
    let attempt = 0;
    while (current()) {
      // An answer that names a wait (an AUTH refused while the node admits no more) is heeded.
      let atLeastMs = 0;
      if (transport !== "http") {
        this.setState("connecting");
        try {
          await this.holdLongLink(current, () => {
            attempt = 0;
          });
        } catch (error) {
          if (error instanceof MissiveError && signsOut(error)) {
            this.signOut(error);
            return;
          }
          if (error instanceof MissiveError) atLeastMs = error.retryAfterMs;
          if (current()) this.emit("error", error as Error);
        }
        if (!current()) return;
      }
      if (transport === "websocket") {
        this.setState("offline");
        await this.sleep(Math.max(atLeastMs, jitter(backoff, attempt++)));
      } else {
        // The short link keeps the data flowing until the long link is back.
        const wait = transport === "http" ? Number.POSITIVE_INFINITY : Math.max(atLeastMs, jitter(backoff, attempt++));
        await this.poll(wait, current);
      }
    }
  }

  /** Opens the long link, authenticates, syncs, and returns once it is gone, or at once
   * when the loop that called it is no longer `current`. */
  private async holdLongLink(current: () => boolean, connected: () => void): Promise<void> {
    const session = this.session;
    if (!session) return;
    let closed!: () => void;
    const gone = new Promise<void>((resolve) => (closed = resolve));
    let closeError: MissiveError | LinkError | undefined;
    const link = await LongLink.open({
      url: webSocketUrl(this.options.server),
      WebSocket: this.options.WebSocket,
      requestTimeoutMs: this.options.requestTimeoutMs,
      onPush: (frame) => this.pushed(frame),
      onClose: (error) => {
        closeError = error;
        closed();
      },
    });
    let timers: ReturnType<typeof setInterval>[] = [];
    this.opening = link;
    try {
      if (!current()) return;
      const auth = await link.call(COMMANDS.auth, { token: session.token, protocolVersion: PROTOCOL_VERSION });
      if (!current() || this.session !== session) return;
      this.link = link;
      connected();
      this.setState("online");
      // What the policy learnt of this network outlives the link (docs/protocol.md §5.4).
      this.heartbeat ??= new HeartbeatPolicy({
        startS: auth.heartbeatIntervalS,
        minS: auth.heartbeatMinS,
        maxS: auth.heartbeatMaxS,
      });
      timers = [setInterval(() => this.backgroundSync(), this.options.fallbackSyncMs ?? 30_000)];
      this.backgroundSync();
      const ping = async (nextS: number) => {
        const body = toBinary(pb.PingRequestSchema, create(pb.PingRequestSchema, { heartbeatIntervalS: nextS }));
        const answer = await link.heartbeat(pb.Command.PING, body, ANSWER_TIMEOUT_MS);
        return fromBinary(pb.PingResponseSchema, answer).heartbeatIntervalS;
      };
      let beating = true;
      let stopWaiting: (() => void) | undefined;
      const wait = (ms: number) =>
        new Promise<boolean>((resolve) => {
          if (!beating) return resolve(true);
          const timer = setTimeout(() => resolve(!beating), ms);
          stopWaiting = () => {
            clearTimeout(timer);
            resolve(true);
          };
        });
      // An unanswered heartbeat means the path forgot the link: close it and reconnect.
      void keepHeartbeat(this.heartbeat, ping, wait).then(() => {
        if (beating) link.close();
      });
      try {
        await gone;
      } finally {
        beating = false;
        stopWaiting?.();
      }
    } finally {
      for (const timer of timers) clearInterval(timer);
      if (this.link === link) this.link = undefined;
      if (this.opening === link) this.opening = undefined;
      link.close();
    }
    if (closeError instanceof MissiveError && signsOut(closeError)) this.signOut(closeError);
  }

  private pushed(frame: Frame): void {
    if (frame.kind !== FrameKind.Push) return;
    if (frame.command === pb.Command.EVENT) {
      this.pushedEvent(frame.body);
      return;
    }
    if (frame.command !== pb.Command.NOTIFY) return;
    // What the notify announces does not matter: SYNC brings all of it.
    this.backgroundSync();
  }

  /** An EVENT: handed on as it is; one that does not decode, or of a kind this client does
   * not know, is dropped (docs/protocol.md §6.20). */
  private pushedEvent(body: Uint8Array): void {
    let event: pb.Event;
    try {
      event = fromBinary(pb.EventSchema, body);
    } catch {
      return;
    }
    if (event.body.case === "typing") this.emit("typing", event.body.value);
    else if (event.body.case === "presence") this.emit("presence", event.body.value);
  }

  /** Syncs over the short link every `pollMs` for `durationMs` (or until woken). */
  private async poll(durationMs: number, current: () => boolean): Promise<void> {
    const until = Date.now() + durationMs;
    const every = this.options.pollMs ?? 1000;
    while (current() && Date.now() < until) {
      try {
        await this.syncNow();
        if (current()) this.setState("polling");
      } catch (error) {
        if (!current()) return;
        this.setState("offline");
        this.emit("error", error as Error);
      }
      if (await this.sleep(Math.min(every, until - Date.now()))) return;
    }
  }

  /** Waits; answers true when woken early. */
  private sleep(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve(false);
      }, Math.max(0, ms));
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve(true);
      };
    });
  }

  private async retrying<T>(attempt: () => Promise<T>): Promise<T> {
    const started = Date.now();
    const limit = this.options.sendRetryMs ?? 120_000;
    const backoff = this.options.backoff ?? { initialMs: 500, maxMs: 30_000 };
    for (let tries = 0; ; tries++) {
      try {
        return await attempt();
      } catch (error) {
        const again = error instanceof LinkError || (error instanceof MissiveError && error.transient);
        if (!again || !this.session || Date.now() - started > limit) throw error;
        const wait = error instanceof MissiveError && error.retryAfterMs > 0 ? error.retryAfterMs : jitter(backoff, tries);
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }
}

/** An answer that means the session is over: log in again. */
function signsOut(error: MissiveError): boolean {
  return error.code === Code.Unauthenticated || error.code === Code.AccountDisabled;
}

function required<T>(value: T | undefined, command: string): T {
  if (value === undefined) throw new MissiveError(Code.Internal, `${command} answered without its media`);
  return value;
}

/** Full jitter: a random wait up to the exponential back-off of this attempt. */
function jitter(backoff: { initialMs: number; maxMs: number }, attempt: number): number {
  const cap = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt, 30));
  return backoff.initialMs / 2 + Math.random() * (cap - backoff.initialMs / 2);
}

/** Bytes from base64url, padded or not (as browsers give push subscription keys). */
export function fromBase64Url(text: string): Uint8Array {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/** `http://host:port` → `ws://host:port/ws` (and https → wss). */
export function webSocketUrl(server: string): string {
  const url = new URL(server);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.pathname = "/ws";
  url.search = "";
  return url.toString();
}

/** A fresh client message id: 16 random bytes in hex (`crypto.randomUUID` needs a secure
 * context, which a page on a plain-HTTP address is not). */
export function newClientMsgId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

// The app's state and actions: the SDK client, the ChatState its items build, the sends
// still on their way, and what the browser shows beyond the page (notifications, the title's
// unread count). Components read it and re-render when it says it changed.

import {
  ChatState,
  Code,
  IndexedDbStorage,
  MissiveClient,
  pb,
  type ChatMessage,
  type LinkState,
  newClientMsgId,
  spoken,
} from "./sdk.js";

/** Where a user's group read marks are kept on this device: one value, read once. */
const readMarksKey = (userId: bigint) => `read-marks:${userId}`;

/** A message of the user's that the server has not yet answered. */
export interface Pending {
  clientMsgId: string;
  conversation: bigint;
  kind: pb.MessageKind;
  text: string;
  sentAtMs: number;
  /** The error that stopped it, when it failed for good. */
  failed?: string;
  /** Sends it (again), with the same client message id: stored once whatever happens. */
  send(): Promise<unknown>;
}

/** Messages older than this are not notified (history synced again, a long absence). */
const NOTIFY_AGE_MAX_MS = 5 * 60 * 1000;

/** How long after sending a message can be recalled (docs/protocol.md §6.16). */
export const RECALL_WINDOW_MS = 2 * 60 * 1000;
/** How long after sending a text can be edited, unless the server's operator changed it
 * (docs/protocol.md §6.21; the server answers TOO_LATE past its own window). */
export const EDIT_WINDOW_MS = 48 * 60 * 60 * 1000;
/** A TYPING is sent again after this long while the user keeps typing (the server forgets
 * one after 6 s, docs/protocol.md §6.18). */
const TYPING_REPEAT_MS = 4_000;

export class Model {
  chat: ChatState | undefined;
  link: LinkState = "offline";
  readonly pending: Pending[] = [];
  /** Groups' members, as GROUP_INFO last answered. */
  readonly groups = new Map<bigint, pb.Group>();
  private readonly listeners = new Set<() => void>();
  private readonly mediaUrls = new Map<string, Promise<string>>();
  private scheduled = false;
  /** The conversation on screen, whose messages count as read while the page is visible. */
  open: bigint | undefined;
  /** Why the session ended, when the server said more than "signed out". */
  signedOutBecause = "";
  /** Who types where: conversation → typist → when to forget it (ms). */
  readonly typists = new Map<bigint, Map<bigint, number>>();
  /** What the server last said of peers' presence. */
  readonly presences = new Map<bigint, pb.UserPresence>();
  /** When this user last told a conversation of typing (ms), to repeat it only so often. */
  private readonly typingSent = new Map<bigint, number>();

  private constructor(
    readonly client: MissiveClient,
    private readonly storage: IndexedDbStorage,
  ) {
    client.on("state", (state) => {
      this.link = state;
      this.changed();
    });
    client.on("items", (items) => this.received(items));
    client.on("typing", (event) => this.typed(event));
    client.on("presence", (presence) => {
      this.presences.set(presence.userId, presence);
      this.changed();
    });
    client.on("signedOut", (error) => {
      this.signedOutBecause = error.code === Code.AccountDisabled ? "This account has been disabled." : "";
      this.forget();
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.open !== undefined) void this.markRead(this.open);
      this.changed();
    });
    addEventListener("online", () => client.reconnectNow());
  }

  static async open(server: string): Promise<Model> {
    const storage = await IndexedDbStorage.open(`missive ${server}`);
    const client = new MissiveClient({ server, storage, deviceName: deviceName() });
    const model = new Model(client, storage);
    const items = await client.restore();
    if (client.me) await model.begin(client.me.userId, items);
    return model;
  }

  /** Shows a signed-in user's stored items, then connects. */
  private async begin(userId: bigint, items: pb.SyncItem[]): Promise<void> {
    this.chat = new ChatState(userId);
    this.chat.apply(items);
    await this.loadReadMarks();
    this.client.start();
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Re-renders once for everything that changed in this turn. */
  changed(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.updateTitle();
      for (const listener of this.listeners) listener();
    });
  }

  // ---- account ----

  async register(username: string, password: string, nickname: string): Promise<void> {
    await this.client.register(username, password, nickname);
    await this.login(username, password);
  }

  async login(username: string, password: string): Promise<void> {
    const session = await this.client.login(username, password);
    await this.begin(session.userId, await this.client.restore());
    this.changed();
  }

  /** Logs out; a LOGOUT the server did not get leaves the device active there, so that is
   * said (the token is forgotten here either way). */
  async logout(): Promise<string | undefined> {
    let failure: string | undefined;
    await this.client.logout().catch((error) => (failure = describe(error)));
    this.forget();
    return failure;
  }

  /** Drops what the page holds of the account: its state and the media fetched for it. */
  private forget(): void {
    this.chat = undefined;
    this.open = undefined;
    this.pending.length = 0;
    this.groups.clear();
    this.typists.clear();
    this.presences.clear();
    this.typingSent.clear();
    for (const url of this.mediaUrls.values()) void url.then((u) => URL.revokeObjectURL(u), () => undefined);
    this.mediaUrls.clear();
    this.changed();
  }

  // ---- messages ----

  async sendText(conversation: bigint, text: string, mentions: bigint[] = []): Promise<void> {
    // The message itself ends the typing on the other side; the next keystroke starts anew.
    this.typingSent.delete(conversation);
    await this.sending(conversation, pb.MessageKind.TEXT, text, (clientMsgId) =>
      this.client.send({ toUserId: conversation, kind: pb.MessageKind.TEXT, text, mentions, clientMsgId }),
    );
  }

  async sendFile(conversation: bigint, file: File): Promise<void> {
    const kind = file.type.startsWith("image/") ? pb.MessageKind.IMAGE : pb.MessageKind.FILE;
    await this.sending(conversation, kind, file.name, async (clientMsgId) => {
      const data = new Uint8Array(await file.arrayBuffer());
      const media = await this.client.upload(conversation, data, file.name, file.type || "application/octet-stream");
      return this.client.send({ toUserId: conversation, kind, mediaId: media.mediaId, clientMsgId });
    });
  }

  private async sending(
    conversation: bigint,
    kind: pb.MessageKind,
    text: string,
    send: (clientMsgId: string) => Promise<pb.SendResponse>,
  ): Promise<void> {
    const clientMsgId = newClientMsgId();
    const entry: Pending = { clientMsgId, conversation, kind, text, sentAtMs: Date.now(), send: () => send(clientMsgId) };
    this.pending.push(entry);
    await this.attempt(entry);
  }

  /** Sends a pending message (again); it leaves the list when the synced message with its
   * client message id arrives. */
  async attempt(entry: Pending): Promise<void> {
    entry.failed = undefined;
    this.changed();
    try {
      await entry.send();
    } catch (error) {
      entry.failed = describe(error);
    }
    this.changed();
  }

  dismiss(entry: Pending): void {
    const at = this.pending.indexOf(entry);
    if (at >= 0) this.pending.splice(at, 1);
    this.changed();
  }

  async recall(message: ChatMessage): Promise<void> {
    await this.client.call("recall", { messageId: message.id });
  }

  /** Replaces the text of one of this user's texts; the change comes back by sync. */
  async edit(message: ChatMessage, text: string): Promise<void> {
    await this.client.edit(message.id, text);
  }

  /** Puts this user's reaction on a message, or takes it back when it is already theirs. */
  async react(message: ChatMessage, emoji: string): Promise<void> {
    const mine = message.reactions.some((r) => r.emoji === emoji && r.userIds.includes(this.chat!.userId));
    await this.client.react(message.id, mine ? "" : emoji);
  }

  // ---- typing and presence ----

  /** The user typed in a conversation's composer: its members hear of it, at most once per
   * TYPING_REPEAT_MS; `stopped` when the text was cleared. */
  typing(conversation: bigint, stopped = false): void {
    const last = this.typingSent.get(conversation);
    if (stopped) {
      if (last === undefined) return;
      this.typingSent.delete(conversation);
    } else {
      if (last !== undefined && Date.now() - last < TYPING_REPEAT_MS) return;
      this.typingSent.set(conversation, Date.now());
    }
    this.client.typing(conversation, !stopped).catch(() => undefined);
  }

  /** Who types in a conversation now (user ids), others than this user. */
  typingIn(conversation: bigint): bigint[] {
    const now = Date.now();
    return [...(this.typists.get(conversation) ?? [])].filter(([, until]) => until > now).map(([user]) => user);
  }

  /** Asks for a peer's presence (events keep it current while the peer is a friend). */
  async watchPresence(peer: bigint): Promise<void> {
    const [presence] = await this.client.presence([peer]);
    if (presence) this.presences.set(peer, presence);
    this.changed();
  }

  private typed(event: pb.TypingEvent): void {
    let typists = this.typists.get(event.conversationId);
    if (!typists) this.typists.set(event.conversationId, (typists = new Map()));
    if (event.typing) {
      typists.set(event.userId, Date.now() + event.expiresInMs);
      // Re-rendered when it lapses, unless it came again meanwhile.
      setTimeout(() => this.changed(), event.expiresInMs + 50);
    } else {
      typists.delete(event.userId);
    }
    this.changed();
  }

  /** Marks what is on screen as read: a receipt for a 1:1 chat, a mark on this device for a
   * group. */
  async markRead(conversation: bigint): Promise<void> {
    const chat = this.chat;
    const found = chat?.conversations.get(conversation);
    if (!chat || !found || document.hidden) return;
    // The newest thing they said: a receipt names such a message (protocol §6.17).
    const newest = found.messages.findLast((m) => !m.mine && !m.recalled && spoken(m.kind));
    if (!newest || newest.version <= found.readByMe) return;
    if (found.isGroup) {
      chat.markRead(conversation, newest.version);
      this.readMarks.set(conversation, newest.version);
      this.changed();
      const stored = Object.fromEntries([...this.readMarks].map(([id, version]) => [String(id), String(version)]));
      await this.storage.setValue(readMarksKey(chat.userId), JSON.stringify(stored));
    } else {
      // The mark moves when the receipt is stored (it comes back by sync); a failed one is
      // tried again the next time the chat is looked at.
      await this.client.call("markRead", { messageId: newest.id }).catch(() => undefined);
    }
  }

  /** An object URL for an uploaded image or file, fetched once. */
  mediaUrl(mediaId: string): Promise<string> {
    let url = this.mediaUrls.get(mediaId);
    if (!url) {
      url = this.client.http.media(mediaId).then((blob) => URL.createObjectURL(blob));
      url.catch(() => this.mediaUrls.delete(mediaId));
      this.mediaUrls.set(mediaId, url);
    }
    return url;
  }

  // ---- groups ----

  async groupInfo(groupId: bigint): Promise<pb.Group> {
    const answer = await this.client.call("groupInfo", { groupId });
    return this.keep(answer);
  }

  /** Remembers the group an answer carries, and answers it. */
  keep(answer: pb.GroupResponse): pb.Group {
    const group = answer.group!;
    this.groups.set(group.groupId, group);
    for (const member of group.members) {
      this.chat?.learn(member.userId, { username: member.username, nickname: member.nickname });
    }
    this.changed();
    return group;
  }

  // ---- inside ----

  private received(items: pb.SyncItem[]): void {
    const chat = this.chat;
    if (!chat) return;
    const changed = chat.apply(items);
    const regrouped = new Set<bigint>();
    for (const item of items) {
      if (item.body.case !== "message") continue;
      const message = item.body.value;
      this.typists.get(message.groupId || message.fromUserId)?.delete(message.fromUserId);
      if (message.fromUserId === chat.userId) {
        // A pending send whose message has come back is done.
        const at = this.pending.findIndex((p) => p.clientMsgId === message.clientMsgId);
        if (at >= 0) this.pending.splice(at, 1);
      }
      // A change of a group's members or roles: its panel and the mention picker read again,
      // once however many changes the batch holds.
      if (message.kind === pb.MessageKind.SYSTEM && this.groups.has(message.groupId)) {
        regrouped.add(message.groupId);
      }
    }
    for (const groupId of regrouped) void this.groupInfo(groupId).catch(() => undefined);
    // A group seen for the first time gets the mark this device keeps for it.
    for (const conversation of changed) {
      const mark = this.readMarks.get(conversation);
      if (mark !== undefined) chat.markRead(conversation, mark);
    }
    if (this.open !== undefined && changed.has(this.open) && !document.hidden) void this.markRead(this.open);
    try {
      this.notify(items);
    } catch {
      // Some browsers have Notification but refuse to construct one outside a service worker.
    }
    this.changed();
  }

  /** A browser notification for each message of someone else's while the page is hidden. */
  private notify(items: pb.SyncItem[]): void {
    const chat = this.chat;
    if (!chat || !document.hidden || typeof Notification === "undefined" || Notification.permission !== "granted") return;
    for (const item of items) {
      if (item.body.case !== "message") continue;
      const message = item.body.value;
      if (message.fromUserId === chat.userId) continue;
      if (!spoken(message.kind) || message.recalled) continue;
      // Not for history synced again, or caught up after a long time offline.
      if (Date.now() - Number(message.sentAtMs) > NOTIFY_AGE_MAX_MS) continue;
      const conversation = message.groupId || message.fromUserId;
      const body = message.kind === pb.MessageKind.TEXT ? message.text : message.fallbackText;
      const title = message.groupId ? `${message.fromNickname || message.from} in ${chat.title(conversation)}` : chat.title(conversation);
      new Notification(title, { body, tag: String(conversation) });
    }
  }

  private updateTitle(): void {
    const chat = this.chat;
    let unread = 0;
    if (chat) for (const conversation of chat.conversations.values()) unread += chat.unread(conversation);
    document.title = unread > 0 ? `(${unread}) Missive` : "Missive";
  }

  /** The groups' read marks this device keeps (MARK_READ is for 1:1 chats). */
  private readonly readMarks = new Map<bigint, bigint>();

  private async loadReadMarks(): Promise<void> {
    this.readMarks.clear();
    if (!this.chat) return;
    const stored = JSON.parse((await this.storage.getValue(readMarksKey(this.chat.userId))) ?? "{}") as Record<string, string>;
    for (const [id, version] of Object.entries(stored)) this.readMarks.set(BigInt(id), BigInt(version));
    for (const [id, version] of this.readMarks) this.chat?.markRead(id, version);
  }
}

/** What to tell the user of a failure. */
export function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

function deviceName(): string {
  const agent = navigator.userAgent;
  const browser = /Firefox|Edg|Chrome|Safari/.exec(agent)?.[0] ?? "Browser";
  return `${browser === "Edg" ? "Edge" : browser} (web)`;
}

// What a chat application shows, made from the synced items alone: the user's profile, the
// contact list, and conversations with their messages, recalls, edits, reactions, read
// receipts and unread counts. Items may come in any order across data types (docs/protocol.md §7.4); applying an
// item twice changes nothing.

import * as pb from "./gen/client_pb.js";

export interface ChatMessage {
  id: bigint;
  version: bigint;
  /** The peer's user id in a 1:1 chat, the group's id in a group. */
  conversation: bigint;
  kind: pb.MessageKind;
  from: bigint;
  /** The sender's nickname when sent (username if none); empty for a group's system line. */
  fromName: string;
  text: string;
  sentAtMs: number;
  clientMsgId: string;
  media: pb.MediaRef | undefined;
  mentions: bigint[];
  event: pb.GroupEvent | undefined;
  invitation: string;
  fallbackText: string;
  /** The sender took it back: text and media are gone. */
  recalled: boolean;
  /** When the sender last edited the text (ms); 0 if never. */
  editedAtMs: number;
  /** The reactions, each with who gave it. */
  reactions: pb.Reaction[];
  mine: boolean;
}

export interface Conversation {
  id: bigint;
  isGroup: boolean;
  /** In version order. */
  messages: ChatMessage[];
  /** The version of the newest message this user has read (1:1: from receipts; groups:
   * locally). Versions, not ids: only versions are ordered in every deployment. */
  readByMe: bigint;
  /** 1:1: the version of the newest message of this user's that the peer has read. */
  readByPeer: bigint;
}

/** A user's names as messages and contacts tell them. */
export interface Names {
  username: string;
  nickname: string;
}

const SPOKEN = new Set([pb.MessageKind.TEXT, pb.MessageKind.IMAGE, pb.MessageKind.FILE]);

/** Whether a kind is something someone said: counted unread, notified, named by receipts. */
export function spoken(kind: pb.MessageKind): boolean {
  return SPOKEN.has(kind);
}

export class ChatState {
  profile: pb.Profile | undefined;
  readonly contacts = new Map<bigint, pb.Contact>();
  readonly conversations = new Map<bigint, Conversation>();
  private readonly contactVersions = new Map<bigint, bigint>();
  private readonly messages = new Map<bigint, ChatMessage>();
  private readonly names = new Map<bigint, Names>();
  private profileVersion = 0n;

  constructor(readonly userId: bigint) {}

  /** Applies synced items; answers the conversations that changed. */
  apply(items: readonly pb.SyncItem[]): Set<bigint> {
    const changed = new Set<bigint>();
    for (const item of items) {
      switch (item.body.case) {
        case "profile":
          if (item.version > this.profileVersion) {
            this.profileVersion = item.version;
            this.profile = item.body.value;
          }
          break;
        case "contact":
          this.applyContact(item.version, item.body.value);
          break;
        case "message": {
          const conversation = this.applyMessage(item.version, item.body.value);
          if (conversation !== undefined) changed.add(conversation);
          break;
        }
      }
    }
    return changed;
  }

  /** The name to show for a user or group: the remark, the nickname, the username. */
  title(id: bigint): string {
    const contact = this.contacts.get(id);
    return contact ? contact.remark || contact.nickname || contact.username : this.nickname(id);
  }

  /** Who sent a message, as this user names them: "You", the contact's remark or nickname,
   * or the sender's nickname as the message carried it (a recalled message carries none). */
  sender(message: ChatMessage): string {
    if (message.mine) return "You";
    if (this.contacts.has(message.from)) return this.title(message.from);
    return this.names.get(message.from)?.nickname || message.fromName;
  }

  /** Learns users' names from elsewhere (a group's member list). */
  learn(userId: bigint, names: Names): void {
    if (names.nickname || !this.names.has(userId)) this.names.set(userId, names);
  }

  /** The sender's own name for a user (nickname, else username), as they would type it in an
   * @mention: remarks are private. */
  nickname(id: bigint): string {
    if (id === this.userId && this.profile) return this.profile.nickname || this.profile.username;
    const names = this.names.get(id);
    return names ? names.nickname || names.username : `#${id}`;
  }

  /** Conversations, the one with the newest message first. */
  sorted(): Conversation[] {
    const newest = (c: Conversation) => c.messages[c.messages.length - 1]?.version ?? 0n;
    return [...this.conversations.values()].sort((a, b) => {
      const x = newest(a);
      const y = newest(b);
      return x > y ? -1 : x < y ? 1 : 0;
    });
  }

  /** Messages of theirs not yet read. */
  unread(conversation: Conversation): number {
    let count = 0;
    for (let i = conversation.messages.length - 1; i >= 0; i--) {
      const message = conversation.messages[i]!;
      if (message.version <= conversation.readByMe) break;
      if (!message.mine && !message.recalled && SPOKEN.has(message.kind)) count++;
    }
    return count;
  }

  /** Whether an unread message mentions this user. */
  mentioned(conversation: Conversation): boolean {
    for (let i = conversation.messages.length - 1; i >= 0; i--) {
      const message = conversation.messages[i]!;
      if (message.version <= conversation.readByMe) return false;
      if (!message.mine && message.mentions.includes(this.userId)) return true;
    }
    return false;
  }

  /** The newest message worth previewing. */
  preview(conversation: Conversation): ChatMessage | undefined {
    for (let i = conversation.messages.length - 1; i >= 0; i--) {
      const message = conversation.messages[i]!;
      if (message.kind !== pb.MessageKind.RECEIPT) return message;
    }
    return undefined;
  }

  /** Records locally that this user has read a conversation up to a message's version (a
   * group's read mark lives on the device; a 1:1 chat's also comes back as a receipt). */
  markRead(conversation: bigint, version: bigint): void {
    const found = this.conversations.get(conversation);
    if (found && version > found.readByMe) found.readByMe = version;
  }

  /** Whether the peer of a 1:1 chat has read this message of the user's. */
  readByPeer(message: ChatMessage): boolean {
    const conversation = this.conversations.get(message.conversation);
    return message.mine && conversation !== undefined && message.version <= conversation.readByPeer;
  }

  private applyContact(version: bigint, contact: pb.Contact): void {
    if (version <= (this.contactVersions.get(contact.userId) ?? 0n)) return;
    this.contactVersions.set(contact.userId, version);
    if (contact.relation === pb.Relation.NONE && !contact.blocked) this.contacts.delete(contact.userId);
    else this.contacts.set(contact.userId, contact);
    this.names.set(contact.userId, { username: contact.username, nickname: contact.nickname });
    if (contact.isGroup) this.conversation(contact.userId, true);
  }

  private applyMessage(version: bigint, message: pb.Message): bigint | undefined {
    const mine = message.fromUserId === this.userId;
    const isGroup = message.groupId !== 0n;
    const peer = mine ? message.toUserId : message.fromUserId;
    const id = isGroup ? message.groupId : peer;
    if (message.fromUserId !== 0n) {
      this.learn(message.fromUserId, { username: message.from, nickname: message.fromNickname });
    }
    if (!isGroup && message.toUserId !== 0n) {
      this.learn(message.toUserId, { username: message.to, nickname: "" });
    }
    const conversation = this.conversation(id, isGroup);
    switch (message.kind) {
      case pb.MessageKind.RECEIPT: {
        const read = this.messages.get(message.refMessageId)?.version ?? 0n;
        if (mine) conversation.readByMe = max(conversation.readByMe, read);
        else conversation.readByPeer = max(conversation.readByPeer, read);
        return id;
      }
      case pb.MessageKind.RECALL: {
        const target = this.messages.get(message.refMessageId);
        if (target) recall(target);
        return id;
      }
      // Each carries the message's state after the change; in version order, the last wins
      // (a message synced late already holds it, and the items replayed after end there).
      case pb.MessageKind.EDIT: {
        const target = this.messages.get(message.refMessageId);
        if (target && !target.recalled) {
          target.text = message.text;
          target.editedAtMs = Number(message.editedAtMs);
        }
        return id;
      }
      case pb.MessageKind.REACTION: {
        const target = this.messages.get(message.refMessageId);
        if (target && !target.recalled) target.reactions = message.reactions;
        return id;
      }
    }
    if (this.messages.has(message.id)) return undefined;
    const entry: ChatMessage = {
      id: message.id,
      version,
      conversation: id,
      kind: message.kind,
      from: message.fromUserId,
      fromName: message.fromNickname || message.from,
      text: message.text,
      sentAtMs: Number(message.sentAtMs),
      clientMsgId: message.clientMsgId,
      media: message.media,
      mentions: message.mentions,
      event: message.event,
      invitation: message.invitation,
      fallbackText: message.fallbackText,
      recalled: message.recalled,
      editedAtMs: Number(message.editedAtMs),
      reactions: message.reactions,
      mine,
    };
    if (entry.recalled) recall(entry);
    this.messages.set(entry.id, entry);
    insertByVersion(conversation.messages, entry);
    return id;
  }

  private conversation(id: bigint, isGroup: boolean): Conversation {
    let found = this.conversations.get(id);
    if (!found) {
      found = { id, isGroup, messages: [], readByMe: 0n, readByPeer: 0n };
      this.conversations.set(id, found);
    }
    return found;
  }
}

function recall(message: ChatMessage): void {
  message.recalled = true;
  message.text = "";
  message.media = undefined;
  message.mentions = [];
  message.reactions = [];
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/** Appends, or inserts in place when an item arrives out of order. */
function insertByVersion(messages: ChatMessage[], entry: ChatMessage): void {
  let at = messages.length;
  while (at > 0 && messages[at - 1]!.version > entry.version) at--;
  messages.splice(at, 0, entry);
}

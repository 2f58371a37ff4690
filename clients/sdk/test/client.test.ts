// The SDK against the real server binary (MISSIVE_BIN): accounts, contacts, live messages
// through notify-then-sync, a reload from storage, a restart of the server, the short link,
// media in parts, groups, recall, receipts, typed errors and signing out.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  ChatState,
  Code,
  LinkError,
  MemoryStorage,
  MissiveClient,
  MissiveError,
  pb,
  type ClientOptions,
} from "../src/index.js";
import { TestServer, eventually, uniqueName } from "./server.js";

const PASSWORD = "correct horse battery";

let server: TestServer;
const clients: MissiveClient[] = [];

before(async () => {
  // A short presence grace, so that a friend who leaves is told of it quickly.
  server = await TestServer.start(["--presence-grace-s", "1"]);
});

after(async () => {
  for (const client of clients) client.stop();
  await server.stop();
});

/** A started client with a fresh account, its items applied to a ChatState as they come. */
interface User {
  name: string;
  client: MissiveClient;
  storage: MemoryStorage;
  state: ChatState;
  /** Every item handed on, to check none comes twice. */
  seen: bigint[];
}

async function open(
  name: string,
  storage: MemoryStorage,
  options: Partial<ClientOptions> = {},
): Promise<User> {
  const client = new MissiveClient({ server: server.http, storage, backoff: { initialMs: 100, maxMs: 1000 }, ...options });
  clients.push(client);
  const restored = await client.restore();
  if (!client.me) {
    await client.login(name, PASSWORD);
  }
  const state = new ChatState(client.me!.userId);
  state.apply(restored);
  const user: User = { name, client, storage, state, seen: restored.map((item) => item.version) };
  client.on("items", (items) => {
    user.seen.push(...items.map((item) => item.version));
    state.apply(items);
  });
  client.start();
  return user;
}

async function newUser(prefix: string, options: Partial<ClientOptions> = {}): Promise<User> {
  const name = uniqueName(prefix);
  const storage = new MemoryStorage();
  const client = new MissiveClient({ server: server.http, storage });
  await client.register(name, PASSWORD, `${prefix} nick`);
  return open(name, storage, options);
}

async function friends(a: User, b: User): Promise<void> {
  await a.client.call("friendRequest", { username: b.name, greeting: "hello there" });
  await eventually(
    () => b.state.contacts.get(a.client.me!.userId)?.relation === pb.Relation.REQUEST_RECEIVED,
    "the friend request to arrive",
  );
  assert.equal(b.state.contacts.get(a.client.me!.userId)!.greeting, "hello there");
  await b.client.call("friendRespond", { username: a.name, accept: true });
  await eventually(
    () => a.state.contacts.get(b.client.me!.userId)?.relation === pb.Relation.FRIEND,
    "the acceptance to arrive",
  );
}

function texts(user: User, conversation: bigint): string[] {
  return (user.state.conversations.get(conversation)?.messages ?? [])
    .filter((m) => m.kind === pb.MessageKind.TEXT)
    .map((m) => (m.recalled ? "(recalled)" : m.text));
}

function noneTwice(user: User): void {
  assert.equal(new Set(user.seen).size, user.seen.length, `${user.name} saw an item twice`);
}

test("two users become friends and chat both ways, live", async () => {
  const alice = await newUser("alice");
  const bob = await newUser("bob");
  await eventually(() => alice.client.state === "online" && bob.client.state === "online", "both online");
  await friends(alice, bob);
  const a = alice.client.me!.userId;
  const b = bob.client.me!.userId;
  const sent = await alice.client.send({ toUserId: b, kind: pb.MessageKind.TEXT, text: "hi bob" });
  assert.equal(sent.duplicate, false);
  await eventually(() => texts(bob, a).includes("hi bob"), "bob to receive alice's message");
  await bob.client.send({ toUserId: a, kind: pb.MessageKind.TEXT, text: "hi alice" });
  await eventually(() => texts(alice, b).includes("hi alice"), "alice to receive bob's answer");
  assert.deepEqual(texts(alice, b), ["hi bob", "hi alice"]);
  assert.equal(bob.state.unread(bob.state.conversations.get(a)!), 1);
  assert.equal(bob.state.title(a), "alice nick");

  // A send retried with the same client message id is stored once.
  const again = await alice.client.send({
    toUserId: b, kind: pb.MessageKind.TEXT, text: "hi bob", clientMsgId: "fixed-id",
  });
  const repeat = await alice.client.send({
    toUserId: b, kind: pb.MessageKind.TEXT, text: "hi bob", clientMsgId: "fixed-id",
  });
  assert.equal(repeat.duplicate, true);
  assert.equal(repeat.messageId, again.messageId);

  // Read receipts: bob reads (everything alice sent, the repeated send's message included),
  // alice's side shows it.
  await eventually(
    () => bob.state.conversations.get(a)!.messages.some((m) => m.id === again.messageId),
    "bob to have every message of alice's",
  );
  const last = bob.state.conversations.get(a)!.messages.findLast((m) => !m.mine)!;
  await bob.client.call("markRead", { messageId: last.id });
  await eventually(() => bob.state.unread(bob.state.conversations.get(a)!) === 0, "bob's own receipt");
  const mine = alice.state.conversations.get(b)!.messages.find((m) => m.id === last.id)!;
  await eventually(() => alice.state.readByPeer(mine), "alice to see bob's receipt");

  // An edit and a reaction change the message on the other side.
  const typo = await alice.client.send({ toUserId: b, kind: pb.MessageKind.TEXT, text: "helo" });
  await eventually(() => texts(bob, a).includes("helo"), "the message to edit");
  await alice.client.edit(typo.messageId, "hello");
  await eventually(() => texts(bob, a).includes("hello"), "the edit to reach bob");
  const edited = bob.state.conversations.get(a)!.messages.find((m) => m.id === typo.messageId)!;
  assert.ok(edited.editedAtMs > 0);
  const tally = await bob.client.react(typo.messageId, "👍");
  assert.deepEqual(tally.map((r) => [r.emoji, r.userIds]), [["👍", [b]]]);
  const reacted = () => alice.state.conversations.get(b)!.messages.find((m) => m.id === typo.messageId)!;
  await eventually(() => reacted().reactions.length === 1, "the reaction to reach alice");
  await bob.client.react(typo.messageId, "");
  await eventually(() => reacted().reactions.length === 0, "the reaction to be taken back");

  // Search finds it by a word, in either language.
  await alice.client.send({ toUserId: b, kind: pb.MessageKind.TEXT, text: "明天在北京见面" });
  // A message is found within about a second of being stored.
  let found: string[] = [];
  const until = Date.now() + 10_000;
  while (found.length === 0) {
    assert.ok(Date.now() < until, "the message is searchable within 10 s");
    found = (await bob.client.search("北京")).hits.map((hit) => hit.message?.text ?? "");
    if (found.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.deepEqual(found, ["明天在北京见面"]);
  assert.equal((await bob.client.search("hello")).hits[0]?.message?.id, typo.messageId);

  // A recall removes the message on the other side.
  const oops = await alice.client.send({ toUserId: b, kind: pb.MessageKind.TEXT, text: "oops" });
  await eventually(() => texts(bob, a).includes("oops"), "the message to recall");
  await alice.client.call("recall", { messageId: oops.messageId });
  await eventually(() => texts(bob, a).at(-1) === "(recalled)", "the recall to reach bob");
  noneTwice(alice);
  noneTwice(bob);
});

test("typing and presence reach a friend live", async () => {
  const alice = await newUser("alice");
  const bob = await newUser("bob");
  await eventually(() => alice.client.state === "online" && bob.client.state === "online", "both online");
  await friends(alice, bob);
  const a = alice.client.me!.userId;
  const b = bob.client.me!.userId;

  const typing: pb.TypingEvent[] = [];
  bob.client.on("typing", (event) => typing.push(event));
  await alice.client.typing(b);
  await eventually(() => typing.length > 0, "bob to see alice typing");
  assert.equal(typing[0]!.userId, a);
  assert.equal(typing[0]!.conversationId, a);
  assert.equal(typing[0]!.expiresInMs, 6000);

  const seen: pb.UserPresence[] = [];
  alice.client.on("presence", (presence) => seen.push(presence));
  bob.client.stop();
  await eventually(() => seen.some((p) => p.state === pb.PresenceState.OFFLINE), "alice to see bob leave");
  const [asked] = await alice.client.presence([b]);
  assert.equal(asked!.state, pb.PresenceState.OFFLINE);
  assert.ok(asked!.lastSeenMs > 0n);
  bob.client.start();
  await eventually(() => seen.at(-1)?.state === pb.PresenceState.ONLINE, "alice to see bob back");

  // Offline push: the server's VAPID key to subscribe with, and a muted conversation.
  assert.equal((await alice.client.vapidPublicKey()).length, 65);
  await alice.client.setMuted(b, 0n);

  // Hidden from friends: told at once, and asking shows nothing.
  await bob.client.setPrivacy(pb.PresenceVisibility.NOBODY);
  await eventually(() => seen.at(-1)?.state === pb.PresenceState.HIDDEN, "alice to see bob hide");
  const [hidden] = await alice.client.presence([b]);
  assert.equal(hidden!.state, pb.PresenceState.HIDDEN);
});

test("a reload resumes from the stored key and shows nothing twice", async () => {
  const alice = await newUser("carol");
  const bob = await newUser("dave");
  await friends(alice, bob);
  const a = alice.client.me!.userId;
  for (let i = 0; i < 5; i++) {
    await alice.client.send({ toUserId: bob.client.me!.userId, kind: pb.MessageKind.TEXT, text: `before ${i}` });
  }
  await eventually(() => texts(bob, a).length === 5, "five messages");
  bob.client.stop();
  assert.equal(bob.client.state, "offline");
  // Sent while bob's page is closed.
  await alice.client.send({ toUserId: bob.client.me!.userId, kind: pb.MessageKind.TEXT, text: "while away" });

  const reloaded = await open(bob.name, bob.storage);
  assert.deepEqual(texts(reloaded, a), ["before 0", "before 1", "before 2", "before 3", "before 4"]);
  const restored = reloaded.seen.length;
  await eventually(() => texts(reloaded, a).includes("while away"), "the message sent while away");
  assert.equal(reloaded.seen.length, restored + 1, "only the new message came from the server");
  noneTwice(reloaded);
});

test("the client reconnects after a server restart and catches up", async () => {
  const alice = await newUser("erin");
  const bob = await newUser("frank");
  await friends(alice, bob);
  const a = alice.client.me!.userId;
  const b = bob.client.me!.userId;
  const states: string[] = [];
  bob.client.on("state", (state) => states.push(state));

  await server.restart();
  await eventually(() => alice.client.state === "online", "alice back online", 20_000);
  await alice.client.send({ toUserId: b, kind: pb.MessageKind.TEXT, text: "after the restart" });
  await eventually(() => texts(bob, a).includes("after the restart"), "bob to catch up", 20_000);
  // Back on the long link, after some time without it.
  await eventually(() => bob.client.state === "online" && states.length > 1, "bob back online", 20_000);
  assert.ok(states.some((state) => state !== "online"), `bob's states: ${states}`);
  noneTwice(bob);
});

test("the short link alone: polling sync, uploads in parts, media downloads", async () => {
  const alice = await newUser("grace", { transport: "http", pollMs: 200 });
  const bob = await newUser("heidi");
  await friends(alice, bob);
  assert.equal(alice.client.state, "polling");
  const b = bob.client.me!.userId;
  const a = alice.client.me!.userId;

  // 700 KiB: more than one UPLOAD may carry, so it goes up in parts.
  const data = new Uint8Array(700 * 1024).map((_, i) => (i * 31) % 251);
  const progress: number[] = [];
  const media = await alice.client.upload(b, data, "noise.bin", "application/octet-stream", (sent) =>
    progress.push(sent),
  );
  assert.ok(progress.length > 1, "sent in more than one part");
  assert.equal(media.size, BigInt(data.length));
  await alice.client.send({ toUserId: b, kind: pb.MessageKind.FILE, mediaId: media.mediaId, text: "a file" });
  await eventually(
    () => bob.state.conversations.get(a)?.messages.some((m) => m.kind === pb.MessageKind.FILE) ?? false,
    "the file message",
  );
  const file = bob.state.conversations.get(a)!.messages.find((m) => m.kind === pb.MessageKind.FILE)!;
  assert.equal(file.media!.name, "noise.bin");
  const blob = await bob.client.http.media(file.media!.mediaId);
  assert.deepEqual(new Uint8Array(await blob.arrayBuffer()), data);

  await bob.client.send({ toUserId: a, kind: pb.MessageKind.TEXT, text: "got it" });
  await eventually(() => texts(alice, b).includes("got it"), "alice, polling, to receive");
});

test("groups: create, talk, rename, and a system line for each change", async () => {
  const alice = await newUser("ivan");
  const bob = await newUser("judy");
  const carol = await newUser("mallory");
  await friends(alice, bob);
  await friends(alice, carol);
  const b = bob.client.me!.userId;
  const c = carol.client.me!.userId;
  const created = await alice.client.call("groupCreate", { name: "trip", memberIds: [b] });
  const g = created.group!.groupId;
  await alice.client.send({ toUserId: g, kind: pb.MessageKind.TEXT, text: "hello group", mentions: [b] });
  await eventually(() => texts(bob, g).includes("hello group"), "bob to get the group message");
  assert.equal(bob.state.mentioned(bob.state.conversations.get(g)!), true);
  await alice.client.call("groupInvite", { groupId: g, userIds: [c] });
  await alice.client.call("groupUpdate", { groupId: g, name: "the trip" });
  await eventually(() => carol.state.title(g) === "the trip", "carol to see the group's new name");
  const system = (user: User) =>
    user.state.conversations.get(g)!.messages.filter((m) => m.kind === pb.MessageKind.SYSTEM).map((m) => m.event!.action);
  await eventually(() => system(bob).includes(pb.GroupEvent_Action.RENAMED), "bob to see the rename line");
  assert.deepEqual(system(bob), [
    pb.GroupEvent_Action.CREATED,
    pb.GroupEvent_Action.INVITED,
    pb.GroupEvent_Action.RENAMED,
  ]);
  await carol.client.send({ toUserId: g, kind: pb.MessageKind.TEXT, text: "hi all" });
  await eventually(() => texts(alice, g).includes("hi all") && texts(bob, g).includes("hi all"), "everyone");
});

test("errors carry their documented codes", async () => {
  const alice = await newUser("niaj");
  await assert.rejects(alice.client.login(alice.name, "wrong password!"), (error: unknown) => {
    assert.ok(error instanceof MissiveError);
    assert.equal(error.code, Code.InvalidCredentials);
    return true;
  });
  await assert.rejects(
    alice.client.call("friendRequest", { username: "nobody_here_at_all" }),
    (error: unknown) => error instanceof MissiveError && error.code === Code.NotFound,
  );
  const stranger = await newUser("olivia");
  // Friends-only 1:1 messages by default.
  await assert.rejects(
    alice.client.send({ toUserId: stranger.client.me!.userId, kind: pb.MessageKind.TEXT, text: "hey" }),
    (error: unknown) => error instanceof MissiveError && error.code === Code.NotFriends,
  );
  await assert.rejects(
    alice.client.register(alice.name, PASSWORD),
    (error: unknown) => error instanceof MissiveError && error.code === Code.AlreadyExists,
  );
  // A server that is not there is a link error, not a code.
  const nowhere = new MissiveClient({ server: "http://127.0.0.1:9" });
  await assert.rejects(nowhere.register("someone", PASSWORD), LinkError);
});

test("a session logged out elsewhere signs the long link out", async () => {
  const alice = await newUser("peggy");
  await eventually(() => alice.client.state === "online", "online");
  const signedOut = new Promise<MissiveError>((resolve) => alice.client.on("signedOut", resolve));
  // The same token, used over the short link by another client of the same session.
  const other = new MissiveClient({ server: server.http, storage: alice.storage });
  await other.restore();
  await other.call("logout", {});
  const error = await signedOut;
  assert.equal(error.code, Code.Unauthenticated);
  assert.equal(alice.client.state, "signed-out");
  assert.equal(alice.client.me, undefined);
});

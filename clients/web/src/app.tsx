// The app's screens: logging in, and once in, the conversation list (or the contacts) beside
// the open chat. On a narrow screen one of the two shows at a time.

import { useEffect, useState } from "preact/hooks";
import { Chat } from "./chat.js";
import { Contacts } from "./contacts.js";
import { describe, type Model } from "./model.js";
import { pb, type Conversation } from "./sdk.js";
import { clock, initial, useModel } from "./util.js";

export function App({ model }: { model: Model }) {
  useModel(model);
  if (!model.chat) return <Login model={model} />;
  return <Main model={model} />;
}

function Login({ model }: { model: Model }) {
  const [mode, setMode] = useState<"login" | "register">("login");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const signedOut = model.link === "signed-out";

  async function submit(event: Event) {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const username = String(form.get("username")).trim();
    const password = String(form.get("password"));
    setBusy(true);
    setError("");
    try {
      if (mode === "register") await model.register(username, password, String(form.get("nickname") ?? "").trim());
      else await model.login(username, password);
    } catch (failure) {
      setError(describe(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main class="login">
      <h1>Missive</h1>
      <form onSubmit={submit} aria-describedby={error ? "login-error" : undefined}>
        <h2>{mode === "login" ? "Log in" : "Create an account"}</h2>
        {signedOut && mode === "login" && <p class="note">{model.signedOutBecause || "You were signed out. Log in again."}</p>}
        <label>
          Username
          <input name="username" autocomplete="username" required minLength={3} maxLength={32} pattern="[a-z][a-z0-9_.\-]*" title="Lower-case letters, digits, _ . -, starting with a letter" autofocus />
        </label>
        {mode === "register" && (
          <label>
            Display name <span class="hint">(optional)</span>
            <input name="nickname" autocomplete="nickname" maxLength={64} />
          </label>
        )}
        <label>
          Password
          <input name="password" type="password" autocomplete={mode === "login" ? "current-password" : "new-password"} required minLength={8} />
        </label>
        {error && <p id="login-error" class="error" role="alert">{error}</p>}
        <button type="submit" disabled={busy}>{mode === "login" ? "Log in" : "Create account"}</button>
        <button type="button" class="link" onClick={() => { setMode(mode === "login" ? "register" : "login"); setError(""); }}>
          {mode === "login" ? "New here? Create an account" : "Have an account? Log in"}
        </button>
      </form>
    </main>
  );
}

function Main({ model }: { model: Model }) {
  const [open, setOpen] = useState<bigint | undefined>(undefined);
  const [tab, setTab] = useState<"chats" | "contacts">("chats");
  const chat = model.chat!;
  model.open = open;

  useEffect(() => {
    if (open !== undefined) void model.markRead(open);
  }, [open]);

  const show = (conversation: bigint) => {
    setOpen(conversation);
    setTab("chats");
  };

  return (
    <div class={`main ${open === undefined ? "list-only" : "chat-open"}`}>
      <aside class="side">
        <header class="me">
          <div>
            <strong>{chat.title(chat.userId)}</strong>
            <LinkIndicator state={model.link} />
          </div>
          <NotificationsButton />
          <button type="button" class="quiet" onClick={() => void model.logout().then((failure) => {
            if (failure) alert(`Logged out here, but the server was not told (${failure}): this device stays among your devices until an operator removes it.`);
          })}>Log out</button>
        </header>
        <div role="tablist" class="tabs" aria-label="Lists">
          <button role="tab" aria-selected={tab === "chats"} onClick={() => setTab("chats")}>Chats</button>
          <button role="tab" aria-selected={tab === "contacts"} onClick={() => setTab("contacts")}>
            Contacts
            <RequestCount model={model} />
          </button>
        </div>
        {tab === "chats" ? <Conversations model={model} open={open} onOpen={show} /> : <Contacts model={model} onOpen={show} />}
      </aside>
      {open !== undefined ? (
        <Chat key={String(open)} model={model} conversation={open} onBack={() => setOpen(undefined)} />
      ) : (
        <main class="empty"><p>Pick a conversation, or add a friend under Contacts.</p></main>
      )}
    </div>
  );
}

function LinkIndicator({ state }: { state: Model["link"] }) {
  const text = {
    online: "Online",
    polling: "Online (without push)",
    connecting: "Reconnecting…",
    offline: "Offline, retrying…",
    "signed-out": "Signed out",
  }[state];
  return <span class={`link-state ${state}`} role="status" aria-live="polite">{text}</span>;
}

function NotificationsButton() {
  const [permission, setPermission] = useState(typeof Notification === "undefined" ? "denied" : Notification.permission);
  if (permission !== "default") return null;
  return (
    <button type="button" class="quiet" onClick={() => void Notification.requestPermission().then(setPermission)}>
      Enable notifications
    </button>
  );
}

function RequestCount({ model }: { model: Model }) {
  let count = 0;
  for (const contact of model.chat!.contacts.values()) if (contact.relation === pb.Relation.REQUEST_RECEIVED) count++;
  return count > 0 ? <span class="badge" aria-label={`${count} friend requests`}>{count}</span> : null;
}

function Conversations({ model, open, onOpen }: { model: Model; open: bigint | undefined; onOpen(id: bigint): void }) {
  const chat = model.chat!;
  const list = chat.sorted().filter((c) => c.messages.length > 0 || chat.contacts.has(c.id));
  if (list.length === 0) return <p class="hint pad">No conversations yet.</p>;
  return (
    <nav aria-label="Conversations">
      <ul class="conversations">
        {list.map((conversation) => (
          <ConversationRow key={String(conversation.id)} model={model} conversation={conversation} current={conversation.id === open} onOpen={onOpen} />
        ))}
      </ul>
    </nav>
  );
}

function ConversationRow({ model, conversation, current, onOpen }: { model: Model; conversation: Conversation; current: boolean; onOpen(id: bigint): void }) {
  const chat = model.chat!;
  const unread = chat.unread(conversation);
  const last = chat.preview(conversation);
  const title = conversation.id === 0n ? "Notices" : chat.title(conversation.id);
  const mentioned = unread > 0 && chat.mentioned(conversation);
  return (
    <li>
      <button type="button" class={`row ${current ? "current" : ""}`} aria-current={current ? "true" : undefined} onClick={() => onOpen(conversation.id)}
        aria-label={`${title}${conversation.isGroup ? " (group)" : ""}${unread ? `, ${unread} unread` : ""}`}>
        <span class="avatar" aria-hidden="true">{initial(title)}</span>
        <span class="names">
          <span class="title">{title}{conversation.isGroup && <span class="tag">group</span>}</span>
          <span class="preview">{mentioned && <span class="mention-flag">[@you] </span>}{last ? previewText(model, last) : ""}</span>
        </span>
        <span class="meta">
          {last && <time>{clock(last.sentAtMs)}</time>}
          {unread > 0 && <span class="badge">{unread}</span>}
        </span>
      </button>
    </li>
  );
}

function previewText(model: Model, message: Conversation["messages"][number]): string {
  const chat = model.chat!;
  const who = chat.sender(message);
  if (message.recalled) return `${who} recalled a message`;
  const prefix = chat.conversations.get(message.conversation)?.isGroup && message.from !== 0n ? `${who}: ` : "";
  switch (message.kind) {
    case pb.MessageKind.TEXT:
      return prefix + message.text;
    case pb.MessageKind.IMAGE:
      return `${prefix}[Image]`;
    case pb.MessageKind.FILE:
      return `${prefix}[File] ${message.media?.name ?? ""}`;
    case pb.MessageKind.SYSTEM:
      return message.text;
    default:
      return prefix + (message.fallbackText || message.text);
  }
}


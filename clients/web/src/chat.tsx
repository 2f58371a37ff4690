// One conversation: its messages (day separators, times, delivery and read state, images,
// files, recalls, system lines, invitations), the composer with @mentions and attachments,
// and for a group its panel of members and settings.

import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { GroupPanel } from "./group.js";
import { EDIT_WINDOW_MS, RECALL_WINDOW_MS, describe, type Model, type Pending } from "./model.js";
import { pb, type ChatMessage } from "./sdk.js";
import { clock, day, dayNumber, initial, size } from "./util.js";

interface Props {
  model: Model;
  conversation: bigint;
  onBack(): void;
}

export function Chat({ model, conversation, onBack }: Props) {
  const chat = model.chat!;
  const found = chat.conversations.get(conversation);
  const contact = chat.contacts.get(conversation);
  const isGroup = found?.isGroup ?? contact?.isGroup ?? false;
  const [panel, setPanel] = useState(false);
  const [error, setError] = useState("");
  // Conversation 0 holds the operators' notices (from `system`): nobody to answer.
  const notices = conversation === 0n;
  const title = notices ? "Notices" : chat.title(conversation);
  const gone = isGroup && (contact === undefined || contact.group?.role === pb.GroupRole.NONE || contact.group?.dissolved);

  useEffect(() => {
    if (isGroup && !gone) model.groupInfo(conversation).catch(() => undefined);
  }, [conversation, isGroup, gone]);
  useEffect(() => {
    if (!isGroup && !notices) model.watchPresence(conversation).catch(() => undefined);
  }, [conversation, isGroup]);

  return (
    <main class="chat" aria-label={`Chat with ${title}`}>
      <header class="chat-head">
        <button type="button" class="back" onClick={onBack} aria-label="Back to the list">‹</button>
        <div class="title">
          <h2>{title}</h2>
          {!notices && <Status model={model} conversation={conversation} isGroup={isGroup} />}
        </div>
        {isGroup && contact?.group?.announcement && <p class="announcement" title="Announcement">{contact.group.announcement}</p>}
        {isGroup ? (
          <button type="button" class="quiet" aria-expanded={panel} onClick={() => setPanel(!panel)}>Group info</button>
        ) : notices ? null : (
          <PeerMenu model={model} peer={conversation} onError={setError} />
        )}
      </header>
      {error && <p class="error" role="alert">{error}</p>}
      <div class="chat-body">
        <Messages model={model} conversation={conversation} />
        {panel && isGroup && <GroupPanel model={model} groupId={conversation} onClose={() => setPanel(false)} />}
      </div>
      {notices ? (
        <p class="hint pad">Notices from the operators of this server.</p>
      ) : gone ? (
        <p class="hint pad">You are no longer a member of this group.</p>
      ) : (
        <Composer model={model} conversation={conversation} isGroup={isGroup} />
      )}
    </main>
  );
}

/** Under the title: who is typing, else (1:1) whether the peer is online or when last seen. */
function Status({ model, conversation, isGroup }: { model: Model; conversation: bigint; isGroup: boolean }) {
  const chat = model.chat!;
  const typists = model.typingIn(conversation);
  let said = "";
  if (typists.length > 0) {
    said = isGroup ? `${typists.map((id) => chat.title(id)).join(", ")} ${typists.length > 1 ? "are" : "is"} typing…` : "typing…";
  } else if (!isGroup) {
    const presence = model.presences.get(conversation);
    if (presence?.state === pb.PresenceState.ONLINE) said = "online";
    else if (presence?.state === pb.PresenceState.OFFLINE && presence.lastSeenMs > 0n) {
      const seen = Number(presence.lastSeenMs);
      const when = dayNumber(seen) === dayNumber(Date.now()) ? clock(seen) : `${day(seen, dayNumber(Date.now()))} ${clock(seen)}`;
      said = `last seen ${when}`;
    }
  }
  return <p class="presence" aria-live="polite">{said}</p>;
}

function PeerMenu({ model, peer, onError }: { model: Model; peer: bigint; onError(e: string): void }) {
  const contact = model.chat!.contacts.get(peer);
  const act = (run: () => Promise<unknown>) => run().then(() => onError(""), (e) => onError(describe(e)));
  return (
    <div class="peer-menu">
      <button type="button" class="quiet" onClick={() => {
        const remark = prompt("Your name for this contact (empty removes it)", contact?.remark ?? "");
        if (remark !== null) act(() => model.client.call("setRemark", { userId: peer, remark }));
      }}>Remark</button>
      <button type="button" class="quiet" onClick={() => act(() => model.client.call("setBlocked", { userId: peer, blocked: !contact?.blocked }))}>
        {contact?.blocked ? "Unblock" : "Block"}
      </button>
    </div>
  );
}

/** Messages shown at first, and added each time the reader reaches the top. */
const PAGE = 150;

function Messages({ model, conversation }: { model: Model; conversation: bigint }) {
  const chat = model.chat!;
  const all = chat.conversations.get(conversation)?.messages ?? [];
  const pending = model.pending.filter((p) => p.conversation === conversation);
  const list = useRef<HTMLOListElement>(null);
  const earlier = useRef<HTMLLIElement>(null);
  const stick = useRef(true);
  /** The list's height before earlier messages were added, to keep the view where it was. */
  const grownFrom = useRef<number | undefined>(undefined);
  const [shown, setShown] = useState(PAGE);
  /** One more page of earlier messages, keeping the reader where they were. */
  const showEarlier = () => {
    grownFrom.current = list.current?.scrollHeight;
    setShown((n) => n + PAGE);
  };
  const [viewing, setViewing] = useState<string | undefined>(undefined);
  const messages = all.length > shown ? all.slice(all.length - shown) : all;
  const hidden = all.length - messages.length;

  useLayoutEffect(() => {
    const element = list.current;
    if (!element) return;
    if (grownFrom.current !== undefined) {
      element.scrollTop += element.scrollHeight - grownFrom.current;
      grownFrom.current = undefined;
    } else if (stick.current) {
      element.scrollTop = element.scrollHeight;
    }
  });

  // Reaching the top shows the next page of earlier messages.
  useEffect(() => {
    const sentinel = earlier.current;
    if (!sentinel || !list.current) return;
    const observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((entry) => entry.isIntersecting)) showEarlier();
      },
      { root: list.current },
    );
    observer.observe(sentinel);
    return () => observer.disconnect();
  }, [hidden > 0, shown]);

  // Days compared as numbers; only a separator is worded.
  const today = dayNumber(Date.now());
  let lastDay = Number.NaN;
  const rows = [];
  if (hidden > 0) {
    rows.push(
      <li key="earlier" ref={earlier} class="earlier">
        <button type="button" class="link small" onClick={showEarlier}>
          Show {Math.min(hidden, PAGE)} earlier messages
        </button>
      </li>,
    );
  }
  for (const message of messages) {
    if (message.kind === pb.MessageKind.RECEIPT) continue;
    const then = dayNumber(message.sentAtMs);
    if (then !== lastDay) {
      lastDay = then;
      const label = day(message.sentAtMs, today);
      rows.push(<li key={`day ${label}`} class="day" role="separator"><span>{label}</span></li>);
    }
    rows.push(<MessageRow key={String(message.id)} model={model} message={message} onView={setViewing} />);
  }
  for (const entry of pending) rows.push(<PendingRow key={entry.clientMsgId} model={model} entry={entry} />);

  return (
    <>
      <Announcer model={model} newest={all[all.length - 1]} />
      <ol class="messages" ref={list} aria-label="Messages"
        onScroll={(event) => {
          const element = event.currentTarget;
          stick.current = element.scrollHeight - element.scrollTop - element.clientHeight < 40;
        }}>
        {rows}
      </ol>
      {viewing && <Viewer url={viewing} onClose={() => setViewing(undefined)} />}
    </>
  );
}

/** The image viewer: takes the focus, gives it back, and closes on Escape or a click. */
function Viewer({ url, onClose }: { url: string; onClose(): void }) {
  const close = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    const before = document.activeElement as HTMLElement | null;
    close.current?.focus();
    const escape = (event: KeyboardEvent) => event.key === "Escape" && onClose();
    document.addEventListener("keydown", escape);
    return () => {
      document.removeEventListener("keydown", escape);
      before?.focus();
    };
  }, []);
  return (
    <div class="viewer" role="dialog" aria-modal="true" aria-label="Image" onClick={onClose}>
      <img src={url} alt="" />
      <button type="button" ref={close} onClick={onClose}>Close</button>
    </div>
  );
}

/** Tells screen readers of a new message of someone else's (the list itself is not live: it
 * would read out every message shown). */
function Announcer({ model, newest }: { model: Model; newest: ChatMessage | undefined }) {
  const [said, setSaid] = useState("");
  const first = useRef(newest?.id);
  useEffect(() => {
    if (!newest || newest.mine || newest.id === first.current || newest.kind === pb.MessageKind.RECEIPT) return;
    first.current = undefined;
    const what = newest.kind === pb.MessageKind.TEXT ? newest.text : newest.fallbackText;
    setSaid(`${model.chat!.sender(newest)}: ${what}`);
  }, [newest?.id]);
  return <p class="sr-only" aria-live="polite">{said}</p>;
}

function MessageRow({ model, message, onView }: { model: Model; message: ChatMessage; onView(url: string): void }) {
  const chat = model.chat!;
  const isGroup = chat.conversations.get(message.conversation)?.isGroup ?? false;
  const who = chat.sender(message);
  if (message.recalled) {
    return <li class="system">{who} recalled a message</li>;
  }
  if (message.kind === pb.MessageKind.SYSTEM) {
    return <li class="system">{message.text}</li>;
  }
  if (message.kind === pb.MessageKind.GROUP_INVITATION) {
    return <Invitation model={model} message={message} />;
  }
  const mentionsMe = message.mentions.includes(chat.userId);
  const read = chat.readByPeer(message);
  const recallable = message.mine && Date.now() - message.sentAtMs < RECALL_WINDOW_MS;
  const editable = message.mine && message.kind === pb.MessageKind.TEXT && Date.now() - message.sentAtMs < EDIT_WINDOW_MS;
  const failed = (e: unknown) => alert(describe(e));
  return (
    <li class={`message ${message.mine ? "mine" : "theirs"} ${mentionsMe ? "mentions-me" : ""}`} data-id={String(message.id)}>
      {!message.mine && <span class="avatar small" aria-hidden="true">{initial(who)}</span>}
      <div class="bubble">
        {isGroup && !message.mine && <bdi class="sender">{who}</bdi>}
        <Body model={model} message={message} onView={onView} />
        <span class="info">
          {message.editedAtMs > 0 && <span class="edited" title={`Edited at ${clock(message.editedAtMs)}`}>edited</span>}
          <time dateTime={new Date(message.sentAtMs).toISOString()}>{clock(message.sentAtMs)}</time>
          {message.mine && !isGroup && <span class="status">{read ? "Read" : "Delivered"}</span>}
          {message.mine && isGroup && <span class="status">Sent</span>}
          {recallable && (
            <button type="button" class="link small" onClick={() => void model.recall(message).catch(failed)}>Recall</button>
          )}
          {editable && (
            <button type="button" class="link small" onClick={() => {
              const text = prompt("Edit your message", message.text);
              if (text !== null && text.trim() && text !== message.text) void model.edit(message, text.trim()).catch(failed);
            }}>Edit</button>
          )}
          <ReactionPicker onPick={(emoji) => void model.react(message, emoji).catch(failed)} />
        </span>
        {message.reactions.length > 0 && (
          <ul class="reactions" aria-label="Reactions">
            {message.reactions.map((reaction) => {
              const mine = reaction.userIds.includes(chat.userId);
              const who = reaction.userIds.map((id) => (id === chat.userId ? "you" : chat.title(id))).join(", ");
              return (
                <li key={reaction.emoji}>
                  <button type="button" class={`reaction ${mine ? "mine" : ""}`} aria-pressed={mine} title={who}
                    aria-label={`${reaction.emoji} ${reaction.userIds.length}`}
                    onClick={() => void model.react(message, reaction.emoji).catch(failed)}>
                    {reaction.emoji} {reaction.userIds.length}
                  </button>
                </li>
              );
            })}
          </ul>
        )}
      </div>
    </li>
  );
}

/** The emoji a message can be given in one click. */
const QUICK_REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];

function ReactionPicker({ onPick }: { onPick(emoji: string): void }) {
  const [open, setOpen] = useState(false);
  return (
    <span class="reaction-picker">
      <button type="button" class="link small" aria-expanded={open} onClick={() => setOpen(!open)}>React</button>
      {open && (
        <span role="menu" aria-label="Reactions to give">
          {QUICK_REACTIONS.map((emoji) => (
            <button type="button" role="menuitem" key={emoji} aria-label={`React ${emoji}`}
              onClick={() => { setOpen(false); onPick(emoji); }}>{emoji}</button>
          ))}
        </span>
      )}
    </span>
  );
}

function Body({ model, message, onView }: { model: Model; message: ChatMessage; onView(url: string): void }) {
  switch (message.kind) {
    case pb.MessageKind.TEXT:
      return <p class="text">{highlight(model, message)}</p>;
    case pb.MessageKind.IMAGE:
      return <Image model={model} message={message} onView={onView} />;
    case pb.MessageKind.FILE:
      return <FileCard model={model} message={message} />;
    default:
      return <p class="text fallback">{message.fallbackText || message.text}</p>;
  }
}

/** The text with `@name` of each mentioned member marked. */
function highlight(model: Model, message: ChatMessage) {
  if (message.mentions.length === 0) return message.text;
  const chat = model.chat!;
  // As the sender typed them: nicknames (a remark is the reader's own).
  const names = message.mentions.map((id) => `@${chat.nickname(id)}`);
  const parts: (string | preact.JSX.Element)[] = [];
  let rest = message.text;
  for (;;) {
    let at = -1;
    let name = "";
    for (const candidate of names) {
      const index = rest.indexOf(candidate);
      if (index >= 0 && (at < 0 || index < at)) {
        at = index;
        name = candidate;
      }
    }
    if (at < 0) break;
    parts.push(rest.slice(0, at), <mark class="mention">{name}</mark>);
    rest = rest.slice(at + name.length);
  }
  parts.push(rest);
  return parts;
}

function useMedia(model: Model, mediaId: string | undefined): string | undefined {
  const [url, setUrl] = useState<string | undefined>(undefined);
  useEffect(() => {
    if (mediaId) model.mediaUrl(mediaId).then(setUrl, () => setUrl(undefined));
  }, [mediaId]);
  return url;
}

function Image({ model, message, onView }: { model: Model; message: ChatMessage; onView(url: string): void }) {
  const url = useMedia(model, message.media?.mediaId);
  const name = message.media?.name ?? "image";
  return (
    <>
      <button type="button" class="image" onClick={() => url && onView(url)} aria-label={`Image ${name}, open larger`}>
        {url ? <img src={url} alt={name} loading="lazy" /> : <span class="placeholder">Loading image…</span>}
      </button>
      {message.text && <p class="text">{message.text}</p>}
    </>
  );
}

function FileCard({ model, message }: { model: Model; message: ChatMessage }) {
  const media = message.media;
  const [url, setUrl] = useState<string | undefined>(undefined);
  if (!media) return <p class="text fallback">{message.fallbackText}</p>;
  return (
    <div class="file">
      <span class="file-name">{media.name}</span>
      <span class="file-size">{size(Number(media.size))}</span>
      {url ? (
        <a href={url} download={media.name}>Save</a>
      ) : (
        <button type="button" class="link" onClick={() => void model.mediaUrl(media.mediaId).then((u) => {
          setUrl(u);
          const a = document.createElement("a");
          a.href = u;
          a.download = media.name;
          a.click();
        })}>Download</button>
      )}
    </div>
  );
}

function Invitation({ model, message }: { model: Model; message: ChatMessage }) {
  const [state, setState] = useState("");
  const group = message.event?.value ?? "a group";
  return (
    <li class="system invitation">
      <span>{model.chat!.sender(message)} invited you to {group}.</span>
      {!message.mine && (
        <button type="button" disabled={state === "joined"} onClick={() => model.client.call("groupJoin", { invitation: message.invitation })
          .then((answer) => { model.keep(answer); setState("joined"); }, (e) => setState(describe(e)))}>
          {state === "joined" ? "Joined" : "Join"}
        </button>
      )}
      {state && state !== "joined" && <span class="error">{state}</span>}
    </li>
  );
}

function PendingRow({ model, entry }: { model: Model; entry: Pending }) {
  return (
    <li class="message mine pending">
      <div class="bubble">
        <p class="text">{entry.kind === pb.MessageKind.TEXT ? entry.text : `Uploading ${entry.text}…`}</p>
        <span class="info">
          <time>{clock(entry.sentAtMs)}</time>
          {entry.failed ? (
            <>
              <span class="status error">Not sent: {entry.failed}</span>
              <button type="button" class="link small" onClick={() => void model.attempt(entry)}>Retry</button>
              <button type="button" class="link small" onClick={() => model.dismiss(entry)}>Dismiss</button>
            </>
          ) : (
            <span class="status">Sending…</span>
          )}
        </span>
      </div>
    </li>
  );
}

function Composer({ model, conversation, isGroup }: { model: Model; conversation: bigint; isGroup: boolean }) {
  const [text, setText] = useState("");
  const [mentions, setMentions] = useState<Map<string, bigint>>(new Map());
  const [picker, setPicker] = useState<{ query: string; index: number } | undefined>(undefined);
  const input = useRef<HTMLTextAreaElement>(null);
  const file = useRef<HTMLInputElement>(null);
  const chat = model.chat!;
  const members = isGroup ? (model.groups.get(conversation)?.members ?? []).filter((m) => m.userId !== chat.userId) : [];
  const matches = picker ? members.filter((m) => (m.nickname || m.username).toLowerCase().startsWith(picker.query.toLowerCase())).slice(0, 8) : [];

  function send() {
    const body = text.trim();
    if (!body) return;
    const mentioned = [...mentions].filter(([name]) => body.includes(`@${name}`)).map(([, id]) => id);
    setText("");
    setMentions(new Map());
    void model.sendText(conversation, body, mentioned);
  }

  function pick(member: pb.GroupMember) {
    const element = input.current!;
    const caret = element.selectionStart ?? text.length;
    const before = text.slice(0, caret).replace(/@([^\s@]*)$/, "");
    const name = member.nickname || member.username;
    const next = `${before}@${name} ${text.slice(caret)}`;
    setText(next);
    setMentions(new Map(mentions).set(name, member.userId));
    setPicker(undefined);
    requestAnimationFrame(() => {
      element.focus();
      const at = before.length + name.length + 2;
      element.setSelectionRange(at, at);
    });
  }

  function typed(value: string, caret: number) {
    setText(value);
    model.typing(conversation, !value.trim());
    const query = isGroup ? /@([^\s@]*)$/.exec(value.slice(0, caret)) : null;
    setPicker(query ? { query: query[1]!, index: 0 } : undefined);
  }

  return (
    <form class="composer" onSubmit={(e) => { e.preventDefault(); send(); }}>
      <input ref={file} type="file" hidden aria-hidden="true" onChange={(e) => {
        const chosen = e.currentTarget.files?.[0];
        if (chosen) void model.sendFile(conversation, chosen);
        e.currentTarget.value = "";
      }} />
      <button type="button" class="quiet" onClick={() => file.current?.click()} aria-label="Attach an image or a file">+</button>
      <div class="composer-input">
        {picker && matches.length > 0 && (
          <ul class="picker" role="listbox" aria-label="Mention a member" id="mention-picker">
            {matches.map((member, index) => (
              <li key={String(member.userId)} role="option" id={`mention-${member.userId}`} aria-selected={index === picker.index}
                onMouseDown={(e) => { e.preventDefault(); pick(member); }}>
                {member.nickname || member.username} <span class="hint">@{member.username}</span>
              </li>
            ))}
          </ul>
        )}
        <textarea ref={input} value={text} rows={1} placeholder="Write a message" aria-label="Message"
          aria-autocomplete={isGroup ? "list" : undefined}
          aria-controls={picker && matches.length ? "mention-picker" : undefined}
          aria-activedescendant={picker && matches[picker.index] ? `mention-${matches[picker.index]!.userId}` : undefined}
          onInput={(e) => typed(e.currentTarget.value, e.currentTarget.selectionStart ?? e.currentTarget.value.length)}
          onKeyDown={(e) => {
            if (picker && matches.length > 0) {
              if (e.key === "ArrowDown" || e.key === "ArrowUp") {
                e.preventDefault();
                const step = e.key === "ArrowDown" ? 1 : -1;
                setPicker({ ...picker, index: (picker.index + step + matches.length) % matches.length });
                return;
              }
              if (e.key === "Enter" || e.key === "Tab") {
                e.preventDefault();
                pick(matches[picker.index]!);
                return;
              }
              if (e.key === "Escape") {
                setPicker(undefined);
                return;
              }
            }
            if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
              e.preventDefault();
              send();
            }
          }} />
      </div>
      <button type="submit" disabled={!text.trim()}>Send</button>
    </form>
  );
}

// The contact list: adding friends with a greeting, answering requests, friends (remark,
// block, remove), groups, and making a group from friends.

import { useState } from "preact/hooks";
import { describe, type Model } from "./model.js";
import { pb } from "./sdk.js";
import { initial } from "./util.js";

export function Contacts({ model, onOpen }: { model: Model; onOpen(id: bigint): void }) {
  const chat = model.chat!;
  const [error, setError] = useState("");
  const [creating, setCreating] = useState(false);
  const all = [...chat.contacts.values()];
  const by = (relation: pb.Relation) => all.filter((c) => c.relation === relation && !c.isGroup);
  const received = by(pb.Relation.REQUEST_RECEIVED);
  const sent = by(pb.Relation.REQUEST_SENT);
  const friends = by(pb.Relation.FRIEND);
  const groups = all.filter((c) => c.isGroup && c.group?.role !== pb.GroupRole.NONE && !c.group?.dissolved);
  const blocked = all.filter((c) => c.blocked && c.relation !== pb.Relation.FRIEND);
  const act = (run: () => Promise<unknown>) => run().then(() => setError(""), (e) => setError(describe(e)));
  const name = (c: pb.Contact) => chat.title(c.userId);

  return (
    <div class="contacts">
      <AddFriend model={model} />
      {error && <p class="error pad" role="alert">{error}</p>}
      {received.length > 0 && (
        <section aria-labelledby="requests">
          <h3 id="requests">Friend requests</h3>
          <ul>
            {received.map((c) => (
              <li key={String(c.userId)} class="contact">
                <span class="avatar" aria-hidden="true">{initial(name(c))}</span>
                <span class="names"><span class="title">{name(c)}</span>{c.greeting && <span class="preview">“{c.greeting}”</span>}</span>
                <button type="button" onClick={() => act(() => model.client.call("friendRespond", { userId: c.userId, accept: true }))}>Accept</button>
                <button type="button" class="quiet" onClick={() => act(() => model.client.call("friendRespond", { userId: c.userId, accept: false }))}>Decline</button>
              </li>
            ))}
          </ul>
        </section>
      )}
      {sent.length > 0 && (
        <section aria-labelledby="sent">
          <h3 id="sent">Waiting for an answer</h3>
          <ul>
            {sent.map((c) => (
              <li key={String(c.userId)} class="contact">
                <span class="names"><span class="title">{name(c)}</span></span>
                <button type="button" class="quiet" onClick={() => act(() => model.client.call("friendRemove", { userId: c.userId }))}>Withdraw</button>
              </li>
            ))}
          </ul>
        </section>
      )}
      <section aria-labelledby="friends">
        <h3 id="friends">Friends</h3>
        {friends.length === 0 && <p class="hint pad">No friends yet.</p>}
        <ul>
          {friends.map((c) => (
            <li key={String(c.userId)} class="contact">
              <button type="button" class="row" onClick={() => onOpen(c.userId)}>
                <span class="avatar" aria-hidden="true">{initial(name(c))}</span>
                <span class="names"><span class="title">{name(c)}</span><span class="preview">@{c.username}{c.blocked ? " · blocked" : ""}</span></span>
              </button>
              <details class="actions">
                <summary aria-label={`Actions for ${name(c)}`}>⋯</summary>
                <button type="button" class="quiet" onClick={() => {
                  const remark = prompt(`Your name for ${c.username} (empty removes it)`, c.remark);
                  if (remark !== null) act(() => model.client.call("setRemark", { userId: c.userId, remark }));
                }}>Remark</button>
                <button type="button" class="quiet" onClick={() => act(() => model.client.call("setBlocked", { userId: c.userId, blocked: !c.blocked }))}>{c.blocked ? "Unblock" : "Block"}</button>
                <button type="button" class="quiet danger" onClick={() => confirm(`Remove ${name(c)} from your friends?`) && act(() => model.client.call("friendRemove", { userId: c.userId }))}>Remove</button>
              </details>
            </li>
          ))}
        </ul>
      </section>
      <section aria-labelledby="groups">
        <h3 id="groups">Groups</h3>
        <button type="button" onClick={() => setCreating(!creating)} aria-expanded={creating}>New group</button>
        {creating && <NewGroup model={model} friends={friends} onCreated={(id) => { setCreating(false); onOpen(id); }} />}
        <ul>
          {groups.map((c) => (
            <li key={String(c.userId)} class="contact">
              <button type="button" class="row" onClick={() => onOpen(c.userId)}>
                <span class="avatar" aria-hidden="true">{initial(name(c))}</span>
                <span class="names"><span class="title">{name(c)}</span></span>
              </button>
            </li>
          ))}
        </ul>
      </section>
      {blocked.length > 0 && (
        <section aria-labelledby="blocked">
          <h3 id="blocked">Blocked</h3>
          <ul>
            {blocked.map((c) => (
              <li key={String(c.userId)} class="contact">
                <span class="names"><span class="title">{name(c)}</span></span>
                <button type="button" class="quiet" onClick={() => act(() => model.client.call("setBlocked", { userId: c.userId, blocked: false }))}>Unblock</button>
              </li>
            ))}
          </ul>
        </section>
      )}
    </div>
  );
}

function AddFriend({ model }: { model: Model }) {
  const [status, setStatus] = useState("");
  return (
    <form class="add-friend" onSubmit={(event) => {
      event.preventDefault();
      const form = event.currentTarget;
      const data = new FormData(form);
      const username = String(data.get("username")).trim();
      model.client.call("friendRequest", { username, greeting: String(data.get("greeting")).trim() }).then(
        () => { setStatus(`Request sent to ${username}.`); form.reset(); },
        (e) => setStatus(describe(e)),
      );
    }}>
      <h3>Add a friend</h3>
      <label>Username <input name="username" required autocomplete="off" /></label>
      <label>Greeting <input name="greeting" maxLength={256} placeholder="Hi, it's me" /></label>
      <button type="submit">Send request</button>
      {status && <p class="note" role="status">{status}</p>}
    </form>
  );
}

function NewGroup({ model, friends, onCreated }: { model: Model; friends: pb.Contact[]; onCreated(id: bigint): void }) {
  const [error, setError] = useState("");
  return (
    <form class="new-group" onSubmit={(event) => {
      event.preventDefault();
      const data = new FormData(event.currentTarget);
      const memberIds = data.getAll("member").map((v) => BigInt(String(v)));
      model.client.call("groupCreate", { name: String(data.get("name")).trim(), memberIds }).then(
        (answer) => onCreated(model.keep(answer).groupId),
        (e) => setError(describe(e)),
      );
    }}>
      <label>Group name <input name="name" required maxLength={64} /></label>
      <fieldset>
        <legend>Members</legend>
        {friends.length === 0 && <p class="hint">Add friends first.</p>}
        {friends.map((c) => (
          <label key={String(c.userId)} class="check"><input type="checkbox" name="member" value={String(c.userId)} /> {model.chat!.title(c.userId)}</label>
        ))}
      </fieldset>
      <button type="submit">Create</button>
      {error && <p class="error" role="alert">{error}</p>}
    </form>
  );
}

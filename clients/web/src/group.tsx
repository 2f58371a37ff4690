// A group's panel: name and announcement (owner and admins change them), the members with
// their roles, inviting friends, removing members, admins, handing over ownership, leaving
// and dissolving.

import { useState } from "preact/hooks";
import { describe, type Model } from "./model.js";
import { pb } from "./sdk.js";

const ROLE = { [pb.GroupRole.OWNER]: "owner", [pb.GroupRole.ADMIN]: "admin", [pb.GroupRole.MEMBER]: "", [pb.GroupRole.NONE]: "" };

export function GroupPanel({ model, groupId, onClose }: { model: Model; groupId: bigint; onClose(): void }) {
  const chat = model.chat!;
  const group = model.groups.get(groupId);
  const [error, setError] = useState("");
  const [inviting, setInviting] = useState(false);
  if (!group) return <aside class="panel" aria-label="Group info"><p class="hint pad">Loading…</p></aside>;
  const me = group.members.find((m) => m.userId === chat.userId);
  const role = me?.role ?? pb.GroupRole.NONE;
  const manager = role === pb.GroupRole.OWNER || role === pb.GroupRole.ADMIN;
  const act = (run: () => Promise<pb.GroupResponse>) =>
    run().then((answer) => { model.keep(answer); setError(""); }, (e) => setError(describe(e)));
  const inGroup = new Set(group.members.map((m) => m.userId));
  const invitable = [...chat.contacts.values()].filter((c) => c.relation === pb.Relation.FRIEND && !inGroup.has(c.userId));

  return (
    <aside class="panel" aria-label="Group info">
      <header>
        <h3>{group.name}</h3>
        <button type="button" class="quiet" onClick={onClose} aria-label="Close group info">×</button>
      </header>
      {error && <p class="error" role="alert">{error}</p>}
      {manager && (
        <form onSubmit={(e) => {
          e.preventDefault();
          const data = new FormData(e.currentTarget);
          const name = String(data.get("name")).trim();
          const announcement = String(data.get("announcement"));
          // GROUP_UPDATE changes one of the two at a time (protocol §6.14).
          act(async () => {
            let answer: pb.GroupResponse | undefined;
            if (name !== group.name) answer = await model.client.call("groupUpdate", { groupId, name });
            if (announcement !== group.announcement) answer = await model.client.call("groupUpdate", { groupId, announcement });
            return answer ?? { $typeName: "missive.v1.GroupResponse", group };
          });
        }}>
          <label>Name <input name="name" defaultValue={group.name} maxLength={64} required /></label>
          <label>Announcement <textarea name="announcement" defaultValue={group.announcement} rows={3} /></label>
          <button type="submit">Save</button>
        </form>
      )}
      {!manager && group.announcement && <p class="announcement">{group.announcement}</p>}
      <h4>{group.members.length} members</h4>
      <ul class="members">
        {group.members.map((m) => (
          <li key={String(m.userId)}>
            <bdi>{m.userId === chat.userId ? "You" : chat.contacts.has(m.userId) ? chat.title(m.userId) : m.nickname || m.username}</bdi>
            {ROLE[m.role] && <span class="tag">{ROLE[m.role]}</span>}
            {m.userId !== chat.userId && (
              <span class="member-actions">
                {role === pb.GroupRole.OWNER && m.role !== pb.GroupRole.OWNER && (
                  <>
                    <button type="button" class="link small" onClick={() => act(() => model.client.call("groupSetAdmin", { groupId, userId: m.userId, admin: m.role !== pb.GroupRole.ADMIN }))}>
                      {m.role === pb.GroupRole.ADMIN ? "Remove admin" : "Make admin"}
                    </button>
                    <button type="button" class="link small" onClick={() => confirm(`Make ${m.nickname || m.username} the owner?`) && act(() => model.client.call("groupTransfer", { groupId, userId: m.userId }))}>Make owner</button>
                  </>
                )}
                {(role === pb.GroupRole.OWNER || (role === pb.GroupRole.ADMIN && m.role === pb.GroupRole.MEMBER)) && (
                  <button type="button" class="link small danger" onClick={() => act(() => model.client.call("groupRemove", { groupId, userIds: [m.userId] }))}>Remove</button>
                )}
              </span>
            )}
          </li>
        ))}
      </ul>
      <button type="button" onClick={() => setInviting(!inviting)} aria-expanded={inviting}>Invite friends</button>
      {inviting && (
        <form onSubmit={(e) => {
          e.preventDefault();
          const userIds = new FormData(e.currentTarget).getAll("invite").map((v) => BigInt(String(v)));
          if (userIds.length) act(() => model.client.call("groupInvite", { groupId, userIds }));
          setInviting(false);
        }}>
          {invitable.length === 0 && <p class="hint">Every friend is already here.</p>}
          {invitable.map((c) => (
            <label key={String(c.userId)} class="check"><input type="checkbox" name="invite" value={String(c.userId)} /> {chat.title(c.userId)}</label>
          ))}
          <button type="submit">Invite</button>
        </form>
      )}
      <div class="group-exit">
        {role === pb.GroupRole.OWNER ? (
          <button type="button" class="danger" onClick={() => confirm("Dissolve the group for everyone?") && act(() => model.client.call("groupDissolve", { groupId }))}>Dissolve group</button>
        ) : (
          <button type="button" class="danger" onClick={() => confirm("Leave the group?") && act(() => model.client.call("groupLeave", { groupId }))}>Leave group</button>
        )}
      </div>
    </aside>
  );
}

//! Write-through caches in front of the database, so that a sync in steady state reads no
//! page at all.
//!
//! Why: every commit invalidates the page cache of every read connection (SQLite's WAL
//! readers start each transaction cold after a write), so under a stream of sends each read
//! paid for re-reading its B-tree pages. The store is the only writer of its file, so caches
//! updated by the writer right after each commit are always coherent.

use missive_proto::client::Message;
use missive_proto::internal::{AccountRecord, ContactRecord, GroupState, InboxItem, InboxPage};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 64;
/// Users (or groups) per shard at most.
const USERS_PER_SHARD_MAX: usize = 4096;
/// Contact entries per shard at most: a send reads the recipient's entry for its sender,
/// so this holds the pairs that wrote to each other lately, present or absent.
const CONTACTS_PER_SHARD_MAX: usize = 4096;
/// Newest inbox entries kept per user; older ones are read from the database.
const INBOX_TAIL_MAX: usize = 256;

struct Shard<K, V> {
    /// Bumped each time the shard is emptied; a reader that saw another generation before
    /// its database read must not cache what it read, since a newer write may have been
    /// dropped with the shard.
    generation: u64,
    entries: HashMap<K, V>,
}

/// What a cache is keyed by: a user or group id, or an (owner, peer) pair.
trait Key: Copy + Eq + std::hash::Hash {
    fn shard(&self) -> usize;
}

impl Key for u64 {
    fn shard(&self) -> usize {
        (self % SHARDS as u64) as usize
    }
}

impl Key for (u64, u64) {
    fn shard(&self) -> usize {
        // Both ids spread the pairs: one busy owner's entries do not all share a shard.
        (self.0 ^ self.1.rotate_left(17)).shard()
    }
}

struct Sharded<K, V> {
    shards: Vec<Mutex<Shard<K, V>>>,
    /// Entries per shard at most; a full shard is emptied and refills from the database.
    per_shard_max: usize,
}

impl<K: Key, V> Sharded<K, V> {
    fn new(per_shard_max: usize) -> Self {
        let shard = || Mutex::new(Shard { generation: 0, entries: HashMap::new() });
        Sharded { shards: (0..SHARDS).map(|_| shard()).collect(), per_shard_max }
    }

    fn shard(&self, key: K) -> std::sync::MutexGuard<'_, Shard<K, V>> {
        self.shards[key.shard()].lock().expect("cache shard")
    }

    fn get<R>(&self, key: K, f: impl FnOnce(Option<&V>) -> R) -> R {
        f(self.shard(key).entries.get(&key))
    }

    fn generation(&self, key: K) -> u64 {
        self.shard(key).generation
    }

    /// Changes an entry, making room first when the shard is full.
    fn update<R>(&self, key: K, f: impl FnOnce(&mut HashMap<K, V>) -> R) -> R {
        let mut shard = self.shard(key);
        self.make_room(&mut shard, key);
        f(&mut shard.entries)
    }

    /// Like `update`, for what a reader found in the database: skipped when the shard was
    /// emptied since `generation`.
    fn update_if_current(&self, key: K, generation: u64, f: impl FnOnce(&mut HashMap<K, V>)) {
        let mut shard = self.shard(key);
        if shard.generation == generation {
            self.make_room(&mut shard, key);
            f(&mut shard.entries);
        }
    }

    fn make_room(&self, shard: &mut Shard<K, V>, key: K) {
        if shard.entries.len() >= self.per_shard_max && !shard.entries.contains_key(&key) {
            shard.entries.clear();
            shard.generation += 1;
        }
    }
}

/// Every entry of a user's inbox above `floor`, oldest first.
struct InboxTail {
    floor: u64,
    /// Shared: a group message sits in every member's tail once, not once per member.
    entries: VecDeque<(u64, Arc<Message>)>,
}

pub(crate) struct Caches {
    accounts: Sharded<u64, AccountRecord>,
    inboxes: Sharded<u64, InboxTail>,
    /// The newest contact-change version per user.
    contact_versions: Sharded<u64, u64>,
    /// (owner, peer) -> the owner's entry for the peer, or `None` when it has none.
    contacts: Sharded<(u64, u64), Option<ContactRecord>>,
    /// Groups with their members, by group id.
    groups: Sharded<u64, GroupState>,
}

impl Caches {
    pub(crate) fn new() -> Self {
        Caches {
            accounts: Sharded::new(USERS_PER_SHARD_MAX),
            inboxes: Sharded::new(USERS_PER_SHARD_MAX),
            contact_versions: Sharded::new(USERS_PER_SHARD_MAX),
            contacts: Sharded::new(CONTACTS_PER_SHARD_MAX),
            groups: Sharded::new(USERS_PER_SHARD_MAX),
        }
    }

    pub(crate) fn account(&self, user_id: u64) -> Option<AccountRecord> {
        self.accounts.get(user_id, |a| a.cloned())
    }

    /// Where the account cache stands before a database read (see `put_read_account`).
    pub(crate) fn account_generation(&self, user_id: u64) -> u64 {
        self.accounts.generation(user_id)
    }

    /// Remembers an account just written (called after its commit).
    pub(crate) fn put_account(&self, account: &AccountRecord) {
        self.accounts.update(account.user_id, |m| keep_newer(m, account));
    }

    /// Remembers an account read from the database, unless a newer one may have been written
    /// meanwhile: an older version never replaces a newer one, and nothing is cached when the
    /// shard was emptied since `generation` (the newer write may have gone with it).
    pub(crate) fn put_read_account(&self, account: &AccountRecord, generation: u64) {
        self.accounts.update_if_current(account.user_id, generation, |m| keep_newer(m, account));
    }

    /// Called by the writer, after the commit, in commit order.
    pub(crate) fn appended(&self, user_id: u64, version: u64, message: &Arc<Message>) {
        self.inboxes.update(user_id, |m| {
            // Appends for a user commit in version order, so when a tail starts here, every
            // entry above `version - 1` is this one or a later one.
            let tail = m
                .entry(user_id)
                .or_insert_with(|| InboxTail { floor: version - 1, entries: VecDeque::new() });
            tail.entries.push_back((version, Arc::clone(message)));
            while tail.entries.len() > INBOX_TAIL_MAX {
                if let Some((evicted, _)) = tail.entries.pop_front() {
                    tail.floor = evicted;
                }
            }
        });
    }

    /// Called by the writer, after the commit that deleted a user's entries up to `version`.
    pub(crate) fn collected(&self, user_id: u64, version: u64) {
        self.inboxes.update(user_id, |m| {
            if let Some(tail) = m.get_mut(&user_id) {
                tail.entries.retain(|(v, _)| *v > version);
                tail.floor = tail.floor.max(version);
            }
        });
    }

    /// The page after `after_version`, if the cache holds all of it.
    pub(crate) fn inbox_page(
        &self,
        user_id: u64,
        after_version: u64,
        limit: u32,
    ) -> Option<InboxPage> {
        self.inboxes.get(user_id, |tail| {
            let tail = tail?;
            if after_version < tail.floor {
                return None;
            }
            let mut newer = tail.entries.iter().filter(|(v, _)| *v > after_version);
            let items: Vec<InboxItem> = newer
                .by_ref()
                .take(limit as usize)
                .map(|(version, message)| InboxItem {
                    version: *version,
                    message: Some(Message::clone(message)),
                })
                .collect();
            let more = newer.next().is_some();
            Some(InboxPage { items, more })
        })
    }

    pub(crate) fn contact_version(&self, user_id: u64) -> Option<u64> {
        self.contact_versions.get(user_id, |v| v.copied())
    }

    pub(crate) fn contact_generation(&self, user_id: u64) -> u64 {
        self.contact_versions.generation(user_id)
    }

    pub(crate) fn group(&self, group_id: u64) -> Option<GroupState> {
        self.groups.get(group_id, |g| g.cloned())
    }

    pub(crate) fn group_generation(&self, group_id: u64) -> u64 {
        self.groups.generation(group_id)
    }

    /// Remembers a group just written (called after its commit).
    pub(crate) fn put_group(&self, state: &GroupState) {
        self.groups.update(group_id(state), |m| keep_newer_group(m, state));
    }

    /// Remembers a group read from the database (see `put_read_account`).
    pub(crate) fn put_read_group(&self, state: &GroupState, generation: u64) {
        self.groups.update_if_current(group_id(state), generation, |m| keep_newer_group(m, state));
    }

    /// Called by the writer after a stored message's content was replaced (a recall): the
    /// cached inbox entries of `holders` show the new content.
    pub(crate) fn replaced(&self, holders: &[u64], message: &Arc<Message>) {
        for &user_id in holders {
            self.inboxes.update(user_id, |m| {
                if let Some(tail) = m.get_mut(&user_id) {
                    for (_, cached) in tail.entries.iter_mut().filter(|(_, c)| c.id == message.id) {
                        *cached = Arc::clone(message);
                    }
                }
            });
        }
    }

    /// `owner`'s entry for `peer`: `Some(None)` when it is known to have none, `None` when
    /// the cache does not know.
    pub(crate) fn contact(&self, owner_id: u64, peer_id: u64) -> Option<Option<ContactRecord>> {
        self.contacts.get((owner_id, peer_id), |c| c.cloned())
    }

    pub(crate) fn contact_entry_generation(&self, owner_id: u64, peer_id: u64) -> u64 {
        self.contacts.generation((owner_id, peer_id))
    }

    /// Remembers what a reader found of an entry (see `put_read_account`): an entry written
    /// meanwhile is newer, and stays.
    pub(crate) fn put_read_contact(
        &self,
        owner_id: u64,
        peer_id: u64,
        found: Option<ContactRecord>,
        generation: u64,
    ) {
        self.contacts.update_if_current((owner_id, peer_id), generation, |m| {
            m.entry((owner_id, peer_id)).or_insert(found);
        });
    }

    /// Called by the writer, after the commit of a contact entry.
    pub(crate) fn contact_written(&self, record: &ContactRecord) {
        let owner_id = record.owner_id;
        let peer_id = record.contact.as_ref().map_or(0, |c| c.user_id);
        self.contacts.update((owner_id, peer_id), |m| {
            m.insert((owner_id, peer_id), Some(record.clone()));
        });
        let version = record.version;
        self.contact_versions.update(owner_id, |m| {
            let entry = m.entry(owner_id).or_insert(version);
            *entry = (*entry).max(version);
        });
    }

    /// Remembers the newest contact version read from the database (see `put_read_account`).
    pub(crate) fn put_read_contact_version(&self, user_id: u64, version: u64, generation: u64) {
        self.contact_versions.update_if_current(user_id, generation, |m| {
            let entry = m.entry(user_id).or_insert(version);
            *entry = (*entry).max(version);
        });
    }
}

fn group_id(state: &GroupState) -> u64 {
    state.group.as_ref().map_or(0, |g| g.group_id)
}

fn revision(state: &GroupState) -> u64 {
    state.group.as_ref().map_or(0, |g| g.revision)
}

fn keep_newer_group(cached: &mut HashMap<u64, GroupState>, state: &GroupState) {
    let id = group_id(state);
    if cached.get(&id).is_none_or(|c| revision(c) <= revision(state)) {
        cached.insert(id, state.clone());
    }
}

/// Keeps the newer of two accounts: by version, then (last seen is not versioned) by when the
/// user was last seen.
fn keep_newer(cached: &mut HashMap<u64, AccountRecord>, account: &AccountRecord) {
    let newer = cached
        .get(&account.user_id)
        .is_some_and(|c| (c.version, c.last_seen_ms) > (account.version, account.last_seen_ms));
    if !newer {
        cached.insert(account.user_id, account.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u64) -> Message {
        Message { id: n, text: format!("m{n}"), ..Message::default() }
    }

    fn versions(page: &InboxPage) -> Vec<u64> {
        page.items.iter().map(|i| i.version).collect()
    }

    #[test]
    fn a_tail_answers_only_what_it_holds_completely() {
        let caches = Caches::new();
        assert!(caches.inbox_page(1, 0, 10).is_none());
        for v in 5..=8 {
            caches.appended(1, v, &Arc::new(message(v)));
        }
        assert!(caches.inbox_page(1, 3, 10).is_none(), "entry 4 may exist in the database");
        assert_eq!(versions(&caches.inbox_page(1, 4, 10).unwrap()), [5, 6, 7, 8]);
        let page = caches.inbox_page(1, 5, 2).unwrap();
        assert_eq!((versions(&page), page.more), (vec![6, 7], true));
        caches.collected(1, 6);
        assert!(caches.inbox_page(1, 5, 10).is_none());
        assert_eq!(versions(&caches.inbox_page(1, 6, 10).unwrap()), [7, 8]);
    }

    #[test]
    fn eviction_raises_the_floor() {
        let caches = Caches::new();
        for v in 1..=(INBOX_TAIL_MAX as u64 + 10) {
            caches.appended(2, v, &Arc::new(message(v)));
        }
        assert!(caches.inbox_page(2, 5, 10).is_none());
        assert_eq!(caches.inbox_page(2, 10, 1).unwrap().items[0].version, 11);
    }

    #[test]
    fn an_older_account_never_replaces_a_newer_one() {
        let caches = Caches::new();
        let newer =
            AccountRecord { user_id: 3, version: 9, nickname: "new".into(), ..Default::default() };
        let older = AccountRecord { version: 4, nickname: "old".into(), ..newer.clone() };
        let generation = caches.account_generation(3);
        caches.put_account(&newer);
        caches.put_read_account(&older, generation);
        assert_eq!(caches.account(3).unwrap().nickname, "new");
    }

    #[test]
    fn a_contact_entry_read_before_a_write_never_hides_the_write() {
        let caches = Caches::new();
        let entry = |version, blocked| ContactRecord {
            owner_id: 7,
            version,
            contact: Some(missive_proto::client::Contact {
                user_id: 8,
                blocked,
                ..Default::default()
            }),
        };
        // Absent, as a reader found it: the cache says so rather than not knowing.
        let generation = caches.contact_entry_generation(7, 8);
        caches.put_read_contact(7, 8, None, generation);
        assert_eq!(caches.contact(7, 8), Some(None));
        // A write replaces what was read; a read that began before the write does not undo it.
        let generation = caches.contact_entry_generation(7, 8);
        caches.contact_written(&entry(3, true));
        caches.put_read_contact(7, 8, None, generation);
        caches.put_read_contact(7, 8, Some(entry(2, false)), generation);
        assert_eq!(caches.contact(7, 8), Some(Some(entry(3, true))));
        assert_eq!(caches.contact_version(7), Some(3));
        assert_eq!(caches.contact(8, 7), None, "the other side's entry is its own");
    }

    #[test]
    fn a_read_from_before_a_shard_was_emptied_is_not_cached() {
        let caches = Caches::new();
        let stale = AccountRecord { user_id: 5, version: 1, ..Default::default() };
        let generation = caches.account_generation(5);
        // Fill user 5's shard until it is emptied.
        for n in 0..=USERS_PER_SHARD_MAX as u64 {
            let other =
                AccountRecord { user_id: 5 + SHARDS as u64 * (n + 1), ..Default::default() };
            caches.put_account(&other);
        }
        caches.put_read_account(&stale, generation);
        assert!(caches.account(5).is_none());
    }
}

//! Every statement the backends run, written once with `?` placeholders (rewritten to `$n` for
//! PostgreSQL at open); the few whose syntax differs give a PostgreSQL form of their own.
//!
//! Statements never rely on the count of rows an upsert "changed": the MySQL driver reports
//! rows matched, not rows changed. A conditional write is an `UPDATE ... WHERE` (matched is
//! what counts) or an insert that ignores a duplicate key (0 rows when it exists).

use crate::database::Dialect;

// Column lists as macros, so that `concat!` can splice them into literals.
macro_rules! account_columns {
    () => {
        "user_id, username, nickname, password_hash, created_at_ms, version, disabled, \
         presence_visibility, last_seen_ms"
    };
}
macro_rules! session_columns {
    () => {
        "user_id, device_id, device_name, created_at_ms, acked_version, revoked"
    };
}
macro_rules! message_columns {
    () => {
        "m.message_id, m.from_user_id, m.from_name, m.to_user_id, m.to_name, m.kind, m.text, \
         m.sent_at_ms, m.client_msg_id, m.extra"
    };
}

macro_rules! period_columns {
    () => {
        "start_ms, period_s, registered_users, new_registrations, online_peak, online_average, \
         samples, messages_sent, messages_delivered, active_users"
    };
}

macro_rules! queries {
    ($($name:ident = $sql:expr $(, postgres: $pg:expr)?;)*) => {
        pub(crate) struct Queries {
            $(pub(crate) $name: &'static str,)*
        }

        impl Queries {
            pub(crate) fn new(dialect: Dialect) -> Queries {
                Queries { $($name: queries!(@pick dialect, $sql $(, $pg)?),)* }
            }
        }
    };
    (@pick $dialect:ident, $sql:expr) => { $dialect.adapt($sql) };
    (@pick $dialect:ident, $sql:expr, $pg:expr) => {
        match $dialect {
            Dialect::MySql => $sql,
            Dialect::Postgres => $dialect.adapt($pg),
        }
    };
}

queries! {
    counter_advance = "UPDATE counters SET next_value = next_value + ? WHERE name = ?";
    counter_read = "SELECT next_value FROM counters WHERE name = ?";
    counters_insert = "INSERT IGNORE INTO counters (name, next_value)
                       SELECT j.n, j.v FROM JSON_TABLE(?, '$[*]'
                           COLUMNS(n VARCHAR(32) PATH '$[0]', v BIGINT PATH '$[1]')) j",
        postgres: "INSERT INTO counters (name, next_value)
                   SELECT j.r->>0, (j.r->>1)::bigint FROM json_array_elements(?::json) AS j(r)
                   ON CONFLICT (name) DO NOTHING";

    shards_insert = "INSERT IGNORE INTO logical_shards (shard, state)
                     SELECT j.s, j.t FROM JSON_TABLE(?, '$[*]'
                         COLUMNS(s BIGINT PATH '$[0]', t INT PATH '$[1]')) j",
        postgres: "INSERT INTO logical_shards (shard, state)
                   SELECT (j.r->>0)::bigint, (j.r->>1)::int FROM json_array_elements(?::json) AS j(r)
                   ON CONFLICT (shard) DO NOTHING";
    shards_lock = "SELECT l.shard, l.state FROM logical_shards l
                   WHERE l.shard IN (SELECT j.s FROM JSON_TABLE(?, '$[*]' COLUMNS(s BIGINT PATH '$')) j)
                   LOCK IN SHARE MODE",
        postgres: "SELECT shard, state FROM logical_shards
                   WHERE shard = ANY(ARRAY(SELECT j.s::bigint FROM json_array_elements_text(?::json) AS j(s)))
                   FOR SHARE";
    dirty_note = "INSERT INTO shard_dirty (shard, kind, item, touch)
                  SELECT j.s, j.k, FROM_BASE64(j.i), 1 FROM JSON_TABLE(?, '$[*]'
                      COLUMNS(s BIGINT PATH '$[0]', k INT PATH '$[1]', i VARCHAR(128) PATH '$[2]')) j
                  ON DUPLICATE KEY UPDATE touch = shard_dirty.touch + 1",
        postgres: "INSERT INTO shard_dirty (shard, kind, item, touch)
                   SELECT (j.r->>0)::bigint, (j.r->>1)::int, decode(j.r->>2, 'base64'), 1
                   FROM json_array_elements(?::json) AS j(r)
                   ON CONFLICT (shard, kind, item) DO UPDATE SET touch = shard_dirty.touch + 1";
    tokens_unplaced = "SELECT token_hash FROM session_tokens WHERE shard = -1 LIMIT 1000";
    tokens_place = "UPDATE session_tokens t
                    JOIN JSON_TABLE(?, '$[*]' COLUMNS(h VARCHAR(128) PATH '$[0]', s BIGINT PATH '$[1]')) j
                    ON t.token_hash = FROM_BASE64(j.h)
                    SET t.shard = j.s",
        postgres: "UPDATE session_tokens SET shard = (j.r->>1)::bigint
                   FROM json_array_elements(?::json) AS j(r)
                   WHERE token_hash = decode(j.r->>0, 'base64')";

    map_databases_insert = "INSERT IGNORE INTO shard_databases (id, url)
                            SELECT j.i, j.u FROM JSON_TABLE(?, '$[*]'
                                COLUMNS(i BIGINT PATH '$[0]', u VARCHAR(2048) PATH '$[1]')) j",
        postgres: "INSERT INTO shard_databases (id, url)
                   SELECT (j.r->>0)::bigint, j.r->>1 FROM json_array_elements(?::json) AS j(r)
                   ON CONFLICT (id) DO NOTHING";
    map_owners_insert = "INSERT IGNORE INTO shard_map (shard, database_id)
                         SELECT j.s, j.d FROM JSON_TABLE(?, '$[*]'
                             COLUMNS(s BIGINT PATH '$[0]', d BIGINT PATH '$[1]')) j",
        postgres: "INSERT INTO shard_map (shard, database_id)
                   SELECT (j.r->>0)::bigint, (j.r->>1)::bigint FROM json_array_elements(?::json) AS j(r)
                   ON CONFLICT (shard) DO NOTHING";
    map_meta_insert = "INSERT IGNORE INTO shard_map_meta (id, version, logical_shards) VALUES (1, ?, ?)",
        postgres: "INSERT INTO shard_map_meta (id, version, logical_shards) VALUES (1, ?, ?)
                   ON CONFLICT (id) DO NOTHING";
    map_node_seen = "INSERT INTO shard_map_nodes (node, version, seen_at_ms) VALUES (?, ?, ?)
                     ON DUPLICATE KEY UPDATE version = VALUES(version), seen_at_ms = VALUES(seen_at_ms)",
        postgres: "INSERT INTO shard_map_nodes (node, version, seen_at_ms) VALUES (?, ?, ?)
                   ON CONFLICT (node) DO UPDATE SET version = excluded.version, seen_at_ms = excluded.seen_at_ms";

    account_insert = "INSERT INTO accounts (user_id, username, nickname, password_hash, created_at_ms)
                      VALUES (?, ?, ?, ?, ?)";
    account_by_name = concat!("SELECT ", account_columns!(), " FROM accounts WHERE username = ?");
    nickname_update = "UPDATE accounts SET nickname = ?, version = ? WHERE user_id = ? AND version < ?";
    visibility_update = "UPDATE accounts SET presence_visibility = ?, version = ?
                         WHERE user_id = ? AND version < ?";
    pusher_upsert = "INSERT INTO pushers (user_id, endpoint, device_id, body) VALUES (?, ?, ?, ?)
                     ON DUPLICATE KEY UPDATE device_id = VALUES(device_id), body = VALUES(body)",
        postgres: "INSERT INTO pushers (user_id, endpoint, device_id, body) VALUES (?, ?, ?, ?)
                   ON CONFLICT (user_id, endpoint)
                   DO UPDATE SET device_id = excluded.device_id, body = excluded.body";
    pusher_delete = "DELETE FROM pushers WHERE user_id = ? AND endpoint = ?";
    pushers_delete_device = "DELETE FROM pushers WHERE user_id = ? AND (? = 0 OR device_id = ?)";
    pushers_list = "SELECT body FROM pushers WHERE user_id = ? ORDER BY endpoint";
    last_seen_update = "UPDATE accounts SET last_seen_ms = ? WHERE user_id = ? AND last_seen_ms < ?";

    session_insert = "INSERT INTO sessions (user_id, device_id, device_name, created_at_ms)
                      VALUES (?, ?, ?, ?)";
    token_insert = "INSERT INTO session_tokens (token_hash, user_id, device_id, shard) VALUES (?, ?, ?, ?)";
    token_lookup = "SELECT user_id, device_id FROM session_tokens WHERE token_hash = ?";
    session_active = concat!("SELECT ", session_columns!(),
        " FROM sessions WHERE user_id = ? AND device_id = ? AND revoked = 0");
    session_revoke = "UPDATE sessions SET revoked = 1 WHERE user_id = ? AND device_id = ? AND revoked = 0";

    sent_find = "SELECT message_id, sender_version FROM sent_messages
                 WHERE from_user_id = ? AND client_msg_id = ?";
    message_held = concat!("SELECT ", message_columns!(),
        " FROM inbox i JOIN messages m ON m.message_id = i.message_id
          WHERE i.user_id = ? AND i.message_id = ?");
    message_replace = "UPDATE messages SET kind = ?, text = ?, extra = ?, terms = ? WHERE message_id = ?";
    // The home copy of a message, locked until the transaction ends: every change of the
    // message takes this lock first, so changes of one message take turns on all shards.
    message_lock = "SELECT extra FROM messages WHERE message_id = ? FOR UPDATE";
    // A search: one user's inbox entries whose message holds every term, each bound given
    // twice (once to test whether it is set).
    message_search = concat!("SELECT i.version, ", message_columns!(),
        " FROM messages m JOIN inbox i ON i.message_id = m.message_id AND i.user_id = ?
          WHERE MATCH(m.terms) AGAINST(? IN BOOLEAN MODE)
            AND (? = 0 OR i.version < ?)
            AND (? = 0 OR (m.from_user_id = ? AND m.to_user_id = ?)
                       OR (m.from_user_id = ? AND m.to_user_id = ?))
            AND (? = 0 OR m.to_user_id = ?)
            AND (? = 0 OR m.from_user_id = ?)
            AND (? = 0 OR m.sent_at_ms >= ?)
            AND (? = 0 OR m.sent_at_ms < ?)
          ORDER BY i.version DESC LIMIT ?"),
        postgres: concat!("SELECT i.version, ", message_columns!(),
        " FROM messages m JOIN inbox i ON i.message_id = m.message_id AND i.user_id = ?
          WHERE to_tsvector('simple', m.terms) @@ to_tsquery('simple', ?)
            AND (? = 0 OR i.version < ?)
            AND (? = 0 OR (m.from_user_id = ? AND m.to_user_id = ?)
                       OR (m.from_user_id = ? AND m.to_user_id = ?))
            AND (? = 0 OR m.to_user_id = ?)
            AND (? = 0 OR m.from_user_id = ?)
            AND (? = 0 OR m.sent_at_ms >= ?)
            AND (? = 0 OR m.sent_at_ms < ?)
          ORDER BY i.version DESC LIMIT ?");
    message_by_id = concat!("SELECT ", message_columns!(), " FROM messages m WHERE m.message_id = ?");
    backfill_state = "SELECT next_id, upto FROM search_backfill WHERE id = 0";
    backfill_batch = concat!("SELECT ", message_columns!(),
        " FROM messages m WHERE m.message_id > ? AND m.message_id <= ? AND m.terms = ''
          ORDER BY m.message_id LIMIT ?");
    // Only while the message is as it was read: a recall or an edit since wrote its own.
    backfill_terms = "UPDATE messages SET terms = ?
                      WHERE message_id = ? AND terms = '' AND text = ? AND extra <=> ?",
        postgres: "UPDATE messages SET terms = ?
                   WHERE message_id = ? AND terms = '' AND text = ? AND extra IS NOT DISTINCT FROM ?";
    backfill_move = "UPDATE search_backfill SET next_id = ? WHERE id = 0";
    pending_list = "SELECT user_id FROM pending_entries WHERE message_id = ?";
    pending_due = "SELECT DISTINCT message_id FROM pending_entries
                   WHERE created_at_ms <= ? AND claimed_until_ms <= ? ORDER BY message_id LIMIT ?";
    pending_claim = "UPDATE pending_entries SET claimed_until_ms = ?
                     WHERE message_id = ? AND claimed_until_ms <= ?";

    inbox_read = concat!("SELECT i.version, ", message_columns!(),
        " FROM inbox i JOIN messages m ON m.message_id = i.message_id
          WHERE i.user_id = ? AND i.version > ? ORDER BY i.version LIMIT ?"),
        // The page first, then each message by key: PostgreSQL's generic plan for the join
        // (its parameters unknown) hashes the whole messages table.
        postgres: concat!("SELECT i.version, ", message_columns!(),
        " FROM (SELECT version, message_id FROM inbox WHERE user_id = ? AND version > ?
                ORDER BY version LIMIT ?) i
          CROSS JOIN LATERAL (SELECT * FROM messages WHERE message_id = i.message_id LIMIT 1) m
          ORDER BY i.version");

    marks_due = "SELECT user_id, MAX(version) FROM delivery_marks WHERE at_ms <= ?
                 GROUP BY user_id ORDER BY user_id LIMIT ?";
    entries_upto = "SELECT message_id FROM inbox WHERE user_id = ? AND version <= ?";
    message_release = "UPDATE messages SET refs = refs - 1 WHERE message_id = ?";
    // A copy whose send is still pending to another shard stays, with its retry record:
    // the janitor re-drives the send from them.
    message_delete = "DELETE FROM messages WHERE message_id = ? AND refs <= 0
                      AND NOT EXISTS (SELECT 1 FROM pending_entries WHERE message_id = ?)";
    sent_delete = "DELETE FROM sent_messages WHERE message_id = ?";
    entries_delete = "DELETE FROM inbox WHERE user_id = ? AND version <= ?";
    marks_delete = "DELETE FROM delivery_marks WHERE user_id = ? AND version <= ?";

    // The group commit's statements (`batch.rs`): each takes one JSON array holding every row
    // of a batch, so one prepared statement serves any batch size. MySQL reads it with
    // JSON_TABLE, joined first (STRAIGHT_JOIN) so that each key is an index lookup.
    // PostgreSQL reads it with json_array_elements, whose row count its planner guesses at
    // 100, which makes it hash the whole table: single-column keys go through `= ANY(ARRAY(..))`
    // and pairs through a LATERAL subquery with LIMIT 1, both index lookups per key.
    batch_heads_lock = "INSERT INTO inbox_heads (user_id, version)
                        SELECT j.u, 0 FROM JSON_TABLE(?, '$[*]' COLUMNS(u BIGINT PATH '$')) j
                        ON DUPLICATE KEY UPDATE version = inbox_heads.version",
        postgres: "INSERT INTO inbox_heads (user_id, version)
                   SELECT j.u::bigint, 0 FROM json_array_elements_text(?::json) AS j(u)
                   ON CONFLICT (user_id) DO UPDATE SET version = inbox_heads.version";
    batch_heads_read = "SELECT h.user_id, h.version
                        FROM JSON_TABLE(?, '$[*]' COLUMNS(u BIGINT PATH '$')) j
                        STRAIGHT_JOIN inbox_heads h ON h.user_id = j.u",
        postgres: "SELECT user_id, version FROM inbox_heads
                   WHERE user_id = ANY(ARRAY(SELECT j.u::bigint FROM json_array_elements_text(?::json) AS j(u)))";
    batch_heads_set = "INSERT INTO inbox_heads (user_id, version)
                       SELECT j.u, j.v FROM JSON_TABLE(?, '$[*]'
                           COLUMNS(u BIGINT PATH '$[0]', v BIGINT PATH '$[1]')) j
                       ON DUPLICATE KEY UPDATE version = VALUES(version)",
        postgres: "INSERT INTO inbox_heads (user_id, version)
                   SELECT (j.r->>0)::bigint, (j.r->>1)::bigint FROM json_array_elements(?::json) AS j(r)
                   ON CONFLICT (user_id) DO UPDATE SET version = excluded.version";
    batch_sent_find = "SELECT s.from_user_id, s.client_msg_id
                       FROM JSON_TABLE(?, '$[*]' COLUMNS(u BIGINT PATH '$[0]',
                           c VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$[1]')) j
                       STRAIGHT_JOIN sent_messages s ON s.from_user_id = j.u AND s.client_msg_id = j.c",
        postgres: "SELECT s.from_user_id, s.client_msg_id FROM json_array_elements(?::json) AS j(r)
                   CROSS JOIN LATERAL (SELECT from_user_id, client_msg_id FROM sent_messages
                       WHERE from_user_id = (j.r->>0)::bigint AND client_msg_id = j.r->>1 LIMIT 1) s";
    batch_sent_insert = "INSERT INTO sent_messages (from_user_id, client_msg_id, message_id, sender_version)
                         SELECT j.u, j.c, j.m, j.v FROM JSON_TABLE(?, '$[*]' COLUMNS(
                             u BIGINT PATH '$[0]', c LONGTEXT CHARACTER SET utf8mb4 PATH '$[1]',
                             m BIGINT PATH '$[2]', v BIGINT PATH '$[3]')) j",
        postgres: "INSERT INTO sent_messages (from_user_id, client_msg_id, message_id, sender_version)
                   SELECT (j.r->>0)::bigint, j.r->>1, (j.r->>2)::bigint, (j.r->>3)::bigint
                   FROM json_array_elements(?::json) AS j(r)";
    batch_messages_upsert = "INSERT INTO messages (message_id, from_user_id, from_name, to_user_id,
                                 to_name, kind, text, sent_at_ms, client_msg_id, refs, extra, terms)
                             SELECT j.id, j.fu, j.fn, j.tu, j.tn, j.k, j.t, j.at, j.c, j.r, FROM_BASE64(j.x), j.s
                             FROM JSON_TABLE(?, '$[*]' COLUMNS(
                                 id BIGINT PATH '$[0]', fu BIGINT PATH '$[1]',
                                 fn LONGTEXT CHARACTER SET utf8mb4 PATH '$[2]', tu BIGINT PATH '$[3]',
                                 tn LONGTEXT CHARACTER SET utf8mb4 PATH '$[4]', k BIGINT PATH '$[5]',
                                 t LONGTEXT CHARACTER SET utf8mb4 PATH '$[6]', at BIGINT PATH '$[7]',
                                 c LONGTEXT CHARACTER SET utf8mb4 PATH '$[8]', r BIGINT PATH '$[9]',
                                 x LONGTEXT PATH '$[10]', s LONGTEXT PATH '$[11]')) j
                             ON DUPLICATE KEY UPDATE refs = messages.refs + VALUES(refs)",
        postgres: "INSERT INTO messages (message_id, from_user_id, from_name, to_user_id, to_name,
                       kind, text, sent_at_ms, client_msg_id, refs, extra, terms)
                   SELECT (j.r->>0)::bigint, (j.r->>1)::bigint, j.r->>2, (j.r->>3)::bigint, j.r->>4,
                       (j.r->>5)::bigint, j.r->>6, (j.r->>7)::bigint, j.r->>8, (j.r->>9)::bigint,
                       decode(j.r->>10, 'base64'), j.r->>11
                   FROM json_array_elements(?::json) AS j(r)
                   ON CONFLICT (message_id) DO UPDATE SET refs = messages.refs + excluded.refs";
    batch_entries_find = "SELECT i.user_id, i.message_id
                          FROM JSON_TABLE(?, '$[*]' COLUMNS(u BIGINT PATH '$[0]', m BIGINT PATH '$[1]')) j
                          STRAIGHT_JOIN inbox i ON i.user_id = j.u AND i.message_id = j.m",
        postgres: "SELECT i.user_id, i.message_id FROM json_array_elements(?::json) AS j(r)
                   CROSS JOIN LATERAL (SELECT user_id, message_id FROM inbox
                       WHERE message_id = (j.r->>1)::bigint AND user_id = (j.r->>0)::bigint LIMIT 1) i";
    batch_entries_insert = "INSERT INTO inbox (user_id, version, message_id)
                            SELECT j.u, j.v, j.m FROM JSON_TABLE(?, '$[*]' COLUMNS(
                                u BIGINT PATH '$[0]', v BIGINT PATH '$[1]', m BIGINT PATH '$[2]')) j",
        postgres: "INSERT INTO inbox (user_id, version, message_id)
                   SELECT (j.r->>0)::bigint, (j.r->>1)::bigint, (j.r->>2)::bigint
                   FROM json_array_elements(?::json) AS j(r)";
    batch_pending_insert = "INSERT INTO pending_entries (message_id, user_id, created_at_ms)
                            SELECT j.m, j.u, j.t FROM JSON_TABLE(?, '$[*]' COLUMNS(
                                m BIGINT PATH '$[0]', u BIGINT PATH '$[1]', t BIGINT PATH '$[2]')) j",
        postgres: "INSERT INTO pending_entries (message_id, user_id, created_at_ms)
                   SELECT (j.r->>0)::bigint, (j.r->>1)::bigint, (j.r->>2)::bigint
                   FROM json_array_elements(?::json) AS j(r)";
    batch_pending_clear = "DELETE p FROM JSON_TABLE(?, '$[*]' COLUMNS(m BIGINT PATH '$')) j
                           STRAIGHT_JOIN pending_entries p ON p.message_id = j.m",
        postgres: "DELETE FROM pending_entries WHERE message_id =
                   ANY(ARRAY(SELECT j.m::bigint FROM json_array_elements_text(?::json) AS j(m)))";

    // Batched point reads (`lookup.rs`): the keys as one JSON array.
    lookup_accounts = "SELECT a.user_id, a.username, a.nickname, a.password_hash,
                           a.created_at_ms, a.version, a.disabled, a.presence_visibility,
                           a.last_seen_ms
                       FROM JSON_TABLE(?, '$[*]' COLUMNS(u BIGINT PATH '$')) j
                       STRAIGHT_JOIN accounts a ON a.user_id = j.u",
        postgres: concat!("SELECT ", account_columns!(), " FROM accounts WHERE user_id =
                   ANY(ARRAY(SELECT j.u::bigint FROM json_array_elements_text(?::json) AS j(u)))");
    lookup_contacts = "SELECT c.owner_id, c.peer_id, c.version, c.body
                       FROM JSON_TABLE(?, '$[*]' COLUMNS(o BIGINT PATH '$[0]', p BIGINT PATH '$[1]')) j
                       STRAIGHT_JOIN contacts c ON c.owner_id = j.o AND c.peer_id = j.p",
        postgres: "SELECT c.owner_id, c.peer_id, c.version, c.body FROM json_array_elements(?::json) AS j(r)
                   CROSS JOIN LATERAL (SELECT owner_id, peer_id, version, body FROM contacts
                       WHERE owner_id = (j.r->>0)::bigint AND peer_id = (j.r->>1)::bigint LIMIT 1) c";

    // Acknowledgements and delivery marks, set-based (`account.rs`): the users' sessions
    // locked, every device moved up, then the marks, each one statement for any number.
    acks_lock = "SELECT s.device_id FROM JSON_TABLE(?, '$[*]' COLUMNS(u BIGINT PATH '$')) j
                 STRAIGHT_JOIN sessions s ON s.user_id = j.u FOR UPDATE",
        postgres: "SELECT device_id FROM sessions
                   WHERE user_id = ANY(ARRAY(SELECT j.u::bigint FROM json_array_elements_text(?::json) AS j(u)))
                   ORDER BY user_id, device_id FOR UPDATE";
    acks_apply = "UPDATE JSON_TABLE(?, '$[*]' COLUMNS(u BIGINT PATH '$[0]', d BIGINT PATH '$[1]',
                      v BIGINT PATH '$[2]')) j
                  STRAIGHT_JOIN sessions s ON s.user_id = j.u AND s.device_id = j.d
                  SET s.acked_version = j.v WHERE s.acked_version < j.v",
        postgres: "UPDATE sessions s SET acked_version = x.v
                   FROM (SELECT (j.r->>0)::bigint AS u, (j.r->>1)::bigint AS d, (j.r->>2)::bigint AS v
                         FROM json_array_elements(?::json) AS j(r)) x
                   WHERE s.user_id = x.u AND s.device_id = x.d AND s.acked_version < x.v";
    acks_mark = "INSERT INTO delivery_marks (user_id, version, at_ms)
                 SELECT a.u, a.delivered, a.t FROM (
                     SELECT j.u, j.t,
                         (SELECT MIN(s.acked_version) FROM sessions s
                          WHERE s.user_id = j.u AND s.revoked = 0) AS delivered,
                         (SELECT MAX(m.version) FROM delivery_marks m WHERE m.user_id = j.u) AS last
                     FROM JSON_TABLE(?, '$[*]' COLUMNS(u BIGINT PATH '$[0]', t BIGINT PATH '$[1]')) j) a
                 WHERE a.delivered > 0 AND a.delivered > COALESCE(a.last, 0)",
        postgres: "INSERT INTO delivery_marks (user_id, version, at_ms)
                   SELECT a.u, a.delivered, a.t FROM (
                       SELECT j.u, j.t,
                           (SELECT MIN(s.acked_version) FROM sessions s
                            WHERE s.user_id = j.u AND s.revoked = 0) AS delivered,
                           (SELECT MAX(m.version) FROM delivery_marks m WHERE m.user_id = j.u) AS last
                       FROM (SELECT (r->>0)::bigint AS u, (r->>1)::bigint AS t
                             FROM json_array_elements(?::json) AS e(r)) j) a
                   WHERE a.delivered > 0 AND a.delivered > COALESCE(a.last, 0)";

    // A batch of contact changes, at most a limit per read, each row named by its read's place
    // in the batch. MariaDB has no LATERAL: a window numbers each read's changes (all of its
    // changes above the version, at most one per contact).
    lookup_changes = "SELECT t.i, t.version, t.body FROM (
                          SELECT j.i, j.l, c.version, c.body,
                              ROW_NUMBER() OVER (PARTITION BY j.i ORDER BY c.version) AS n
                          FROM JSON_TABLE(?, '$[*]' COLUMNS(i FOR ORDINALITY, u BIGINT PATH '$[0]',
                              a BIGINT PATH '$[1]', l BIGINT PATH '$[2]')) j
                          STRAIGHT_JOIN contacts c ON c.owner_id = j.u AND c.version > j.a) t
                      WHERE t.n <= t.l ORDER BY t.i, t.version",
        postgres: "SELECT j.i, c.version, c.body
                   FROM json_array_elements(?::json) WITH ORDINALITY AS j(r, i)
                   CROSS JOIN LATERAL (SELECT version, body FROM contacts
                       WHERE owner_id = (j.r->>0)::bigint AND version > (j.r->>1)::bigint
                       ORDER BY version LIMIT (j.r->>2)::bigint) c
                   ORDER BY j.i, c.version";

    seq_load = "SELECT max_version FROM seq_max WHERE user_id = ?";
    seq_insert = "INSERT IGNORE INTO seq_max (user_id, max_version) VALUES (?, ?)",
        postgres: "INSERT INTO seq_max (user_id, max_version) VALUES (?, ?)
                   ON CONFLICT (user_id) DO NOTHING";
    seq_move = "UPDATE seq_max SET max_version = ? WHERE user_id = ? AND max_version = ?";

    contact_list = "SELECT version, body FROM contacts WHERE owner_id = ? ORDER BY peer_id";
    contact_upsert = "INSERT INTO contacts (owner_id, peer_id, version, body) VALUES (?, ?, ?, ?)
                      ON DUPLICATE KEY UPDATE version = VALUES(version), body = VALUES(body)",
        postgres: "INSERT INTO contacts (owner_id, peer_id, version, body) VALUES (?, ?, ?, ?)
                   ON CONFLICT (owner_id, peer_id)
                   DO UPDATE SET version = excluded.version, body = excluded.body";
    contact_head_advance = "UPDATE contact_heads SET version = ? WHERE user_id = ? AND version < ?";
    contact_head_insert = "INSERT IGNORE INTO contact_heads (user_id, version) VALUES (?, ?)",
        postgres: "INSERT INTO contact_heads (user_id, version) VALUES (?, ?)
                   ON CONFLICT (user_id) DO NOTHING";

    group_insert = "INSERT INTO chat_groups (group_id, revision, body) VALUES (?, 1, ?)";
    group_exists = "SELECT 1 FROM chat_groups WHERE group_id = ?";
    group_update = "UPDATE chat_groups SET revision = ?, body = ? WHERE group_id = ? AND revision = ?";
    // One statement, so the profile and the members come from one snapshot.
    group_state = "SELECT g.revision, g.body, m.user_id, m.role, m.joined_at_ms
                   FROM chat_groups g LEFT JOIN group_members m ON m.group_id = g.group_id
                   WHERE g.group_id = ? ORDER BY m.joined_at_ms, m.user_id";
    group_member_upsert = "INSERT INTO group_members (group_id, user_id, role, joined_at_ms)
                           VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE role = VALUES(role)",
        postgres: "INSERT INTO group_members (group_id, user_id, role, joined_at_ms)
                   VALUES (?, ?, ?, ?) ON CONFLICT (group_id, user_id) DO UPDATE SET role = excluded.role";
    group_member_delete = "DELETE FROM group_members WHERE group_id = ? AND user_id = ?";

    account_search = concat!("SELECT ", account_columns!(), " FROM accounts WHERE user_id > ?
                      AND (INSTR(LOWER(username), ?) > 0 OR INSTR(LOWER(nickname), ?) > 0)
                      ORDER BY user_id LIMIT ?"),
        postgres: concat!("SELECT ", account_columns!(), " FROM accounts WHERE user_id > ?
                   AND (STRPOS(LOWER(username), ?) > 0 OR STRPOS(LOWER(nickname), ?) > 0)
                   ORDER BY user_id LIMIT ?");
    account_set_disabled = "UPDATE accounts SET disabled = ? WHERE user_id = ?";
    sessions_of_user = concat!("SELECT ", session_columns!(),
        " FROM sessions WHERE user_id = ? ORDER BY device_id");
    sessions_revoke_all = "UPDATE sessions SET revoked = 1 WHERE user_id = ? AND revoked = 0";

    count_accounts = "SELECT COUNT(*) FROM accounts";
    count_groups = "SELECT COUNT(*) FROM chat_groups";
    count_messages = "SELECT COUNT(*) FROM messages";
    count_inbox = "SELECT COUNT(*) FROM inbox";
    count_registered_before = "SELECT COUNT(*) FROM accounts WHERE created_at_ms < ?";
    count_registered_within = "SELECT COUNT(*) FROM accounts WHERE created_at_ms >= ? AND created_at_ms < ?";
    count_active = "SELECT COUNT(*) FROM ops_active WHERE period_start_ms = ?";
    sample_upsert = "INSERT INTO ops_samples (slot_ms, node, online, messages_sent, messages_delivered)
                     VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE online = VALUES(online),
                     messages_sent = VALUES(messages_sent), messages_delivered = VALUES(messages_delivered)",
        postgres: "INSERT INTO ops_samples (slot_ms, node, online, messages_sent, messages_delivered)
                   VALUES (?, ?, ?, ?, ?) ON CONFLICT (slot_ms, node) DO UPDATE SET
                   online = excluded.online, messages_sent = excluded.messages_sent,
                   messages_delivered = excluded.messages_delivered";
    // Added up in Rust: SUM and AVG answer DECIMAL or NUMERIC, which the drivers read apart.
    samples_within = "SELECT slot_ms, online, messages_sent, messages_delivered FROM ops_samples
                      WHERE slot_ms >= ? AND slot_ms < ?";
    samples_delete = "DELETE FROM ops_samples WHERE slot_ms < ?";
    active_insert = "INSERT IGNORE INTO ops_active (period_start_ms, user_id) VALUES (?, ?)",
        postgres: "INSERT INTO ops_active (period_start_ms, user_id) VALUES (?, ?)
                   ON CONFLICT (period_start_ms, user_id) DO NOTHING";
    active_delete = "DELETE FROM ops_active WHERE period_start_ms <= ?";
    period_insert = "INSERT IGNORE INTO ops_periods (start_ms, period_s, registered_users,
                     new_registrations, online_peak, online_average, samples, messages_sent,
                     messages_delivered, active_users) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        postgres: "INSERT INTO ops_periods (start_ms, period_s, registered_users,
                   new_registrations, online_peak, online_average, samples, messages_sent,
                   messages_delivered, active_users) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (start_ms) DO NOTHING";
    period_get = concat!("SELECT ", period_columns!(), " FROM ops_periods WHERE start_ms = ?");
    periods_newest = concat!("SELECT ", period_columns!(),
        " FROM ops_periods ORDER BY start_ms DESC LIMIT ?");
    audit_insert = "INSERT INTO ops_audit (at_ms, actor, address, action, target, detail, code)
                    VALUES (?, ?, ?, ?, ?, ?, ?)";
    audit_before = "SELECT id, at_ms, actor, address, action, target, detail, code
                    FROM ops_audit WHERE id < ? ORDER BY id DESC LIMIT ?";
}

//! Copying a logical shard's rows between databases, table by table: each table's columns
//! with their kinds, read from one database into JSON and written into another in one
//! statement per chunk (`JSON_TABLE` on MySQL/MariaDB, `json_array_elements` on PostgreSQL),
//! as the group commit writes (`batch.rs`).

use crate::Result;
use crate::database::Dialect;
use base64::Engine as _;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};

/// Rows per insert statement, so that no statement nears a server's packet limit.
const CHUNK: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    /// A 32-bit integer column (`INTEGER`).
    Int32,
    Text,
    Bytes,
    /// Bytes, or NULL.
    MaybeBytes,
}

/// A table of a logical shard's rows.
pub(crate) struct Table {
    pub name: &'static str,
    /// The column naming the row's user, group or token.
    pub key: &'static str,
    pub columns: &'static [(&'static str, Kind)],
}

impl Table {
    fn key_kind(&self) -> Kind {
        self.columns.iter().find(|(c, _)| *c == self.key).map_or(Int, |(_, kind)| *kind)
    }
}

use Kind::*;

macro_rules! table {
    ($name:literal by $key:literal: $($column:literal $kind:ident),*) => {
        Table { name: $name, key: $key, columns: &[$(($column, $kind)),*] }
    };
}

/// Users' tables that a copy replaces whole, per user.
pub(crate) const USER_TABLES: [Table; 10] = [
    table!("accounts" by "user_id": "user_id" Int, "username" Text, "nickname" Text,
        "password_hash" Text, "created_at_ms" Int, "version" Int, "disabled" Int,
        "presence_visibility" Int32, "last_seen_ms" Int),
    table!("sessions" by "user_id": "user_id" Int, "device_id" Int, "device_name" Text,
        "created_at_ms" Int, "acked_version" Int, "revoked" Int),
    table!("delivery_marks" by "user_id": "user_id" Int, "version" Int, "at_ms" Int),
    table!("inbox_heads" by "user_id": "user_id" Int, "version" Int),
    table!("seq_max" by "user_id": "user_id" Int, "max_version" Int),
    table!("contacts" by "owner_id": "owner_id" Int, "peer_id" Int, "version" Int, "body" Bytes),
    table!("contact_heads" by "user_id": "user_id" Int, "version" Int),
    table!("pushers" by "user_id": "user_id" Int, "endpoint" Text, "device_id" Int, "body" Bytes),
    table!("sent_messages" by "from_user_id": "from_user_id" Int, "client_msg_id" Text,
        "message_id" Int, "sender_version" Int),
    table!("ops_active" by "user_id": "period_start_ms" Int, "user_id" Int),
];

/// Inbox entries, copied by what the target lacks (each inbox only grows at its head).
pub(crate) const INBOX: Table =
    table!("inbox" by "user_id": "user_id" Int, "version" Int, "message_id" Int);

/// Messages, copied with the entries that hold them; `refs` is the target's own count.
pub(crate) const MESSAGES: Table = table!("messages" by "message_id": "message_id" Int,
    "from_user_id" Int, "from_name" Text, "to_user_id" Int, "to_name" Text, "kind" Int,
    "text" Text, "sent_at_ms" Int, "client_msg_id" Text, "refs" Int, "extra" MaybeBytes,
    "terms" Text);

pub(crate) const GROUP_TABLES: [Table; 2] = [
    table!("chat_groups" by "group_id": "group_id" Int, "revision" Int, "body" Bytes),
    table!("group_members" by "group_id": "group_id" Int, "user_id" Int, "role" Int,
        "joined_at_ms" Int),
];

pub(crate) const TOKENS: Table = table!("session_tokens" by "token_hash": "token_hash" Bytes,
    "user_id" Int, "device_id" Int, "shard" Int);

pub(crate) const PENDING: Table = table!("pending_entries" by "message_id": "message_id" Int,
    "user_id" Int, "created_at_ms" Int, "claimed_until_ms" Int);

pub(crate) const COUNTERS: Table = table!("counters" by "name": "name" Text, "next_value" Int);

/// A key list bound as one JSON array: ids, or bytes as base64.
pub(crate) fn keys_json(keys: &[Value]) -> String {
    Value::Array(keys.to_vec()).to_string()
}

impl Dialect {
    /// The keys of the one JSON array parameter as a table `j` with a column `v`, each key
    /// as `column` stores it: on MySQL/MariaDB a `JSON_TABLE` that drives the join (an IN
    /// subquery over it is a full scan there, for a DELETE a dependent subquery per row); on
    /// PostgreSQL an array to compare with.
    fn keys(self, kind: Kind) -> (&'static str, &'static str) {
        match (self, kind) {
            (Dialect::MySql, Bytes) => {
                ("JSON_TABLE(?, '$[*]' COLUMNS(v LONGTEXT PATH '$')) j", "FROM_BASE64(j.v)")
            }
            (Dialect::MySql, Text) => {
                ("JSON_TABLE(?, '$[*]' COLUMNS(v VARCHAR(255) PATH '$')) j", "j.v")
            }
            (Dialect::MySql, _) => ("JSON_TABLE(?, '$[*]' COLUMNS(v BIGINT PATH '$')) j", "j.v"),
            (Dialect::Postgres, Bytes) => (
                "ARRAY(SELECT decode(j.v, 'base64') FROM json_array_elements_text($1::json) AS j(v))",
                "",
            ),
            (Dialect::Postgres, Text) => {
                ("ARRAY(SELECT j.v FROM json_array_elements_text($1::json) AS j(v))", "")
            }
            (Dialect::Postgres, _) => {
                ("ARRAY(SELECT j.v::bigint FROM json_array_elements_text($1::json) AS j(v))", "")
            }
        }
    }

    /// `SELECT columns` (naming the table `t`) of the rows of `table` whose `key` is in the
    /// JSON array parameter, then `tail` (a `GROUP BY`, or nothing).
    pub(crate) fn select_where_key(
        self,
        table: &str,
        key: &str,
        kind: Kind,
        columns: &str,
        tail: &str,
    ) -> String {
        let (keys, each) = self.keys(kind);
        match self {
            Dialect::MySql => {
                format!(
                    "SELECT {columns} FROM {keys} STRAIGHT_JOIN {table} t ON t.{key} = {each} {tail}"
                )
            }
            Dialect::Postgres => {
                format!("SELECT {columns} FROM {table} t WHERE t.{key} = ANY({keys}) {tail}")
            }
        }
    }

    /// Deletes the rows of `table` (named `t`) whose `key` is in the JSON array parameter
    /// and that meet `condition` (or `TRUE`).
    pub(crate) fn delete_where_key(
        self,
        table: &str,
        key: &str,
        kind: Kind,
        condition: &str,
    ) -> String {
        let (keys, each) = self.keys(kind);
        match self {
            Dialect::MySql => format!(
                "DELETE t FROM {keys} STRAIGHT_JOIN {table} t ON t.{key} = {each} WHERE {condition}"
            ),
            Dialect::Postgres => {
                format!("DELETE FROM {table} t WHERE t.{key} = ANY({keys}) AND {condition}")
            }
        }
    }

    /// The rows of `table` whose key is in the JSON array parameter.
    pub(crate) fn select_keyed(self, table: &Table) -> String {
        let columns: Vec<String> = table.columns.iter().map(|(c, _)| format!("t.{c}")).collect();
        self.select_where_key(table.name, table.key, table.key_kind(), &columns.join(", "), "")
    }

    /// Deletes the rows of `table` whose key is in the JSON array parameter.
    pub(crate) fn delete_keyed(self, table: &Table) -> String {
        self.delete_where_key(table.name, table.key, table.key_kind(), "TRUE")
    }

    /// Inserts the rows of the JSON array parameter (each an array of the columns in order),
    /// followed by `conflict` (an `ON ...` clause, or nothing).
    pub(crate) fn insert_rows(self, table: &Table, conflict: &str) -> String {
        let mut values = Vec::new();
        let mut columns = Vec::new();
        for (i, (_, kind)) in table.columns.iter().enumerate() {
            match self {
                Dialect::MySql => {
                    values.push(match kind {
                        Bytes | MaybeBytes => format!("FROM_BASE64(j.c{i})"),
                        _ => format!("j.c{i}"),
                    });
                    let sql_type = match kind {
                        Int | Int32 => "BIGINT",
                        Text => "LONGTEXT CHARACTER SET utf8mb4",
                        Bytes | MaybeBytes => "LONGTEXT",
                    };
                    columns.push(format!("c{i} {sql_type} PATH '$[{i}]'"));
                }
                Dialect::Postgres => values.push(match kind {
                    Int => format!("(j.r->>{i})::bigint"),
                    Int32 => format!("(j.r->>{i})::int"),
                    Text => format!("j.r->>{i}"),
                    Bytes | MaybeBytes => format!("decode(j.r->>{i}, 'base64')"),
                }),
            }
        }
        let from = match self {
            Dialect::MySql => format!("JSON_TABLE(?, '$[*]' COLUMNS({})) j", columns.join(", ")),
            Dialect::Postgres => "json_array_elements($1::json) AS j(r)".to_string(),
        };
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM {from} {conflict}",
            table.name,
            column_list(table),
            values.join(", ")
        )
    }
}

fn column_list(table: &Table) -> String {
    table.columns.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// A row as the JSON array `insert_rows` takes.
pub(crate) fn row_json(table: &Table, row: &AnyRow) -> Result<Value> {
    let base64 = &base64::engine::general_purpose::STANDARD;
    let mut values = Vec::with_capacity(table.columns.len());
    for (i, (_, kind)) in table.columns.iter().enumerate() {
        values.push(match kind {
            Int => Value::from(row.try_get::<i64, _>(i)?),
            Int32 => Value::from(row.try_get::<i32, _>(i)?),
            Text => Value::from(row.try_get::<String, _>(i)?),
            Bytes => Value::from(base64.encode(row.try_get::<Vec<u8>, _>(i)?)),
            MaybeBytes => match row.try_get::<Option<Vec<u8>>, _>(i)? {
                Some(bytes) => Value::from(base64.encode(bytes)),
                None => Value::Null,
            },
        });
    }
    Ok(Value::Array(values))
}

/// Runs `statement` with the JSON array of `keys`: the rows it answers.
pub(crate) async fn fetch_keyed(
    tx: &mut Transaction<'_, Any>,
    statement: &str,
    keys: &[Value],
) -> Result<Vec<AnyRow>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let query = sqlx::query(AssertSqlSafe(statement.to_string())).bind(keys_json(keys));
    Ok(query.fetch_all(&mut **tx).await?)
}

/// Runs `statement` with the JSON array of `keys`.
pub(crate) async fn execute_keyed(
    tx: &mut Transaction<'_, Any>,
    statement: &str,
    keys: &[Value],
) -> Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    let query = sqlx::query(AssertSqlSafe(statement.to_string())).bind(keys_json(keys));
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

/// Inserts `rows` with `statement` (from `insert_rows`), a chunk at a time.
pub(crate) async fn insert_chunked(
    tx: &mut Transaction<'_, Any>,
    statement: &str,
    rows: Vec<Value>,
) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        execute_keyed(tx, statement, chunk).await?;
    }
    Ok(())
}

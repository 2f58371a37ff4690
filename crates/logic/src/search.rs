//! Search: a user's own messages that hold every word of a query, newest first, in pages.
//! The words are cut into terms by the `missive-search` tokenizer, which the storage backends
//! also index each message under, and each backend looks them up in its full-text index
//! (FTS5, FULLTEXT, GIN): nothing is scanned message by message.

use crate::limits::{Limit, key_of};
use crate::{Logic, compat};
use missive_proto::client::*;
use missive_proto::ids;
use missive_proto::internal::{SearchQuery, UserRef};
use missive_rpc::{Ctx, Status};

/// Groups a search names as scopes at most; a user in more is searched without that bound
/// (their inbox join alone keeps others' messages out).
const SCOPES_MAX: usize = 1_000;

/// Hits per page unless asked otherwise, and at most.
pub const SEARCH_HITS_DEFAULT: u32 = 20;
pub const SEARCH_HITS_MAX: u32 = 100;

impl Logic {
    pub(crate) async fn search(
        &self,
        ctx: &Ctx,
        req: SearchRequest,
    ) -> Result<SearchResponse, Status> {
        let caller = ctx.caller()?;
        self.limit(Limit::Searches, key_of(caller.user_id), 1).await?;
        let terms = missive_search::query(&req.query)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        if req.after_ms < 0 || req.before_ms < 0 {
            return Err(Status::invalid_argument("times are ms since the Unix epoch"));
        }
        let conversation = req.conversation_id;
        let (peer_id, group_id) =
            if ids::is_group(conversation) { (0, conversation) } else { (conversation, 0) };
        let limit = crate::page(req.limit, SEARCH_HITS_DEFAULT, SEARCH_HITS_MAX);
        let scopes = self.scopes(ctx, caller.user_id, peer_id, group_id).await?;
        let query = SearchQuery {
            user_id: caller.user_id,
            terms,
            peer_id,
            group_id,
            sender_id: req.sender_id,
            after_ms: req.after_ms,
            before_ms: req.before_ms,
            before_version: req.before_version,
            limit,
            scopes,
        };
        let page = self.deps.messages.search(ctx, query).await?;
        let next_before_version =
            if page.more { page.items.last().map_or(0, |item| item.version) } else { 0 };
        let hits = page
            .items
            .into_iter()
            .map(|item| SearchHit {
                version: item.version,
                message: item.message.map(compat::message_for_client),
            })
            .collect();
        Ok(SearchResponse { hits, next_before_version })
    }

    /// The conversations a search of `user_id` may find messages in, as scope terms: the
    /// one asked for, or the user's 1:1 chats and every group in their contact list (also the
    /// ones they left, whose messages they still hold).
    async fn scopes(
        &self,
        ctx: &Ctx,
        user_id: u64,
        peer_id: u64,
        group_id: u64,
    ) -> Result<Vec<String>, Status> {
        if group_id != 0 {
            return Ok(vec![missive_search::group_scope(group_id)]);
        }
        if peer_id != 0 {
            return Ok(vec![missive_search::user_scope(peer_id)]);
        }
        let list = self.deps.contacts.list(ctx, UserRef { user_id }).await?;
        let mut scopes = vec![missive_search::user_scope(user_id)];
        scopes.extend(
            list.records
                .iter()
                .filter_map(|record| record.contact.as_ref())
                .filter(|contact| contact.is_group)
                .map(|contact| missive_search::group_scope(contact.user_id)),
        );
        if scopes.len() > SCOPES_MAX {
            scopes.clear();
        }
        Ok(scopes)
    }
}

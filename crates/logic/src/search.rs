//! Search: a user's own messages that hold every word of a query, newest first, in pages.
//! The words are cut into terms by the `missive-search` tokenizer, which the storage backends
//! also index each message under, and each backend looks them up in its full-text index
//! (FTS5, FULLTEXT, GIN): nothing is scanned message by message.

use crate::limits::{Limit, key_of};
use crate::{Logic, compat};
use missive_proto::client::*;
use missive_proto::ids;
use missive_proto::internal::SearchQuery;
use missive_rpc::{Ctx, Status};

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
}

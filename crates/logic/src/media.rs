//! Images and files: uploaded for one conversation, downloadable by its members only.

use crate::limits::{Limit, key_of};
use crate::{Logic, validate};
use missive_proto::client::*;
use missive_proto::ids;
use missive_proto::internal::{MediaQuery, MediaRecord, PutMediaRequest};
use missive_rpc::{Code, Ctx, Status};

pub const MEDIA_NAME_BYTES_MAX: usize = 255;
const DEFAULT_MIME_TYPE: &str = "application/octet-stream";

pub(crate) fn media_ref(record: MediaRecord) -> MediaRef {
    MediaRef {
        media_id: record.media_id,
        name: record.name,
        mime_type: record.mime_type,
        size: record.size,
    }
}

/// A MIME type as `type/subtype`, without parameters or odd characters.
fn valid_mime_type(mime: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    mime.split_once('/').is_some_and(|(kind, sub)| token(kind) && token(sub))
}

impl Logic {
    /// May `user_id` see what was shared in this conversation (a peer user or a group)?
    async fn in_conversation(
        &self,
        ctx: &Ctx,
        user_id: u64,
        record: &MediaRecord,
    ) -> Result<bool, Status> {
        if record.owner_id == user_id {
            return Ok(true);
        }
        if ids::is_group(record.conversation_id) {
            let state = self.load_group(ctx, record.conversation_id).await?;
            return Ok(Self::role_in(&state, user_id).is_ok());
        }
        Ok(record.conversation_id == user_id)
    }

    pub(crate) async fn upload(
        &self,
        ctx: &Ctx,
        req: UploadRequest,
    ) -> Result<UploadResponse, Status> {
        let caller = ctx.caller()?;
        validate::name_characters("name", &req.name)?;
        if req.name.is_empty()
            || req.name.len() > MEDIA_NAME_BYTES_MAX
            || req.name.contains(['/', '\\'])
        {
            return Err(Status::invalid_argument(format!(
                "name must be 1 to {MEDIA_NAME_BYTES_MAX} bytes, without '/', '\\' or control characters"
            )));
        }
        let mime_type =
            if req.mime_type.is_empty() { DEFAULT_MIME_TYPE.to_string() } else { req.mime_type };
        if !valid_mime_type(&mime_type) {
            return Err(Status::invalid_argument("mime_type must look like type/subtype"));
        }
        if req.data.is_empty() {
            return Err(Status::invalid_argument("the upload is empty"));
        }
        if req.data.len() > self.config.media_bytes_max {
            return Err(Status::new(
                Code::LimitExceeded,
                format!("media must be at most {} bytes", self.config.media_bytes_max),
            ));
        }
        // Counted by size once the request is known to be well formed, before any lookup.
        let size = u32::try_from(req.data.len()).unwrap_or(u32::MAX);
        self.limit(Limit::UploadBytes, key_of(caller.user_id), size).await?;
        let conversation_id = req.conversation_id;
        if ids::is_group(conversation_id) {
            Self::role_in(&self.load_group(ctx, conversation_id).await?, caller.user_id)?;
        } else {
            self.username_of(ctx, conversation_id).await.map_err(|s| {
                s.translate(Code::NotFound, || Status::not_found("no such conversation"))
            })?;
            // Only for a conversation the uploader may write to: nobody fills a stranger's
            // (or a blocker's) conversation with files.
            self.check_direct(ctx, caller.user_id, conversation_id).await?;
        }
        let record = MediaRecord {
            owner_id: caller.user_id,
            conversation_id,
            name: req.name,
            mime_type,
            created_at_ms: self.now_ms(),
            ..MediaRecord::default()
        };
        let size = req.data.len() as u64;
        let quota_bytes = self.config.media_quota_bytes;
        let put = PutMediaRequest { record: Some(record), data: req.data, quota_bytes };
        let stored = self.deps.media.put(ctx, put);
        let stored = stored.await?;
        metrics::counter!("missive_media_uploads_total").increment(1);
        metrics::counter!("missive_media_uploaded_bytes_total").increment(size);
        Ok(UploadResponse { media: Some(media_ref(stored)) })
    }

    pub(crate) async fn download(
        &self,
        ctx: &Ctx,
        req: DownloadRequest,
    ) -> Result<DownloadResponse, Status> {
        let caller = ctx.caller()?;
        // The record first, alone: the bytes (up to the media limit) are read only for a
        // caller who may have them.
        let query = MediaQuery { media_id: req.media_id.clone(), with_data: false };
        let record = self.deps.media.get(ctx, query).await?.record.unwrap_or_default();
        if !self.in_conversation(ctx, caller.user_id, &record).await? {
            return Err(Status::new(
                Code::PermissionDenied,
                "this media belongs to a conversation you are not in",
            ));
        }
        let blob = self.deps.media.get(ctx, MediaQuery { media_id: req.media_id, with_data: true });
        let blob = blob.await?;
        Ok(DownloadResponse { media: blob.record.map(media_ref), data: blob.data })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mime_types() {
        for good in ["image/png", "application/vnd.ms-excel", "text/plain"] {
            assert!(super::valid_mime_type(good), "{good}");
        }
        for bad in ["", "image", "image/", "/png", "text/html; charset=utf-8", "a/b\r\nX: y"] {
            assert!(!super::valid_mime_type(bad), "{bad}");
        }
    }
}

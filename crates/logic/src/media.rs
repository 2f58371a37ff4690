//! Images and files: uploaded for one conversation, downloadable by its members only. Small
//! ones come whole (UPLOAD), larger ones in parts (UPLOAD_BEGIN, then UPLOAD_PART), so that
//! no request holds more than a part in memory; both are checked alike, for the whole size,
//! before a byte is stored.

use crate::limits::{Limit, key_of};
use crate::{Logic, validate};
use missive_proto::client::*;
use missive_proto::internal::{
    AppendMediaRequest, BeginMediaRequest, MediaQuery, MediaRecord, PutMediaRequest,
};
use missive_proto::{UPLOAD_PART_BYTES_MAX, ids};
use missive_rpc::{Code, Ctx, Status};

pub const MEDIA_NAME_BYTES_MAX: usize = 255;
/// Uploads in parts that one user may have unfinished at once.
pub const UNFINISHED_UPLOADS_MAX: u32 = 4;
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

    /// Checks an upload of `size` bytes as a whole, counts its bytes, and returns its record
    /// (without an id, which the store gives it).
    async fn upload_record(
        &self,
        ctx: &Ctx,
        conversation_id: u64,
        name: String,
        mime_type: String,
        size: u64,
    ) -> Result<MediaRecord, Status> {
        let caller = ctx.caller()?;
        validate::name_characters("name", &name)?;
        if name.is_empty() || name.len() > MEDIA_NAME_BYTES_MAX || name.contains(['/', '\\']) {
            return Err(Status::invalid_argument(format!(
                "name must be 1 to {MEDIA_NAME_BYTES_MAX} bytes, without '/', '\\' or control characters"
            )));
        }
        let mime_type =
            if mime_type.is_empty() { DEFAULT_MIME_TYPE.to_string() } else { mime_type };
        if !valid_mime_type(&mime_type) {
            return Err(Status::invalid_argument("mime_type must look like type/subtype"));
        }
        if size == 0 {
            return Err(Status::invalid_argument("the upload is empty"));
        }
        if size > self.config.media_bytes_max as u64 {
            return Err(Status::new(
                Code::LimitExceeded,
                format!("media must be at most {} bytes", self.config.media_bytes_max),
            ));
        }
        // Counted by size once the request is known to be well formed, before any lookup.
        let cost = u32::try_from(size).unwrap_or(u32::MAX);
        self.limit(Limit::UploadBytes, key_of(caller.user_id), cost).await?;
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
        Ok(MediaRecord {
            owner_id: caller.user_id,
            conversation_id,
            name,
            mime_type,
            size,
            created_at_ms: self.now_ms(),
            ..MediaRecord::default()
        })
    }

    fn uploaded(record: MediaRecord) -> MediaRef {
        metrics::counter!("missive_media_uploads_total").increment(1);
        metrics::counter!("missive_media_uploaded_bytes_total").increment(record.size);
        media_ref(record)
    }

    pub(crate) async fn upload(
        &self,
        ctx: &Ctx,
        req: UploadRequest,
    ) -> Result<UploadResponse, Status> {
        let size = req.data.len() as u64;
        let record =
            self.upload_record(ctx, req.conversation_id, req.name, req.mime_type, size).await?;
        let quota_bytes = self.config.media_quota_bytes;
        let put = PutMediaRequest { record: Some(record), data: req.data, quota_bytes };
        let stored = self.deps.media.put(ctx, put).await?;
        Ok(UploadResponse { media: Some(Self::uploaded(stored)) })
    }

    pub(crate) async fn upload_begin(
        &self,
        ctx: &Ctx,
        req: UploadBeginRequest,
    ) -> Result<UploadBeginResponse, Status> {
        let record =
            self.upload_record(ctx, req.conversation_id, req.name, req.mime_type, req.size).await?;
        let begin = BeginMediaRequest {
            record: Some(record),
            quota_bytes: self.config.media_quota_bytes,
            unfinished_max: UNFINISHED_UPLOADS_MAX,
        };
        let begun = self.deps.media.begin(ctx, begin).await?;
        Ok(UploadBeginResponse { media_id: begun.media_id, part_bytes_max: UPLOAD_PART_BYTES_MAX })
    }

    pub(crate) async fn upload_part(
        &self,
        ctx: &Ctx,
        req: UploadPartRequest,
    ) -> Result<UploadPartResponse, Status> {
        let caller = ctx.caller()?;
        if req.data.len() > UPLOAD_PART_BYTES_MAX as usize {
            return Err(Status::new(
                Code::LimitExceeded,
                format!("a part carries at most {UPLOAD_PART_BYTES_MAX} bytes"),
            ));
        }
        let append = AppendMediaRequest {
            media_id: req.media_id,
            owner_id: caller.user_id,
            offset: req.offset,
            data: req.data,
        };
        let appended = self.deps.media.append(ctx, append).await?;
        Ok(UploadPartResponse {
            received: appended.received,
            media: appended.record.map(Self::uploaded),
        })
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

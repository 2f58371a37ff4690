//! Media (images and files sent in messages): one file per upload under `media/` in the data
//! directory, which any deployment can hold, whichever database keeps the rest.
//!
//! A file is the record's length (4 bytes, big-endian), the record (protobuf) and the bytes.
//! It is written under a temporary name, flushed to disk and renamed, so a reader never sees
//! half a file and an acknowledged upload survives a crash. Ids are 128 random bits: knowing
//! one id tells nothing of another (downloads are also checked against the conversation).
//!
//! An upload in parts is the same file under `media/partial/<id>`, its record (with the
//! whole size) written at the start and the parts appended as they come: what it holds is
//! its length, so it goes on after a restart from where the disk says. With its last byte
//! it is flushed and renamed into place. Each owner has a bounded number unfinished, and one
//! left untouched for an hour is deleted (checked at most once a minute, when an upload
//! begins, and at start).
//!
//! What each owner keeps stored is counted in `media/owners/<user id>` (8 bytes, big-endian,
//! replaced whole), raised before the upload is written (for an upload in parts, by its
//! whole size when it begins, lowered again if it expires), so that a crash between the two
//! can only over-count: a quota is never passed. Uploads are written one at a time, which
//! also keeps the check and the count together (uploads are rare next to messages).

use missive_proto::internal::{
    AppendMediaRequest, AppendMediaResponse, BeginMediaRequest, MediaBlob, MediaQuery, MediaRecord,
    MediaStore, PutMediaRequest,
};
use missive_rpc::{Code, Ctx, Status};
use prost::Message as _;
use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// An upload in parts untouched this long is deleted.
pub const UNFINISHED_TTL: Duration = Duration::from_secs(3_600);
/// A record longer than this at a file's start means the file is not a media file.
const HEADER_BYTES_MAX: u32 = 64 * 1024;
/// How often, at most, unfinished uploads are checked for expiry.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media i/o at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("corrupt media file {0}")]
    Corrupt(PathBuf),
    #[error("storage quota of {quota} bytes reached ({used} stored)")]
    Quota { quota: u64, used: u64 },
    #[error("{0} uploads in parts are unfinished already; finish one first")]
    Unfinished(u32),
    #[error("no such upload in progress")]
    NoUpload,
    #[error("the part goes past the upload's size of {0} bytes")]
    PastSize(u64),
}

impl From<MediaError> for Status {
    fn from(err: MediaError) -> Status {
        let code = match err {
            MediaError::Quota { .. } | MediaError::Unfinished(_) => Code::LimitExceeded,
            MediaError::NoUpload => Code::NotFound,
            MediaError::PastSize(_) => Code::InvalidArgument,
            MediaError::Io { .. } | MediaError::Corrupt(_) => {
                tracing::error!(error = %err, "media storage failure");
                return Status::internal("media storage failure");
            }
        };
        Status::new(code, err.to_string())
    }
}

/// The media data-access service over a directory.
#[derive(Clone)]
pub struct FileMediaStore {
    dir: PathBuf,
    /// Held while an upload is counted and written.
    writing: Arc<Mutex<Writing>>,
}

/// What the writer keeps: the uploads in parts unfinished per owner, and when they were last
/// checked for expiry.
struct Writing {
    unfinished: HashMap<u64, u32>,
    swept_at: Instant,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MediaError + '_ {
    move |source| MediaError::Io { path: path.to_path_buf(), source }
}

/// A media id: 32 lowercase hex digits.
fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl FileMediaStore {
    /// Uses (creating if needed) `media/` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<FileMediaStore, MediaError> {
        let dir = data_dir.join("media");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let owners = dir.join("owners");
        std::fs::create_dir_all(&owners).map_err(io(&owners))?;
        let partial = dir.join("partial");
        std::fs::create_dir_all(&partial).map_err(io(&partial))?;
        let writing = Writing { unfinished: HashMap::new(), swept_at: Instant::now() };
        let store = FileMediaStore { dir, writing: Arc::new(Mutex::new(writing)) };
        store.sweep(&mut store.writing(), SystemTime::now())?;
        Ok(store)
    }

    fn writing(&self) -> MutexGuard<'_, Writing> {
        self.writing.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn partial_path(&self, id: &str) -> PathBuf {
        self.dir.join("partial").join(id)
    }

    /// Counts the unfinished uploads per owner again, deleting those untouched since
    /// [`UNFINISHED_TTL`] before `now` and giving their size back to their owner's count.
    fn sweep(&self, writing: &mut Writing, now: SystemTime) -> Result<(), MediaError> {
        let dir = self.dir.join("partial");
        let mut unfinished = HashMap::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            let touched = std::fs::metadata(&path).and_then(|m| m.modified()).map_err(io(&path))?;
            let record = match std::fs::File::open(&path).map_err(io(&path)) {
                Ok(mut file) => read_header(&mut file, &path).map(|(record, _)| record),
                Err(error) => Err(error),
            };
            let expired = now.duration_since(touched).is_ok_and(|idle| idle >= UNFINISHED_TTL);
            match record {
                Ok(record) if !expired => *unfinished.entry(record.owner_id).or_insert(0) += 1,
                Ok(record) => {
                    let used = self.usage(record.owner_id)?;
                    self.write_usage(record.owner_id, used.saturating_sub(record.size))?;
                    std::fs::remove_file(&path).map_err(io(&path))?;
                }
                // Torn at its very start by a crash (nothing counted yet is lost: at worst
                // the owner's count stays raised) or not ours.
                Err(error) => {
                    tracing::warn!(%error, "removing an unreadable unfinished upload");
                    std::fs::remove_file(&path).map_err(io(&path))?;
                }
            }
        }
        writing.unfinished = unfinished;
        writing.swept_at = Instant::now();
        Ok(())
    }

    fn usage_path(&self, owner_id: u64) -> PathBuf {
        self.dir.join("owners").join(owner_id.to_string())
    }

    /// Bytes `owner_id` keeps stored (0 for one who never uploaded).
    fn usage(&self, owner_id: u64) -> Result<u64, MediaError> {
        let path = self.usage_path(owner_id);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let bytes: [u8; 8] =
                    bytes.try_into().map_err(|_| MediaError::Corrupt(path.clone()))?;
                Ok(u64::from_be_bytes(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn write_usage(&self, owner_id: u64, used: u64) -> Result<(), MediaError> {
        let path = self.usage_path(owner_id);
        let temporary = path.with_extension("partial");
        let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
        file.write_all(&used.to_be_bytes()).map_err(io(&temporary))?;
        file.sync_all().map_err(io(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io(&path))
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(&id[..2]).join(id)
    }

    /// Raises the owner's count by the record's size, unless that passes `quota` (0: none).
    fn count(&self, record: &MediaRecord, quota: u64) -> Result<(), MediaError> {
        let used = self.usage(record.owner_id)?;
        if quota > 0 && used.saturating_add(record.size) > quota {
            return Err(MediaError::Quota { quota, used });
        }
        self.write_usage(record.owner_id, used + record.size)
    }

    /// Creates `path` (truncating it) with the record at its start.
    fn create_with_header(path: &Path, record: &MediaRecord) -> Result<std::fs::File, MediaError> {
        let header = record.encode_to_vec();
        let mut file = std::fs::File::create(path).map_err(io(path))?;
        file.write_all(&(header.len() as u32).to_be_bytes()).map_err(io(path))?;
        file.write_all(&header).map_err(io(path))?;
        Ok(file)
    }

    /// Flushes `file`, written at `from`, to disk and moves it into place as the record's.
    fn settle(&self, file: std::fs::File, from: &Path, id: &str) -> Result<(), MediaError> {
        file.sync_all().map_err(io(from))?;
        let path = self.path_of(id);
        let parent = path.parent().expect("media files live in a subdirectory");
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        std::fs::rename(from, &path).map_err(io(&path))?;
        std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(io(parent))
    }

    fn put_blocking(
        &self,
        record: &MediaRecord,
        data: &[u8],
        quota: u64,
    ) -> Result<(), MediaError> {
        let _writing = self.writing();
        self.count(record, quota)?;
        let temporary = self.path_of(&record.media_id).with_extension("partial");
        let parent = temporary.parent().expect("media files live in a subdirectory");
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let mut file = Self::create_with_header(&temporary, record)?;
        file.write_all(data).map_err(io(&temporary))?;
        self.settle(file, &temporary, &record.media_id)
    }

    fn begin_blocking(
        &self,
        record: &MediaRecord,
        quota: u64,
        unfinished_max: u32,
    ) -> Result<(), MediaError> {
        let mut writing = self.writing();
        let now = SystemTime::now();
        if writing.swept_at.elapsed() >= SWEEP_INTERVAL {
            self.sweep(&mut writing, now)?;
        }
        let unfinished = writing.unfinished.get(&record.owner_id).copied().unwrap_or(0);
        if unfinished >= unfinished_max {
            return Err(MediaError::Unfinished(unfinished));
        }
        self.count(record, quota)?;
        let path = self.partial_path(&record.media_id);
        Self::create_with_header(&path, record)?.sync_all().map_err(io(&path))?;
        *writing.unfinished.entry(record.owner_id).or_insert(0) += 1;
        Ok(())
    }

    fn append_blocking(&self, req: &AppendMediaRequest) -> Result<AppendMediaResponse, MediaError> {
        let mut writing = self.writing();
        if !valid_id(&req.media_id) {
            return Err(MediaError::NoUpload);
        }
        let path = self.partial_path(&req.media_id);
        let mut file = match std::fs::OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(MediaError::NoUpload);
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let (record, header_bytes) = read_header(&mut file, &path)?;
        if record.owner_id != req.owner_id {
            return Err(MediaError::NoUpload);
        }
        let end = file.seek(std::io::SeekFrom::End(0)).map_err(io(&path))?;
        let received = end.saturating_sub(header_bytes);
        if req.offset != received || req.data.is_empty() {
            return Ok(AppendMediaResponse { received, record: None });
        }
        let received = received + req.data.len() as u64;
        if received > record.size {
            return Err(MediaError::PastSize(record.size));
        }
        if let Err(error) = file.write_all(&req.data) {
            // What did reach the disk stays: the next part goes on from the file's length.
            return Err(io(&path)(error));
        }
        if received < record.size {
            return Ok(AppendMediaResponse { received, record: None });
        }
        self.settle(file, &path, &record.media_id)?;
        if let Some(count) = writing.unfinished.get_mut(&record.owner_id) {
            *count = count.saturating_sub(1);
        }
        Ok(AppendMediaResponse { received, record: Some(record) })
    }

    fn get_blocking(&self, id: &str, with_data: bool) -> Result<Option<MediaBlob>, MediaError> {
        let path = self.path_of(id);
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let (record, _) = read_header(&mut file, &path)?;
        let mut data = Vec::new();
        if with_data {
            file.read_to_end(&mut data).map_err(io(&path))?;
            if data.len() as u64 != record.size {
                return Err(MediaError::Corrupt(path));
            }
        }
        Ok(Some(MediaBlob { record: Some(record), data }))
    }
}

/// Reads a media file's record, and the bytes it takes at the file's start.
fn read_header(file: &mut std::fs::File, path: &Path) -> Result<(MediaRecord, u64), MediaError> {
    let mut length = [0u8; 4];
    file.read_exact(&mut length).map_err(io(path))?;
    let length = u32::from_be_bytes(length);
    if length > HEADER_BYTES_MAX {
        return Err(MediaError::Corrupt(path.to_path_buf()));
    }
    let mut header = vec![0u8; length as usize];
    file.read_exact(&mut header).map_err(io(path))?;
    let record = MediaRecord::decode(&*header).map_err(|_| MediaError::Corrupt(path.into()))?;
    Ok((record, 4 + u64::from(length)))
}

/// A new media id: 128 random bits, as 32 hex digits.
fn new_id() -> String {
    let id: u128 = rand::random();
    format!("{id:032x}")
}

/// Runs a blocking file operation off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, MediaError> + Send + 'static,
) -> Result<T, Status> {
    let done = tokio::task::spawn_blocking(work).await;
    Ok(done.map_err(|_| Status::internal("media i/o panicked"))??)
}

#[async_trait::async_trait]
impl MediaStore for FileMediaStore {
    async fn put(&self, _: &Ctx, req: PutMediaRequest) -> Result<MediaRecord, Status> {
        let mut record = req.record.ok_or_else(|| Status::invalid_argument("record missing"))?;
        record.media_id = new_id();
        record.size = req.data.len() as u64;
        let store = self.clone();
        let stored = record.clone();
        let quota = req.quota_bytes;
        blocking(move || store.put_blocking(&stored, &req.data, quota)).await?;
        Ok(record)
    }

    async fn begin(&self, _: &Ctx, req: BeginMediaRequest) -> Result<MediaRecord, Status> {
        let mut record = req.record.ok_or_else(|| Status::invalid_argument("record missing"))?;
        if record.size == 0 {
            return Err(Status::invalid_argument("an upload has at least one byte"));
        }
        record.media_id = new_id();
        let (store, begun) = (self.clone(), record.clone());
        blocking(move || store.begin_blocking(&begun, req.quota_bytes, req.unfinished_max)).await?;
        Ok(record)
    }

    async fn append(
        &self,
        _: &Ctx,
        req: AppendMediaRequest,
    ) -> Result<AppendMediaResponse, Status> {
        let store = self.clone();
        blocking(move || store.append_blocking(&req)).await
    }

    async fn get(&self, _: &Ctx, req: MediaQuery) -> Result<MediaBlob, Status> {
        if !valid_id(&req.media_id) {
            return Err(Status::new(Code::NotFound, "no such media"));
        }
        let store = self.clone();
        blocking(move || store.get_blocking(&req.media_id, req.with_data))
            .await?
            .ok_or_else(|| Status::new(Code::NotFound, "no such media"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_owner_stores_up_to_the_quota_counted_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Ctx::new(1);
        let put = |owner_id: u64, bytes: usize| PutMediaRequest {
            record: Some(MediaRecord { owner_id, name: "a.bin".into(), ..Default::default() }),
            data: vec![1; bytes],
            quota_bytes: 1_000,
        };
        let store = FileMediaStore::open(dir.path()).unwrap();
        store.put(&ctx, put(7, 600)).await.unwrap();
        let reopened = FileMediaStore::open(dir.path()).unwrap();
        let refused = reopened.put(&ctx, put(7, 401)).await.unwrap_err();
        assert_eq!(refused.code, Code::LimitExceeded, "{refused}");
        reopened.put(&ctx, put(7, 400)).await.expect("exactly the quota");
        reopened.put(&ctx, put(8, 1_000)).await.expect("another owner counts apart");
        let unlimited = PutMediaRequest { quota_bytes: 0, ..put(7, 5_000) };
        reopened.put(&ctx, unlimited).await.expect("no quota");
        assert_eq!(reopened.usage(7).unwrap(), 6_000);
    }

    #[tokio::test]
    async fn stored_media_reads_back_and_unknown_ids_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileMediaStore::open(dir.path()).unwrap();
        let ctx = Ctx::new(1);
        let record = MediaRecord { owner_id: 1, name: "a.bin".into(), ..Default::default() };
        let data = vec![7u8; 100_000];
        let put = PutMediaRequest { record: Some(record), data: data.clone(), quota_bytes: 0 };
        let stored = store.put(&ctx, put).await.unwrap();
        assert!(valid_id(&stored.media_id));
        assert_eq!(stored.size, 100_000);

        let reopened = FileMediaStore::open(dir.path()).unwrap();
        let query = MediaQuery { media_id: stored.media_id.clone(), with_data: true };
        let blob = reopened.get(&ctx, query).await.unwrap();
        assert_eq!((blob.record.unwrap(), blob.data), (stored.clone(), data));
        let query = MediaQuery { media_id: stored.media_id, with_data: false };
        assert!(reopened.get(&ctx, query).await.unwrap().data.is_empty());

        for id in ["0".repeat(32), "../../etc/passwd".into(), String::new()] {
            let query = MediaQuery { media_id: id, with_data: true };
            assert_eq!(reopened.get(&ctx, query).await.unwrap_err().code, Code::NotFound);
        }
    }

    #[tokio::test]
    async fn an_upload_in_parts_goes_on_from_what_the_disk_holds_and_is_readable_once_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileMediaStore::open(dir.path()).unwrap();
        let ctx = Ctx::new(1);
        let data: Vec<u8> = (0..250u8).cycle().take(10_000).collect();
        let record =
            MediaRecord { owner_id: 7, name: "a.bin".into(), size: 10_000, ..Default::default() };
        let begin = BeginMediaRequest { record: Some(record), quota_bytes: 0, unfinished_max: 2 };
        let begun = store.begin(&ctx, begin).await.unwrap();
        let id = begun.media_id.clone();
        let part = |owner_id, offset: usize, len: usize| AppendMediaRequest {
            media_id: id.clone(),
            owner_id,
            offset: offset as u64,
            data: data[offset..(offset + len).min(data.len())].to_vec(),
        };
        let received = |answer: AppendMediaResponse| (answer.received, answer.record.is_some());
        assert_eq!(received(store.append(&ctx, part(7, 0, 4_000)).await.unwrap()), (4_000, false));
        assert_eq!(
            store
                .get(&ctx, MediaQuery { media_id: id.clone(), with_data: false })
                .await
                .unwrap_err()
                .code,
            Code::NotFound,
            "not readable half done"
        );
        // A part sent again, or one ahead of what is held, is not taken: the answer says where.
        assert_eq!(received(store.append(&ctx, part(7, 0, 4_000)).await.unwrap()), (4_000, false));
        assert_eq!(received(store.append(&ctx, part(7, 8_000, 10)).await.unwrap()), (4_000, false));
        let stranger = store.append(&ctx, part(8, 4_000, 10)).await.unwrap_err();
        assert_eq!(stranger.code, Code::NotFound, "someone else's upload");
        let mut past = part(7, 4_000, 6_000);
        past.data.push(0);
        assert_eq!(store.append(&ctx, past).await.unwrap_err().code, Code::InvalidArgument);

        // After a restart it goes on.
        let store = FileMediaStore::open(dir.path()).unwrap();
        let done = store.append(&ctx, part(7, 4_000, 6_000)).await.unwrap();
        assert_eq!(done.received, 10_000);
        assert_eq!(done.record.as_ref(), Some(&begun));
        let blob = store.get(&ctx, MediaQuery { media_id: id.clone(), with_data: true }).await;
        assert_eq!(blob.unwrap().data, data);
        let again = store.append(&ctx, part(7, 0, 10)).await.unwrap_err();
        assert_eq!(again.code, Code::NotFound, "finished");
    }

    #[tokio::test]
    async fn unfinished_uploads_are_bounded_per_owner_and_expire_giving_their_quota_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileMediaStore::open(dir.path()).unwrap();
        let ctx = Ctx::new(1);
        let begin = |owner_id, size| BeginMediaRequest {
            record: Some(MediaRecord {
                owner_id,
                name: "a.bin".into(),
                size,
                ..Default::default()
            }),
            quota_bytes: 1_000,
            unfinished_max: 2,
        };
        let first = store.begin(&ctx, begin(7, 400)).await.unwrap();
        store.begin(&ctx, begin(7, 400)).await.unwrap();
        let refused = store.begin(&ctx, begin(7, 1)).await.unwrap_err();
        assert_eq!(refused.code, Code::LimitExceeded, "two unfinished at most: {refused}");
        store.begin(&ctx, begin(8, 1_000)).await.expect("another owner");
        assert_eq!(store.usage(7).unwrap(), 800, "counted whole from the start");

        // The first finishes; the second is left an hour: the sweep at start drops it.
        let data = vec![1; 400];
        let part = AppendMediaRequest { media_id: first.media_id, owner_id: 7, offset: 0, data };
        assert!(store.append(&ctx, part).await.unwrap().record.is_some());
        let partial = dir.path().join("media").join("partial");
        for entry in std::fs::read_dir(&partial).unwrap() {
            let file = std::fs::File::options().write(true).open(entry.unwrap().path()).unwrap();
            file.set_modified(SystemTime::now() - UNFINISHED_TTL).unwrap();
        }
        let store = FileMediaStore::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(&partial).unwrap().count(), 0);
        assert_eq!(store.usage(7).unwrap(), 400, "the expired one's size given back");
        assert_eq!(store.usage(8).unwrap(), 0);
        store.begin(&ctx, begin(7, 600)).await.expect("room again");
    }
}

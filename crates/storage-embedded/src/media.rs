//! Media (images and files sent in messages): one file per upload under `media/` in the data
//! directory, which any deployment can hold, whichever database keeps the rest.
//!
//! A file is the record's length (4 bytes, big-endian), the record (protobuf) and the bytes.
//! It is written under a temporary name, flushed to disk and renamed, so a reader never sees
//! half a file and an acknowledged upload survives a crash. Ids are 128 random bits: knowing
//! one id tells nothing of another (downloads are also checked against the conversation).
//!
//! What each owner keeps stored is counted in `media/owners/<user id>` (8 bytes, big-endian,
//! replaced whole), raised before the upload is written, so that a crash between the two can
//! only over-count: a quota is never passed. Uploads are written one at a time, which also
//! keeps the check and the count together (uploads are rare next to messages).

use missive_proto::internal::{MediaBlob, MediaQuery, MediaRecord, MediaStore, PutMediaRequest};
use missive_rpc::{Code, Ctx, Status};
use prost::Message as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media i/o at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("corrupt media file {0}")]
    Corrupt(PathBuf),
    #[error("storage quota of {quota} bytes reached ({used} stored)")]
    Quota { quota: u64, used: u64 },
}

impl From<MediaError> for Status {
    fn from(err: MediaError) -> Status {
        if let MediaError::Quota { .. } = err {
            return Status::new(Code::LimitExceeded, err.to_string());
        }
        tracing::error!(error = %err, "media storage failure");
        Status::internal("media storage failure")
    }
}

/// The media data-access service over a directory.
#[derive(Clone)]
pub struct FileMediaStore {
    dir: PathBuf,
    /// Held while an upload is counted and written.
    writing: std::sync::Arc<std::sync::Mutex<()>>,
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
        Ok(FileMediaStore { dir, writing: Default::default() })
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

    fn put_blocking(
        &self,
        record: &MediaRecord,
        data: &[u8],
        quota: u64,
    ) -> Result<(), MediaError> {
        let _writing = self.writing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let used = self.usage(record.owner_id)?;
        if quota > 0 && used.saturating_add(record.size) > quota {
            return Err(MediaError::Quota { quota, used });
        }
        self.write_usage(record.owner_id, used + record.size)?;
        let path = self.path_of(&record.media_id);
        let parent = path.parent().expect("media files live in a subdirectory");
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let temporary = path.with_extension("partial");
        let header = record.encode_to_vec();
        let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
        file.write_all(&(header.len() as u32).to_be_bytes()).map_err(io(&temporary))?;
        file.write_all(&header).map_err(io(&temporary))?;
        file.write_all(data).map_err(io(&temporary))?;
        file.sync_all().map_err(io(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io(&path))?;
        std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(io(parent))
    }

    fn get_blocking(&self, id: &str, with_data: bool) -> Result<Option<MediaBlob>, MediaError> {
        let path = self.path_of(id);
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let mut length = [0u8; 4];
        file.read_exact(&mut length).map_err(io(&path))?;
        let mut header = vec![0u8; u32::from_be_bytes(length) as usize];
        file.read_exact(&mut header).map_err(io(&path))?;
        let record =
            MediaRecord::decode(&*header).map_err(|_| MediaError::Corrupt(path.clone()))?;
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

#[async_trait::async_trait]
impl MediaStore for FileMediaStore {
    async fn put(&self, _: &Ctx, req: PutMediaRequest) -> Result<MediaRecord, Status> {
        let mut record = req.record.ok_or_else(|| Status::invalid_argument("record missing"))?;
        let id: u128 = rand::random();
        record.media_id = format!("{id:032x}");
        record.size = req.data.len() as u64;
        let store = self.clone();
        let stored = record.clone();
        let quota = req.quota_bytes;
        tokio::task::spawn_blocking(move || store.put_blocking(&stored, &req.data, quota))
            .await
            .map_err(|_| Status::internal("media writer panicked"))??;
        Ok(record)
    }

    async fn get(&self, _: &Ctx, req: MediaQuery) -> Result<MediaBlob, Status> {
        if !valid_id(&req.media_id) {
            return Err(Status::new(Code::NotFound, "no such media"));
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.get_blocking(&req.media_id, req.with_data))
            .await
            .map_err(|_| Status::internal("media reader panicked"))??
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
}

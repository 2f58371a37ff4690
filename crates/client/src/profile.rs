//! A client profile on disk: the server, the session token and the SyncKey of one device.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileState {
    pub server: String,
    pub username: String,
    pub token: String,
    pub user_id: u64,
    pub device_id: u64,
    /// Base64 of the opaque SyncKey.
    pub sync_key: String,
}

impl ProfileState {
    pub fn sync_key_bytes(&self) -> Vec<u8> {
        STANDARD.decode(&self.sync_key).unwrap_or_default()
    }

    pub fn set_sync_key(&mut self, key: &[u8]) {
        self.sync_key = STANDARD.encode(key);
    }
}

/// A directory holding one device's state in `state.json`.
pub struct ProfileDir {
    dir: PathBuf,
}

impl ProfileDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ProfileDir { dir: dir.into() }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The stored state, or the default when none is stored yet.
    pub fn load(&self) -> std::io::Result<ProfileState> {
        match std::fs::read(self.file()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ProfileState::default()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the state atomically (write, then rename), so a crash never leaves half a file.
    /// The file holds a session token, so only its owner may read it.
    pub fn save(&self, state: &ProfileState) -> std::io::Result<()> {
        use std::io::Write as _;
        std::fs::create_dir_all(&self.dir)?;
        let temporary = self.dir.join("state.json.tmp");
        let _ = std::fs::remove_file(&temporary);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
        std::fs::rename(temporary, self.file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_profile_reads_back_and_only_its_owner_may_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let profile = ProfileDir::new(dir.path().join("p"));
        let state = ProfileState { token: "secret".into(), user_id: 7, ..ProfileState::default() };
        profile.save(&state).unwrap();
        profile.save(&state).unwrap();
        assert_eq!(profile.load().unwrap().token, "secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(profile.file()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

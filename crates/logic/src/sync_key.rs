//! The SyncKey: the server-computed snapshot of what a client already has.
//!
//! To the client it is opaque bytes. Inside: a format byte, a protobuf `SyncKeyBody` (the user
//! and, per data type, the latest version delivered), and an HMAC-SHA256 tag truncated to 16
//! bytes under a secret only the server knows, so a client can neither forge a key nor present
//! another user's. Data types the server does not know are carried through untouched, so new
//! types can be added without breaking old keys.

use hmac::{Hmac, Mac};
use missive_proto::client::DataType;
use missive_proto::internal::{SyncKeyBody, SyncKeyEntry};
use prost::Message;
use sha2::Sha256;

const FORMAT: u8 = 1;
const TAG_BYTES: usize = 16;
/// Keys larger than this are refused before any decoding.
pub const KEY_BYTES_MAX: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SyncKeyError {
    #[error("sync key is malformed")]
    Malformed,
    #[error("sync key was not issued by this server")]
    BadTag,
    #[error("sync key belongs to another user")]
    WrongUser,
}

/// Per data type, the latest version delivered to the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncKey {
    pub user_id: u64,
    /// Sorted by type; at most one entry per type.
    entries: Vec<(u32, u64)>,
}

impl SyncKey {
    pub fn empty(user_id: u64) -> Self {
        SyncKey { user_id, entries: Vec::new() }
    }

    pub fn get(&self, data_type: DataType) -> u64 {
        let t = data_type as u32;
        self.entries.iter().find(|(k, _)| *k == t).map_or(0, |(_, v)| *v)
    }

    /// Raises the version of a type; a key never moves backwards.
    pub fn advance(&mut self, data_type: DataType, version: u64) {
        self.advance_raw(data_type as u32, version);
    }

    fn advance_raw(&mut self, t: u32, version: u64) {
        match self.entries.binary_search_by_key(&t, |(k, _)| *k) {
            Ok(i) => self.entries[i].1 = self.entries[i].1.max(version),
            Err(i) => self.entries.insert(i, (t, version)),
        }
    }
}

/// Seals and opens keys with the server's secret.
#[derive(Clone)]
pub struct SyncKeyCodec {
    mac: Hmac<Sha256>,
}

impl SyncKeyCodec {
    pub fn new(secret: &[u8]) -> Self {
        SyncKeyCodec { mac: Hmac::new_from_slice(secret).expect("hmac takes any key length") }
    }

    pub fn seal(&self, key: &SyncKey) -> Vec<u8> {
        let body = SyncKeyBody {
            user_id: key.user_id,
            entries: key
                .entries
                .iter()
                .map(|&(r#type, version)| SyncKeyEntry { r#type, version })
                .collect(),
        };
        let mut out = Vec::with_capacity(1 + body.encoded_len() + TAG_BYTES);
        out.push(FORMAT);
        body.encode(&mut out).expect("vec grows");
        let tag = self.tag(&out);
        out.extend_from_slice(&tag[..TAG_BYTES]);
        out
    }

    /// Opens a key presented by `user_id`; an empty key means "nothing delivered yet".
    pub fn open(&self, bytes: &[u8], user_id: u64) -> Result<SyncKey, SyncKeyError> {
        if bytes.is_empty() {
            return Ok(SyncKey::empty(user_id));
        }
        if bytes.len() > KEY_BYTES_MAX || bytes.len() < 1 + TAG_BYTES || bytes[0] != FORMAT {
            return Err(SyncKeyError::Malformed);
        }
        let (signed, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        let mut mac = self.mac.clone();
        mac.update(signed);
        mac.verify_truncated_left(tag).map_err(|_| SyncKeyError::BadTag)?;
        let body = SyncKeyBody::decode(&signed[1..]).map_err(|_| SyncKeyError::Malformed)?;
        if body.user_id != user_id {
            return Err(SyncKeyError::WrongUser);
        }
        let mut key = SyncKey::empty(user_id);
        for entry in body.entries {
            key.advance_raw(entry.r#type, entry.version);
        }
        Ok(key)
    }

    fn tag(&self, signed: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(signed);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sealed_keys_open_to_themselves(
            user_id: u64,
            versions in proptest::collection::vec((1u32..8, any::<u64>()), 0..8),
        ) {
            let codec = SyncKeyCodec::new(b"secret");
            let mut key = SyncKey::empty(user_id);
            for (t, v) in versions {
                key.advance_raw(t, v);
            }
            let sealed = codec.seal(&key);
            prop_assert_eq!(codec.open(&sealed, user_id), Ok(key));
        }

        /// Flipping any bit of a key makes it fail to open; it never opens to another key.
        #[test]
        fn tampered_keys_never_open(user_id in 1u64..1000, version: u64, bit in 0usize..400) {
            let codec = SyncKeyCodec::new(b"secret");
            let mut key = SyncKey::empty(user_id);
            key.advance(DataType::Message, version);
            let mut sealed = codec.seal(&key);
            let bit = bit % (sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(codec.open(&sealed, user_id).is_err());
        }

        /// Advancing never lowers a version.
        #[test]
        fn keys_only_move_forward(steps in proptest::collection::vec(any::<u64>(), 1..20)) {
            let mut key = SyncKey::empty(1);
            let mut high = 0;
            for v in steps {
                key.advance(DataType::Contact, v);
                high = high.max(v);
                prop_assert_eq!(key.get(DataType::Contact), high);
            }
        }
    }

    #[test]
    fn keys_are_bound_to_their_user_and_secret() {
        let codec = SyncKeyCodec::new(b"secret");
        let mut key = SyncKey::empty(5);
        key.advance(DataType::Message, 9);
        let sealed = codec.seal(&key);
        assert_eq!(codec.open(&sealed, 6), Err(SyncKeyError::WrongUser));
        assert_eq!(SyncKeyCodec::new(b"other").open(&sealed, 5), Err(SyncKeyError::BadTag));
        assert_eq!(codec.open(b"\x01short", 5), Err(SyncKeyError::Malformed));
        assert_eq!(codec.open(b"", 5), Ok(SyncKey::empty(5)));
    }
}

//! Where the short link's JSON form differs from serde's defaults (docs/protocol.md §4.3):
//! `bytes` fields are standard base64, and an optional field is absent or a value, never null.

use serde::{Deserialize, Deserializer};

/// `bytes` fields (the SyncKey, media data): standard base64 with padding, as protobuf's JSON
/// mapping has them.
pub mod base64 {
    use ::base64::Engine as _;
    use ::base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// An optional field that is present: a value, and `null` refused as it is for every other
/// field (absence is the message's `#[serde(default)]`).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use crate::client::{GroupUpdateRequest, SyncRequest, UploadRequest};

    fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn optional_fields_are_absent_or_values_never_null() {
        let update: GroupUpdateRequest = parse(r#"{"group_id":7,"name":"Trip"}"#).unwrap();
        assert_eq!((update.name.as_deref(), update.announcement), (Some("Trip"), None));
        let cleared: GroupUpdateRequest = parse(r#"{"announcement":""}"#).unwrap();
        assert_eq!(cleared.announcement.as_deref(), Some(""));
        assert!(parse::<GroupUpdateRequest>(r#"{"name":null}"#).is_err());
        assert!(parse::<GroupUpdateRequest>(r#"{"announcement":null}"#).is_err());
    }

    #[test]
    fn bytes_fields_are_padded_standard_base64() {
        let sync: SyncRequest = parse(r#"{"sync_key":"AAE="}"#).unwrap();
        assert_eq!(sync.sync_key, [0, 1]);
        let upload: UploadRequest = parse(r#"{"data":"+/8="}"#).unwrap();
        assert_eq!(upload.data, [0xfb, 0xff]);
        assert!(parse::<SyncRequest>(r#"{"sync_key":"AAE"}"#).is_err());
        assert!(parse::<SyncRequest>(r#"{"sync_key":"-_8="}"#).is_err());
    }

    #[test]
    fn duplicate_keys_and_nulls_in_lists_are_refused() {
        assert!(parse::<SyncRequest>(r#"{"limit":1,"limit":2}"#).is_err());
        let members = r#"{"group_id":7,"user_ids":[1,null]}"#;
        assert!(parse::<crate::client::GroupInviteRequest>(members).is_err());
    }
}

//! Group invitations, under `group-invites accept`: nobody is put into a group without
//! accepting. An invitation names the group, the invitee, the inviter and when it expires,
//! sealed with an HMAC under a key derived from the server's secret, so the server keeps no
//! state for it and a client can neither forge one nor use another's. It reaches the invitee
//! as a GROUP_INVITATION message; GROUP_JOIN presents it back.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const FORMAT: u8 = 1;
const TAG_BYTES: usize = 16;
/// The format byte, four 8-byte fields, the tag.
const SEALED_BYTES: usize = 1 + 4 * 8 + TAG_BYTES;
/// Invitations this long, as text, at most: anything longer is refused unread.
const INVITATION_CHARS_MAX: usize = SEALED_BYTES.div_ceil(3) * 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invitation {
    pub group_id: u64,
    /// The invitee: only they may accept it.
    pub user_id: u64,
    pub inviter_id: u64,
    pub expires_at_ms: i64,
}

/// Seals and opens invitations under one secret.
#[derive(Clone)]
pub struct InvitationCodec {
    mac: Hmac<Sha256>,
}

impl InvitationCodec {
    /// Keyed apart from every other use of `secret` (SyncKeys use it too).
    pub fn new(secret: &[u8]) -> Self {
        let mut derive = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length");
        derive.update(b"missive group invitations");
        let key = derive.finalize().into_bytes();
        InvitationCodec { mac: Hmac::new_from_slice(&key).expect("hmac takes any key length") }
    }

    pub fn seal(&self, invitation: &Invitation) -> String {
        let mut bytes = Vec::with_capacity(SEALED_BYTES);
        bytes.push(FORMAT);
        bytes.extend_from_slice(&invitation.group_id.to_be_bytes());
        bytes.extend_from_slice(&invitation.user_id.to_be_bytes());
        bytes.extend_from_slice(&invitation.inviter_id.to_be_bytes());
        bytes.extend_from_slice(&invitation.expires_at_ms.to_be_bytes());
        let mut mac = self.mac.clone();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes()[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The invitation, if this server sealed it (expired or not).
    pub fn open(&self, text: &str) -> Option<Invitation> {
        if text.len() > INVITATION_CHARS_MAX {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() != SEALED_BYTES || bytes[0] != FORMAT {
            return None;
        }
        let (body, tag) = bytes.split_at(SEALED_BYTES - TAG_BYTES);
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.verify_truncated_left(tag).ok()?;
        let field = |n: usize| <[u8; 8]>::try_from(&body[1 + 8 * n..9 + 8 * n]).expect("8 bytes");
        Some(Invitation {
            group_id: u64::from_be_bytes(field(0)),
            user_id: u64::from_be_bytes(field(1)),
            inviter_id: u64::from_be_bytes(field(2)),
            expires_at_ms: i64::from_be_bytes(field(3)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invitation_opens_only_as_sealed_and_only_under_its_secret() {
        let codec = InvitationCodec::new(b"secret");
        let invitation =
            Invitation { group_id: 1 << 62, user_id: 7, inviter_id: 9, expires_at_ms: 1_000 };
        let sealed = codec.seal(&invitation);
        assert!(sealed.len() <= INVITATION_CHARS_MAX);
        assert_eq!(codec.open(&sealed), Some(invitation));
        assert_eq!(InvitationCodec::new(b"other").open(&sealed), None, "another server's");
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for at in [0, 9, 17, 30, bytes.len() - 1] {
            bytes[at] ^= 1;
            assert_eq!(codec.open(&URL_SAFE_NO_PAD.encode(&bytes)), None, "byte {at} changed");
            bytes[at] ^= 1;
        }
        for bad in ["", "!!!!", &sealed[1..], &format!("{sealed}A"), &"A".repeat(10_000)] {
            assert_eq!(codec.open(bad), None, "{bad:?}");
        }
    }
}

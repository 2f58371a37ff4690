//! The part of a message that storage backends keep as one opaque value.
//!
//! Every backend stores the version-1 fields of a message (sender, recipient, kind, text,
//! time, client id) in columns of their own; everything a later protocol version added
//! travels as one encoded [`MessageExtra`], so a new field needs no new column.

use crate::client::Message;
use crate::internal::MessageExtra;
use prost::Message as _;

/// The encoded extra fields of `message`, or `None` when it has none.
pub fn encode(message: &Message) -> Option<Vec<u8>> {
    let extra = MessageExtra {
        group_id: message.group_id,
        from_nickname: message.from_nickname.clone(),
        media: message.media.clone(),
        ref_message_id: message.ref_message_id,
        mentions: message.mentions.clone(),
        event: message.event.clone(),
        recalled: message.recalled,
        invitation: message.invitation.clone(),
        edited_at_ms: message.edited_at_ms,
        reactions: message.reactions.clone(),
        reaction: message.reaction.clone(),
        edit_history: message.edit_history.clone(),
    };
    let bytes = extra.encode_to_vec();
    (!bytes.is_empty()).then_some(bytes)
}

/// Puts the stored extra fields back into a message read from the columns.
///
/// `MessageExtra` numbers its fields as `Message` does, so decoding its bytes into the
/// message sets exactly those fields.
pub fn merge(message: &mut Message, stored: &[u8]) -> Result<(), prost::DecodeError> {
    message.merge(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{GroupEvent, MediaRef};

    #[test]
    fn extra_fields_survive_the_round_trip() {
        let full = Message {
            id: 7,
            text: "hi".into(),
            group_id: 1 << 50,
            from_nickname: "Al".into(),
            media: Some(MediaRef {
                media_id: "m".into(),
                name: "a.png".into(),
                ..Default::default()
            }),
            ref_message_id: 3,
            mentions: vec![4, 5],
            event: Some(GroupEvent {
                action: 2,
                actor_id: 1,
                target_ids: vec![9],
                value: String::new(),
            }),
            recalled: true,
            invitation: "sealed".into(),
            edited_at_ms: 11,
            reactions: vec![crate::client::Reaction { emoji: "👍".into(), user_ids: vec![4] }],
            reaction: "👍".into(),
            edit_history: vec![crate::client::EditRecord { text: "hi".into(), replaced_at_ms: 11 }],
            ..Default::default()
        };
        let mut columns = Message { id: 7, text: "hi".into(), ..Default::default() };
        merge(&mut columns, &encode(&full).unwrap()).unwrap();
        assert_eq!(columns, full);
        assert_eq!(encode(&Message { text: "plain".into(), ..Default::default() }), None);
    }
}

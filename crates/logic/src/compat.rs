//! Protocol-version adaptation (the seed's "compat" service): what each client version is
//! sent, so that old clients keep working as the protocol grows.
//!
//! Version 3 clients get everything. Version 2 clients get all but what version 3 added, and
//! every message that is not plain text carries a
//! fallback text to show if the kind is unknown to them. Version 1 clients knew only users,
//! friends and text: group messages reach them as text from the group's contact with the
//! sender's nickname in front, every other kind as its fallback text, and sync items they
//! could not represent (pending requests, departed groups) are left out. What a version-1
//! client sends to a group's contact goes to the group (see `message.rs`). The rules are
//! documented in docs/protocol.md, "Protocol versions".

use missive_proto::client::*;

/// What a client shows for a message whose kind it does not know (empty for plain text).
pub fn fallback_text(message: &Message) -> String {
    let sender =
        if message.from_nickname.is_empty() { &message.from } else { &message.from_nickname };
    if message.recalled {
        return format!("{sender} recalled a message");
    }
    let with_caption = |label: String| {
        if message.text.is_empty() { label } else { format!("{label} {}", message.text) }
    };
    let name = message.media.as_ref().map_or("", |m| m.name.as_str());
    match MessageKind::try_from(message.kind) {
        Ok(MessageKind::Unspecified | MessageKind::Text) => String::new(),
        Ok(MessageKind::Image) => with_caption("[Image]".to_string()),
        Ok(MessageKind::File) => with_caption(format!("[File: {name}]")),
        Ok(MessageKind::Recall) => format!("{sender} recalled a message"),
        Ok(MessageKind::Receipt) => format!("{sender} read your message"),
        Ok(MessageKind::System | MessageKind::GroupInvitation) => message.text.clone(),
        Ok(MessageKind::Edit) => format!("{sender} edited a message: {}", message.text),
        Ok(MessageKind::Reaction) if message.reaction.is_empty() => {
            format!("{sender} took back a reaction")
        }
        Ok(MessageKind::Reaction) => {
            format!("{sender} reacted {} to \"{}\"", message.reaction, message.text)
        }
        Err(_) => "[Unsupported message]".to_string(),
    }
}

/// The text a client that knows only TEXT shows.
fn plain_text(message: &Message) -> String {
    let fallback = fallback_text(message);
    if fallback.is_empty() { message.text.clone() } else { fallback }
}

/// The item as a client of `version` knows it, or `None` when it has no form in that version.
/// `me` is the syncing user (id, username).
pub fn adapt(item: SyncItem, version: u32, me: (u64, &str)) -> Option<SyncItem> {
    match version {
        0 | 1 => for_version_1(item, me),
        2 => for_version_2(item),
        _ => Some(for_current(item)),
    }
}

/// Adds the fallback text a client needs for kinds it may not know, and takes out what is
/// kept for the operators only.
pub fn for_current(mut item: SyncItem) -> SyncItem {
    if let Some(sync_item::Body::Message(message)) = &mut item.body {
        *message = message_for_client(std::mem::take(message));
    }
    item
}

/// A message as a current client receives it (from SYNC, or a SEARCH).
pub fn message_for_client(mut message: Message) -> Message {
    message.fallback_text = fallback_text(&message);
    message.edit_history.clear();
    message
}

/// A reaction taken back: worth nothing as a line of text, so left out for clients that know
/// no reactions.
fn is_reaction_taken_back(item: &SyncItem) -> bool {
    matches!(&item.body, Some(sync_item::Body::Message(m))
        if m.kind == MessageKind::Reaction as i32 && m.reaction.is_empty())
}

/// The item without what version 3 added: one's privacy settings in the profile, edits'
/// times and reactions in messages (EDIT and REACTION items reach it as kinds it does not
/// know, with their fallback texts).
fn for_version_2(item: SyncItem) -> Option<SyncItem> {
    if is_reaction_taken_back(&item) {
        return None;
    }
    let mut item = for_current(item);
    match &mut item.body {
        Some(sync_item::Body::Profile(profile)) => profile.presence_visibility = 0,
        Some(sync_item::Body::Message(message)) => {
            message.edited_at_ms = 0;
            message.reactions.clear();
            message.reaction.clear();
        }
        _ => {}
    }
    Some(item)
}

/// The item as a version-1 client knows it, or `None` when it has no version-1 form.
/// `me` is the syncing user (id, username).
pub fn for_version_1(item: SyncItem, me: (u64, &str)) -> Option<SyncItem> {
    if is_reaction_taken_back(&item) {
        return None;
    }
    let body = match item.body? {
        sync_item::Body::Profile(profile) => {
            sync_item::Body::Profile(Profile { presence_visibility: 0, ..profile })
        }
        sync_item::Body::Contact(contact) => {
            if !matches!(crate::contact::relation(&contact), Relation::Friend | Relation::Member) {
                return None;
            }
            sync_item::Body::Contact(Contact {
                user_id: contact.user_id,
                username: contact.username,
                nickname: contact.nickname,
                ..Contact::default()
            })
        }
        sync_item::Body::Message(message) => {
            sync_item::Body::Message(message_for_version_1(&message, me))
        }
    };
    Some(SyncItem { r#type: item.r#type, version: item.version, body: Some(body) })
}

fn message_for_version_1(message: &Message, (my_id, my_name): (u64, &str)) -> Message {
    let text = plain_text(message);
    if message.group_id == 0 {
        return Message {
            id: message.id,
            from_user_id: message.from_user_id,
            from: message.from.clone(),
            to_user_id: message.to_user_id,
            to: message.to.clone(),
            kind: MessageKind::Text as i32,
            text,
            sent_at_ms: message.sent_at_ms,
            client_msg_id: message.client_msg_id.clone(),
            ..Message::default()
        };
    }
    // From the group's contact, to me; a member's words behind their nickname, a system
    // message's as they are.
    let system = message.kind == MessageKind::System as i32;
    let text = if system { text } else { format!("{}: {text}", message.from_nickname) };
    Message {
        id: message.id,
        from_user_id: message.group_id,
        from: missive_proto::ids::group_handle(message.group_id),
        to_user_id: my_id,
        to: my_name.to_string(),
        kind: MessageKind::Text as i32,
        text,
        sent_at_ms: message.sent_at_ms,
        client_msg_id: message.client_msg_id.clone(),
        ..Message::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn group_message(kind: MessageKind, text: &str) -> Message {
        Message {
            id: 9,
            from_user_id: 1,
            from: "alice".into(),
            from_nickname: "Alice".into(),
            to_user_id: 1 << 50,
            to: "1125899906842624@chatroom".into(),
            group_id: 1 << 50,
            kind: kind as i32,
            text: text.into(),
            sent_at_ms: 5,
            client_msg_id: "c".into(),
            mentions: vec![2],
            ..Default::default()
        }
    }

    fn item(message: Message) -> SyncItem {
        SyncItem {
            r#type: DataType::Message as i32,
            version: 3,
            body: Some(sync_item::Body::Message(message)),
        }
    }

    fn v1_text(message: Message) -> String {
        match for_version_1(item(message), (2, "bob")).unwrap().body.unwrap() {
            sync_item::Body::Message(m) => {
                assert_eq!(m.kind, MessageKind::Text as i32);
                assert!(m.group_id == 0 && m.media.is_none() && m.mentions.is_empty());
                m.text
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn version_1_sees_group_messages_from_the_group_with_the_sender_in_front() {
        let adapted =
            for_version_1(item(group_message(MessageKind::Text, "hi")), (2, "bob")).unwrap();
        let Some(sync_item::Body::Message(m)) = adapted.body else { unreachable!() };
        assert_eq!((m.from_user_id, m.from.as_str()), (1 << 50, "1125899906842624@chatroom"));
        assert_eq!((m.to_user_id, m.to.as_str(), m.text.as_str()), (2, "bob", "Alice: hi"));
        // Nothing a version-1 schema lacks is on the wire.
        let v1_fields = Message { from_nickname: String::new(), ..m.clone() };
        assert_eq!(m.encode_to_vec(), v1_fields.encode_to_vec());
    }

    #[test]
    fn every_kind_reaches_version_1_as_readable_text() {
        let image = Message {
            media: Some(MediaRef { name: "cat.png".into(), ..Default::default() }),
            ..group_message(MessageKind::Image, "")
        };
        assert_eq!(v1_text(image), "Alice: [Image]");
        let file = Message {
            media: Some(MediaRef { name: "a.pdf".into(), ..Default::default() }),
            group_id: 0,
            ..group_message(MessageKind::File, "see")
        };
        assert_eq!(v1_text(file), "[File: a.pdf] see");
        assert_eq!(
            v1_text(Message { group_id: 0, ..group_message(MessageKind::Recall, "") }),
            "Alice recalled a message"
        );
        assert_eq!(
            v1_text(Message { group_id: 0, ..group_message(MessageKind::Receipt, "") }),
            "Alice read your message"
        );
        assert_eq!(
            v1_text(group_message(MessageKind::System, "Alice invited Bob")),
            "Alice invited Bob"
        );
        assert_eq!(
            v1_text(Message { recalled: true, ..group_message(MessageKind::Text, "") }),
            "Alice: Alice recalled a message"
        );
        assert_eq!(
            v1_text(Message { group_id: 0, kind: 99, ..group_message(MessageKind::Text, "x") }),
            "[Unsupported message]"
        );
        assert_eq!(
            v1_text(group_message(MessageKind::Edit, "fixed")),
            "Alice: Alice edited a message: fixed"
        );
        let reaction =
            Message { reaction: "👍".into(), ..group_message(MessageKind::Reaction, "hi all") };
        assert_eq!(v1_text(reaction), "Alice: Alice reacted 👍 to \"hi all\"");
    }

    #[test]
    fn every_version_keeps_profiles_and_contacts() {
        let profile = SyncItem {
            r#type: DataType::Account as i32,
            version: 2,
            body: Some(sync_item::Body::Profile(Profile { user_id: 2, ..Default::default() })),
        };
        for version in 1..=3 {
            assert!(adapt(profile.clone(), version, (2, "bob")).unwrap().body.is_some());
        }
    }

    #[test]
    fn version_2_gets_no_field_of_version_3_and_no_reaction_taken_back() {
        let reacted = Message {
            reactions: vec![Reaction { emoji: "👍".into(), user_ids: vec![2] }],
            edited_at_ms: 7,
            edit_history: vec![EditRecord { text: "old".into(), replaced_at_ms: 7 }],
            ..group_message(MessageKind::Text, "hi")
        };
        let Some(sync_item::Body::Message(m)) =
            adapt(item(reacted.clone()), 2, (2, "bob")).unwrap().body
        else {
            unreachable!()
        };
        assert!(m.reactions.is_empty() && m.edited_at_ms == 0 && m.edit_history.is_empty());
        let Some(sync_item::Body::Message(m)) = adapt(item(reacted), 3, (2, "bob")).unwrap().body
        else {
            unreachable!()
        };
        assert_eq!((m.reactions.len(), m.edited_at_ms), (1, 7));
        assert!(m.edit_history.is_empty(), "kept for the operators only");
        let taken_back = item(group_message(MessageKind::Reaction, "hi"));
        assert!(adapt(taken_back.clone(), 1, (2, "bob")).is_none());
        assert!(adapt(taken_back.clone(), 2, (2, "bob")).is_none());
        assert!(adapt(taken_back, 3, (2, "bob")).is_some());
    }

    #[test]
    fn version_1_keeps_friends_and_groups_and_drops_what_it_cannot_show() {
        let contact = |relation: Relation, is_group| SyncItem {
            r#type: DataType::Contact as i32,
            version: 4,
            body: Some(sync_item::Body::Contact(Contact {
                user_id: 7,
                username: "carol".into(),
                nickname: "Carol".into(),
                is_group,
                relation: relation as i32,
                remark: "C".into(),
                ..Default::default()
            })),
        };
        for (relation, is_group, kept) in [
            (Relation::Friend, false, true),
            (Relation::Member, true, true),
            (Relation::RequestReceived, false, false),
            (Relation::None, true, false),
        ] {
            let adapted = for_version_1(contact(relation, is_group), (2, "bob"));
            assert_eq!(adapted.is_some(), kept, "{relation:?}");
            if let Some(SyncItem { body: Some(sync_item::Body::Contact(c)), .. }) = adapted {
                assert_eq!(
                    c,
                    Contact {
                        user_id: 7,
                        username: "carol".into(),
                        nickname: "Carol".into(),
                        ..Default::default()
                    }
                );
            }
        }
    }
}

//! The id space users and groups share.
//!
//! A group stands in its members' contact lists like a user does (as WeChat's chat rooms
//! did), and a version-1 client sends to a group as it sends to a user: by the contact's id.
//! So group ids and user ids must never collide. User ids stay below [`GROUP_ID_BASE`]; group
//! ids start there. Both stay below 2^53, so JSON clients read them exactly.

/// The first group id: 2^50.
pub const GROUP_ID_BASE: u64 = 1 << 50;

/// The suffix of a group's handle, `<group id>@chatroom`.
const GROUP_HANDLE_SUFFIX: &str = "@chatroom";

pub fn is_group(id: u64) -> bool {
    id >= GROUP_ID_BASE
}

/// The name a group goes by where a username is expected: `<group id>@chatroom`.
pub fn group_handle(group_id: u64) -> String {
    format!("{group_id}{GROUP_HANDLE_SUFFIX}")
}

/// The group a handle names, if it is one.
pub fn parse_group_handle(handle: &str) -> Option<u64> {
    let id: u64 = handle.strip_suffix(GROUP_HANDLE_SUFFIX)?.parse().ok()?;
    is_group(id).then_some(id)
}

/// The group a name gives: its handle, or its id in digits.
pub fn parse_group(name: &str) -> Option<u64> {
    parse_group_handle(name).or_else(|| name.parse().ok().filter(|id| is_group(*id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_users_are_not_groups() {
        let id = GROUP_ID_BASE + 41;
        assert_eq!(parse_group_handle(&group_handle(id)), Some(id));
        assert_eq!(parse_group_handle("41@chatroom"), None);
        assert_eq!(parse_group_handle("alice"), None);
        assert!(!is_group(GROUP_ID_BASE - 1));
        assert_eq!(parse_group(&id.to_string()), Some(id));
        assert_eq!(parse_group(&group_handle(id)), Some(id));
        assert_eq!(parse_group("41"), None);
    }
}

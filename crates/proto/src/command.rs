//! The command numbers carried in the frame header, and their names on the short link.

/// Every client command. The numbers are part of the wire protocol: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Command {
    Auth = 1,
    Ping = 2,
    Register = 3,
    Login = 4,
    Logout = 5,
    GetProfile = 6,
    UpdateProfile = 7,
    Send = 8,
    Sync = 9,
    FriendRequest = 10,
    FriendRespond = 11,
    FriendRemove = 12,
    SetBlocked = 13,
    SetRemark = 14,
    ListContacts = 15,
    GroupCreate = 20,
    GroupInvite = 21,
    GroupRemove = 22,
    GroupLeave = 23,
    GroupUpdate = 24,
    GroupSetAdmin = 25,
    GroupTransfer = 26,
    GroupDissolve = 27,
    GroupInfo = 28,
    Upload = 30,
    Download = 31,
    Recall = 32,
    MarkRead = 33,
    /// Server to client only.
    Notify = 100,
}

impl Command {
    pub const ALL: [Command; 29] = [
        Command::Auth,
        Command::Ping,
        Command::Register,
        Command::Login,
        Command::Logout,
        Command::GetProfile,
        Command::UpdateProfile,
        Command::Send,
        Command::Sync,
        Command::FriendRequest,
        Command::FriendRespond,
        Command::FriendRemove,
        Command::SetBlocked,
        Command::SetRemark,
        Command::ListContacts,
        Command::GroupCreate,
        Command::GroupInvite,
        Command::GroupRemove,
        Command::GroupLeave,
        Command::GroupUpdate,
        Command::GroupSetAdmin,
        Command::GroupTransfer,
        Command::GroupDissolve,
        Command::GroupInfo,
        Command::Upload,
        Command::Download,
        Command::Recall,
        Command::MarkRead,
        Command::Notify,
    ];

    /// The command's place in [`Command::ALL`], which numbers per-command tables.
    pub fn index(self) -> usize {
        match self {
            Command::Auth => 0,
            Command::Ping => 1,
            Command::Register => 2,
            Command::Login => 3,
            Command::Logout => 4,
            Command::GetProfile => 5,
            Command::UpdateProfile => 6,
            Command::Send => 7,
            Command::Sync => 8,
            Command::FriendRequest => 9,
            Command::FriendRespond => 10,
            Command::FriendRemove => 11,
            Command::SetBlocked => 12,
            Command::SetRemark => 13,
            Command::ListContacts => 14,
            Command::GroupCreate => 15,
            Command::GroupInvite => 16,
            Command::GroupRemove => 17,
            Command::GroupLeave => 18,
            Command::GroupUpdate => 19,
            Command::GroupSetAdmin => 20,
            Command::GroupTransfer => 21,
            Command::GroupDissolve => 22,
            Command::GroupInfo => 23,
            Command::Upload => 24,
            Command::Download => 25,
            Command::Recall => 26,
            Command::MarkRead => 27,
            Command::Notify => 28,
        }
    }

    pub fn from_u16(value: u16) -> Option<Command> {
        Command::ALL.into_iter().find(|c| *c as u16 == value)
    }

    /// The path segment of the short link: `POST /v1/<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Command::Auth => "auth",
            Command::Ping => "ping",
            Command::Register => "register",
            Command::Login => "login",
            Command::Logout => "logout",
            Command::GetProfile => "get_profile",
            Command::UpdateProfile => "update_profile",
            Command::Send => "send",
            Command::Sync => "sync",
            Command::FriendRequest => "friend_request",
            Command::FriendRespond => "friend_respond",
            Command::FriendRemove => "friend_remove",
            Command::SetBlocked => "set_blocked",
            Command::SetRemark => "set_remark",
            Command::ListContacts => "list_contacts",
            Command::GroupCreate => "group_create",
            Command::GroupInvite => "group_invite",
            Command::GroupRemove => "group_remove",
            Command::GroupLeave => "group_leave",
            Command::GroupUpdate => "group_update",
            Command::GroupSetAdmin => "group_set_admin",
            Command::GroupTransfer => "group_transfer",
            Command::GroupDissolve => "group_dissolve",
            Command::GroupInfo => "group_info",
            Command::Upload => "upload",
            Command::Download => "download",
            Command::Recall => "recall",
            Command::MarkRead => "mark_read",
            Command::Notify => "notify",
        }
    }

    pub fn from_name(name: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.name() == name)
    }

    /// What to shed first when the server is overloaded: new sessions before sends before
    /// syncs (see `missive_rpc::guard`).
    pub fn priority(self) -> missive_rpc::Priority {
        use missive_rpc::Priority;
        match self {
            Command::Sync | Command::Ping | Command::Notify => Priority::Critical,
            Command::Auth | Command::Logout | Command::GetProfile => Priority::High,
            Command::ListContacts | Command::GroupInfo | Command::Download => Priority::High,
            Command::Send
            | Command::UpdateProfile
            | Command::FriendRequest
            | Command::FriendRespond
            | Command::FriendRemove
            | Command::SetBlocked
            | Command::SetRemark
            | Command::GroupCreate
            | Command::GroupInvite
            | Command::GroupRemove
            | Command::GroupLeave
            | Command::GroupUpdate
            | Command::GroupSetAdmin
            | Command::GroupTransfer
            | Command::GroupDissolve
            | Command::Upload
            | Command::Recall
            | Command::MarkRead => Priority::Normal,
            Command::Login | Command::Register => Priority::Low,
        }
    }

    /// Commands a connection may issue before it has authenticated.
    pub fn allowed_anonymous(self) -> bool {
        matches!(self, Command::Auth | Command::Ping | Command::Register | Command::Login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_round_trip() {
        for command in Command::ALL {
            assert_eq!(Command::from_u16(command as u16), Some(command));
            assert_eq!(Command::from_name(command.name()), Some(command));
            assert_eq!(Command::ALL[command.index()], command);
        }
        assert_eq!(Command::from_u16(0), None);
        assert_eq!(Command::from_name("nope"), None);
    }
}

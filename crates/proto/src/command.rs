//! The command numbers carried in the frame header, and their names on the short link: the
//! type is generated from the schema's `missive.v1.Command` (build.rs); what the schema does
//! not say (which commands come before AUTH, what is shed first) is written here.

include!(concat!(env!("OUT_DIR"), "/command.rs"));

impl Command {
    pub fn from_u16(value: u16) -> Option<Command> {
        Command::ALL.into_iter().find(|c| *c as u16 == value)
    }

    pub fn from_name(name: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.name() == name)
    }

    /// What to shed first when the server is overloaded: new sessions before sends before
    /// syncs (see `missive_rpc::guard`).
    pub fn priority(self) -> missive_rpc::Priority {
        use missive_rpc::Priority;
        match self {
            Command::Sync | Command::Ping | Command::Notify | Command::Event => Priority::Critical,
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
            | Command::GroupJoin
            | Command::Upload
            | Command::UploadBegin
            | Command::UploadPart
            | Command::Recall
            | Command::MarkRead
            | Command::SetPrivacy
            | Command::GetPresence
            | Command::Edit
            | Command::React
            | Command::PusherSet
            | Command::PusherRemove
            | Command::PusherList
            | Command::SetMuted => Priority::Normal,
            // A search scans an index: new sessions and sends matter more.
            Command::Search => Priority::Low,
            // A lost typing signal costs nothing: it goes first.
            Command::Login | Command::Register | Command::Typing => Priority::Low,
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

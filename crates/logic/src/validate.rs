//! Checks on client-supplied fields, done once at the edge of the logic layer.

use missive_rpc::Status;

pub const USERNAME_CHARS_MIN: usize = 3;
pub const USERNAME_CHARS_MAX: usize = 32;
pub const PASSWORD_BYTES_MIN: usize = 8;
pub const PASSWORD_BYTES_MAX: usize = 256;
pub const NICKNAME_CHARS_MAX: usize = 64;
pub const DEVICE_NAME_CHARS_MAX: usize = 64;
pub const TEXT_BYTES_MAX: usize = 16 * 1024;
pub const CLIENT_MSG_ID_BYTES_MAX: usize = 64;

/// The name operator notices come from (`docs/protocol.md`, "Operator notices"): no account
/// may take it, so that no user can pass for the operator or receive replies meant for it.
pub const NOTICE_SENDER: &str = "system";

pub fn username(name: &str) -> Result<(), Status> {
    let ok = (USERNAME_CHARS_MIN..=USERNAME_CHARS_MAX).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "username must be {USERNAME_CHARS_MIN} to {USERNAME_CHARS_MAX} characters of \
             a-z, 0-9, '_', '.', '-', starting with a letter"
        )))
    }
}

pub fn password(password: &str) -> Result<(), Status> {
    if (PASSWORD_BYTES_MIN..=PASSWORD_BYTES_MAX).contains(&password.len()) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "password must be {PASSWORD_BYTES_MIN} to {PASSWORD_BYTES_MAX} bytes"
        )))
    }
}

/// A short display name: no control characters, at most `max` characters.
pub fn display_name(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "{field} must be at most {max} characters, without control characters"
        )));
    }
    Ok(())
}

pub fn text(text: &str) -> Result<(), Status> {
    if text.is_empty() || text.len() > TEXT_BYTES_MAX {
        return Err(Status::invalid_argument(format!("text must be 1 to {TEXT_BYTES_MAX} bytes")));
    }
    Ok(())
}

/// The optional caption of an image or file.
pub fn caption(text: &str) -> Result<(), Status> {
    if text.len() > TEXT_BYTES_MAX {
        return Err(Status::invalid_argument(format!(
            "caption must be at most {TEXT_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

pub fn client_msg_id(id: &str) -> Result<(), Status> {
    if id.is_empty() || id.len() > CLIENT_MSG_ID_BYTES_MAX {
        return Err(Status::invalid_argument(format!(
            "client_msg_id must be 1 to {CLIENT_MSG_ID_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn usernames() {
        for good in ["bob", "alice_1", "a.b-c", "abcdefghijklmnopqrstuvwxyz012345"] {
            assert!(super::username(good).is_ok(), "{good}");
        }
        for bad in ["", "ab", "1bob", "Bob", "bo b", "bøb", "abcdefghijklmnopqrstuvwxyz0123456"] {
            assert!(super::username(bad).is_err(), "{bad}");
        }
    }
}

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

/// The bidirectional embeddings, overrides and isolates (U+202A to U+202E, U+2066 to U+2069):
/// in a name they reorder what a reader sees (`invoice\u{202e}gpj.exe` shows as
/// `invoiceexe.jpg`), so names refuse them.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing: white space, and the format and filler characters that
/// render as nothing (zero-width spaces and joiners, the soft hyphen, variation selectors,
/// Hangul and braille blanks, tags). A name made only of these looks empty, or like nobody.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// A short display name (nickname, group name, remark, device or file name): at most `max`
/// characters, no control or bidirectional control characters, and, unless empty, at least
/// one character that shows.
pub fn display_name(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.chars().count() > max {
        return Err(Status::invalid_argument(format!("{field} must be at most {max} characters")));
    }
    name_characters(field, value)
}

/// The characters a name may hold (see [`display_name`]), whatever its length limit.
pub fn name_characters(field: &str, value: &str) -> Result<(), Status> {
    if value.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(Status::invalid_argument(format!(
            "{field} must not hold control or bidirectional control characters"
        )));
    }
    if !value.is_empty() && value.chars().all(is_invisible) {
        return Err(Status::invalid_argument(format!("{field} must hold a visible character")));
    }
    Ok(())
}

/// A longer text shown as is (an announcement, a friend request's greeting): line breaks and
/// tabs are text, every other control character (ESC, NUL, ...) and bidirectional control
/// is refused.
pub fn plain_text(field: &str, value: &str, bytes_max: usize) -> Result<(), Status> {
    let refused = |c: char| (c.is_control() && !matches!(c, '\n' | '\t')) || is_bidi_control(c);
    if value.len() > bytes_max || value.chars().any(refused) {
        return Err(Status::invalid_argument(format!(
            "{field} must be at most {bytes_max} bytes, without control characters but line \
             breaks and tabs, nor bidirectional controls"
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
    fn names_refuse_what_misleads_a_reader() {
        let check = |value: &str| super::display_name("name", value, 64).is_ok();
        for good in ["Ann", "安妮", "ann 🙂", "عربي", "a\u{200D}b", ""] {
            assert!(check(good), "{good:?}");
        }
        for bad in [
            "invoice\u{202E}gpj.exe",
            "a\u{2066}b",
            "\u{200B}\u{200B}",
            "\u{3164}",
            " ",
            "a\u{1B}b",
            "a\nb",
        ] {
            assert!(!check(bad), "{bad:?}");
        }
        let text = |value: &str| super::plain_text("announcement", value, 100).is_ok();
        assert!(text("line one\nline two\twith a tab"));
        assert!(
            !text("bell\u{7}") && !text("nul\0") && !text("esc\u{1B}[2J") && !text("\u{202E}x")
        );
    }

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

//! The closed set of status codes a call can end with; the same codes reach clients.

use std::fmt;

/// Every code a client can see. The numbers are part of the wire protocol (the `status` field
/// of a response frame, and the `code` of an HTTP error body): never renumber, only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Code {
    Ok = 0,
    /// The body did not decode as the command's request message.
    BadRequest = 1,
    /// The command number is not one the server knows.
    UnknownCommand = 2,
    /// No session, or the token is unknown, malformed or revoked.
    Unauthenticated = 3,
    /// Wrong username or password at login.
    InvalidCredentials = 4,
    /// A field has a value the command does not accept (empty, too long, bad characters).
    InvalidArgument = 5,
    /// The named user or object does not exist.
    NotFound = 6,
    /// The username is taken.
    AlreadyExists = 7,
    /// The SyncKey was not issued by this server for this user.
    BadSyncKey = 8,
    /// The frame is larger than the server accepts; the connection is closed after this answer.
    FrameTooLarge = 9,
    /// The frame header is malformed (bad magic or frame version); the connection is closed.
    BadFrame = 10,
    /// The server is overloaded or the client sends too fast; retry later.
    Overloaded = 11,
    /// The call did not finish before its deadline.
    DeadlineExceeded = 12,
    /// The server is shutting down or a dependency is unreachable; retry later.
    Unavailable = 13,
    /// A bug or an unexpected storage failure; logged on the server.
    Internal = 14,
    /// The request is valid but not allowed in this state (e.g. a command before Auth on a
    /// long link).
    FailedPrecondition = 15,
    /// A concurrent write won a race inside the server; the server retries such writes itself,
    /// so a client sees this only when the retries ran out. Retrying is safe.
    Aborted = 16,
    /// The recipient has blocked you: your messages and friend requests do not reach them.
    Blocked = 17,
    /// The recipient accepts 1:1 messages from friends only (the default): send a friend
    /// request first.
    NotFriends = 18,
    /// You are not a member of the group (or it was dissolved).
    NotMember = 19,
    /// Your role does not allow this (e.g. a member removing another, recalling someone
    /// else's message, downloading media of a conversation you are not in).
    PermissionDenied = 20,
    /// A limit would be exceeded: the group's member limit, the media size limit.
    LimitExceeded = 21,
    /// Too late: the message is older than the recall window (2 minutes).
    TooLate = 22,
    /// An operator disabled the account: it cannot log in, and its connections were closed.
    AccountDisabled = 23,
    /// Too many requests of this kind from this account, device or address; retry after the
    /// time the answer names.
    RateLimited = 24,
}

impl Code {
    pub const ALL: [Code; 25] = [
        Code::Ok,
        Code::BadRequest,
        Code::UnknownCommand,
        Code::Unauthenticated,
        Code::InvalidCredentials,
        Code::InvalidArgument,
        Code::NotFound,
        Code::AlreadyExists,
        Code::BadSyncKey,
        Code::FrameTooLarge,
        Code::BadFrame,
        Code::Overloaded,
        Code::DeadlineExceeded,
        Code::Unavailable,
        Code::Internal,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::Blocked,
        Code::NotFriends,
        Code::NotMember,
        Code::PermissionDenied,
        Code::LimitExceeded,
        Code::TooLate,
        Code::AccountDisabled,
        Code::RateLimited,
    ];

    pub fn from_u16(value: u16) -> Option<Code> {
        Code::ALL.get(usize::from(value)).copied()
    }

    /// The code with this [`as_str`](Code::as_str) name.
    pub fn from_name(name: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|code| code.as_str() == name)
    }

    /// The stable lowercase name used in logs, metrics labels and JSON error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::BadRequest => "bad_request",
            Code::UnknownCommand => "unknown_command",
            Code::Unauthenticated => "unauthenticated",
            Code::InvalidCredentials => "invalid_credentials",
            Code::InvalidArgument => "invalid_argument",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::BadSyncKey => "bad_sync_key",
            Code::FrameTooLarge => "frame_too_large",
            Code::BadFrame => "bad_frame",
            Code::Overloaded => "overloaded",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::Unavailable => "unavailable",
            Code::Internal => "internal",
            Code::FailedPrecondition => "failed_precondition",
            Code::Aborted => "aborted",
            Code::Blocked => "blocked",
            Code::NotFriends => "not_friends",
            Code::NotMember => "not_member",
            Code::PermissionDenied => "permission_denied",
            Code::LimitExceeded => "limit_exceeded",
            Code::TooLate => "too_late",
            Code::AccountDisabled => "account_disabled",
            Code::RateLimited => "rate_limited",
        }
    }

    /// The HTTP status the short link answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Code::Ok => 200,
            Code::BadRequest | Code::InvalidArgument | Code::BadSyncKey | Code::BadFrame => 400,
            Code::Unauthenticated | Code::InvalidCredentials => 401,
            Code::NotFound | Code::UnknownCommand => 404,
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => 409,
            Code::Blocked
            | Code::NotFriends
            | Code::NotMember
            | Code::PermissionDenied
            | Code::AccountDisabled => 403,
            Code::TooLate => 409,
            Code::FrameTooLarge | Code::LimitExceeded => 413,
            Code::Overloaded | Code::RateLimited => 429,
            Code::DeadlineExceeded => 504,
            Code::Unavailable => 503,
            Code::Internal => 500,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error half of every service call: a code from the closed set and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Status {
    pub code: Code,
    pub message: String,
    /// When the request may be tried again (RATE_LIMITED).
    pub retry_after: Option<std::time::Duration>,
}

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Status { code, message: message.into(), retry_after: None }
    }

    /// RATE_LIMITED, to be tried again after `retry_after`.
    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        Status { retry_after: Some(retry_after), ..Status::new(Code::RateLimited, message) }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Status::new(Code::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Status::new(Code::NotFound, message)
    }

    pub fn aborted(message: impl Into<String>) -> Self {
        Status::new(Code::Aborted, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Status::new(Code::Internal, message)
    }

    /// This status, or `replacement()` when its code is `code`: how a caller gives a callee's
    /// answer its own meaning (a session the store cannot find is UNAUTHENTICATED to a client).
    pub fn translate(self, code: Code, replacement: impl FnOnce() -> Status) -> Status {
        if self.code == code { replacement() } else { self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_numbers() {
        for code in Code::ALL {
            assert_eq!(Code::from_u16(code as u16), Some(code));
        }
        assert_eq!(Code::from_u16(Code::ALL.len() as u16), None);
    }
}

//! Missive's RPC framework (the Svrkit of the seed): what every service call carries and returns.
//!
//! Services are declared once, as `service` blocks in the protobuf schema of `missive-proto`;
//! [`codegen`] turns each into an async trait whose methods take a [`Ctx`] and return
//! `Result<_, Status>`. A caller holds an `Arc<dyn Service>` and never knows whether the
//! implementation runs in its own process (the all-in-one default: a direct call, no
//! serialization) or behind a remote transport implementing the same trait.
//!
//! This crate owns the call context, the closed set of status codes and the code generator. It
//! knows nothing of sockets, storage or business logic.

mod status;

#[cfg(feature = "codegen")]
pub mod codegen;

pub use status::{Code, Status};

use std::time::{Duration, Instant};

/// Who is calling, once the access layer has authenticated a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: u64,
    pub device_id: u64,
    /// The client protocol version declared at authentication; the logic layer adapts to it.
    pub protocol_version: u32,
}

/// The context that travels with every call across tiers.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// When the caller stops waiting (the access layer answers [`Code::DeadlineExceeded`]
    /// then); it travels with the call so that remote transports can hand it to the callee.
    pub deadline: Option<Instant>,
    /// Follows a request across tiers, for logs.
    pub request_id: u64,
    /// The authenticated caller, if any.
    pub caller: Option<Caller>,
}

impl Ctx {
    pub fn new(request_id: u64) -> Self {
        Ctx { deadline: None, request_id, caller: None }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Some(Instant::now() + timeout);
        self
    }

    /// The authenticated caller, or [`Code::Unauthenticated`].
    pub fn caller(&self) -> Result<Caller, Status> {
        self.caller.ok_or_else(|| Status::new(Code::Unauthenticated, "not authenticated"))
    }
}

//! Missive's RPC framework (the Svrkit of the seed): what every service call carries, how it is
//! guarded, and how it crosses a process boundary.
//!
//! Services are declared once, as `service` blocks in the protobuf schema of `missive-proto`;
//! `codegen` (behind a feature of that name, for build scripts) turns each into an async trait
//! whose methods take a [`Ctx`] and return `Result<_, Status>`, plus four pieces of glue:
//! `<Service>Guarded` (the server side of every call: deadline check, overload control,
//! per-method metrics, see [`guard`]), `<Service>Timed` (an implementation's own per-method latency, see [`timer`]),
//! `<Service>Remote` (the same trait reached over gRPC, see `remote`) and
//! `<service>_routes` (serves an implementation over gRPC); these two, and the `remote`
//! module, only with the `remote` feature, which brings the server stacks (tonic, axum). A caller holds an
//! `Arc<dyn Service>` and never knows whether the implementation runs in its own process (a
//! direct async call, no serialization) or in another one.
//!
//! This crate owns the call context, the closed set of status codes, the guard, the remote
//! transport and the code generator. It knows nothing of storage or business logic.

pub mod guard;
pub mod handles;
pub mod latency;
#[cfg(feature = "prometheus")]
pub mod recorder;
#[cfg(feature = "remote")]
pub mod remote;
mod sparse;
mod status;
pub mod timer;

#[cfg(feature = "codegen")]
pub mod codegen;

pub use guard::{Guard, GuardConfig};
pub use handles::LazyHandles;
pub use latency::Latency;
pub use sparse::Sparse;
pub use status::{Code, Status};
pub use timer::Timer;

use std::time::{Duration, Instant};

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it): the one
/// reading of the wall clock every tier uses for timestamps. The logic tier reads it through
/// its injectable `Clock`.
pub fn unix_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as i64)
}

/// FNV-1a: a hash that is the same in every process and release, for placing things by key
/// (an endpoint among a service's urls, whatever order they were given in; a username or a
/// token on a shard).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// A fresh request id: random, below 2^52 so that JSON log tools (which read numbers as
/// doubles) keep it exact even after an access node has counted up from it for a long time.
pub fn random_request_id() -> u64 {
    rand::random::<u64>() >> 12
}

/// Who is calling, once the access layer has authenticated a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: u64,
    pub device_id: u64,
    /// The client protocol version declared at authentication; the logic layer adapts to it.
    pub protocol_version: u32,
}

/// How much a request matters when a server must shed load (DAGOR's business priority):
/// under overload, [`Priority::Low`] requests are refused first and [`Priority::Critical`]
/// ones last. The access layer sets it per command; every call made on the request's behalf
/// inherits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Priority {
    /// Delivering what is already stored (sync): shedding it only makes backlogs grow.
    Critical = 0,
    /// Keeping an existing session (auth with a token, logout).
    High = 1,
    /// New writes (send, profile changes) and internal work.
    Normal = 2,
    /// New sessions and accounts (login, register): the first to wait under overload.
    Low = 3,
}

impl Priority {
    pub const ALL: [Priority; 4] =
        [Priority::Critical, Priority::High, Priority::Normal, Priority::Low];

    pub fn from_u8(value: u8) -> Option<Priority> {
        Priority::ALL.get(usize::from(value)).copied()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
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
    /// What to shed first under overload.
    pub priority: Priority,
    /// The address the client request came from, as the access node saw it: what rate
    /// limits per address count by.
    pub client_address: Option<std::net::IpAddr>,
    /// For an operators' call: the address the operator called the admin API from, set by
    /// the node that checked the admin credential.
    pub operator: Option<std::net::SocketAddr>,
}

impl Ctx {
    pub fn new(request_id: u64) -> Self {
        let priority = Priority::Normal;
        Ctx {
            deadline: None,
            request_id,
            caller: None,
            priority,
            client_address: None,
            operator: None,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Some(Instant::now() + timeout);
        self
    }

    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// The authenticated caller, or [`Code::Unauthenticated`].
    pub fn caller(&self) -> Result<Caller, Status> {
        self.caller.ok_or_else(|| Status::new(Code::Unauthenticated, "not authenticated"))
    }
}

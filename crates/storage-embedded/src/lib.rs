//! The embedded storage backend: every data-access service over one SQLite file in the data
//! directory, with no server to run.
//!
//! Writes go through one writer thread that commits many callers' operations in one
//! transaction (group commit); each caller is answered only after that commit. In the default
//! [`Durability::Process`] the commit reaches the write-ahead log in the OS page cache, which a
//! crash of the process cannot lose; [`Durability::PowerLoss`] also fsyncs the log at every
//! commit, so one fsync covers a whole batch of concurrent sends. Reads run on a small pool of
//! read-only connections and see only committed data.
//!
//! Media (images and files) are files in the data directory ([`FileMediaStore`]), which
//! deployments on the scale-out backends use as well.
//!
//! This crate implements the storage traits of `missive-proto`; it owns the SQL and the file
//! format, and it knows nothing of sockets, sessions in flight or business rules.

mod account;
mod cache;
mod contact;
mod db;
mod group;
mod media;
mod message;
mod ops;
mod seq;

pub use db::{Durability, EmbeddedStore, StoreConfig, StoreError};
pub use media::{FileMediaStore, MediaError};

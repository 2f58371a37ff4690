//! End-to-end tests: the real `missive` binary, driven by the real SDK and `missive-cli` over
//! real sockets.

mod bad_input;
mod cli;
mod clients;
mod contacts;
mod dashboard;
mod deploy;
mod durability;
mod edits;
mod failover;
mod groups;
mod harness;
mod media;
mod messaging;
mod ops;
mod overload;
mod pending;
mod presence;
mod push;
mod search;
mod sentinel;
mod shards;
mod split;
mod tidy;
mod tls;
mod web;

#![doc = include_str!("../README.md")]
//!
//! ---
//!
//! This crate is the facade: it re-exports [`naxos_core`] whole. Backend crates (PostgreSQL,
//! RabbitMQ, LMDB) and the HTTP API join it behind cargo features as they land.

pub use naxos_core::*;

#![doc = include_str!("../README.md")]
//!
//! ---
//!
//! This crate is the facade: it re-exports [`naxos_core`] whole. Backend crates (PostgreSQL,
//! RabbitMQ, LMDB) and the HTTP API join it behind cargo features as they land.

pub use naxos_core::*;

/// The REST API ([`naxos_http`]), with the `http` feature.
#[cfg(feature = "http")]
pub use naxos_http as http;

/// The PostgreSQL Store ([`naxos_postgres`]), with the `postgres` feature.
#[cfg(feature = "postgres")]
pub use naxos_postgres as postgres;

/// The RabbitMQ Queue ([`naxos_amqp`]), with the `amqp` feature.
#[cfg(feature = "amqp")]
pub use naxos_amqp as amqp;

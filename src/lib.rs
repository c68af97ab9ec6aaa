#![doc = include_str!("../README.md")]
//!
//! ---
//!
//! This crate is the facade: it re-exports [`naxos_core`] whole, and behind cargo features the
//! PostgreSQL Store (`postgres`), the RabbitMQ Queue (`amqp`), the LMDB Store and Cache
//! (`lmdb`), the REST API (`http`) and the backend conformance suite (`testkit`); what each
//! feature pulls in is in the table under "Add it to your service" above. No feature is on by
//! default: without any, naxos depends on no database, broker or HTTP crate.

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

/// The embedded durable Store and the definition Cache on LMDB ([`naxos_lmdb`]), with the
/// `lmdb` feature.
#[cfg(feature = "lmdb")]
pub use naxos_lmdb as lmdb;

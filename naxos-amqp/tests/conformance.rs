//! The core Queue conformance suite on AmqpQueue (a real RabbitMQ: `scripts/test.sh` starts one).

mod common;

use std::sync::Arc;

use naxos_core::backend::Queue;

naxos_core::queue_conformance!(|| async { common::queue().await.map(|q| Arc::new(q) as Arc<dyn Queue>) });

//! Task functions registered by name.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{TaskContext, TaskError};
use crate::sync::{read, write};

/// The future a task function returns, boxed.
pub type TaskFuture = Pin<Box<dyn Future<Output = Result<Value, TaskError>> + Send>>;

/// A registered task function.
pub type TaskFn = Arc<dyn Fn(TaskContext) -> TaskFuture + Send + Sync>;

/// Task functions by name. Cloning shares the same registry.
#[derive(Clone, Default)]
pub struct Registry {
    functions: Arc<RwLock<HashMap<String, TaskFn>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl Registry {
    /// Registers (or replaces) `name`: a closure from a [`TaskContext`] to a future of any
    /// serializable output.
    pub fn register<F, Fut, O>(&self, name: impl Into<String>, f: F)
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, TaskError>> + Send + 'static,
        O: Serialize + 'static,
    {
        let name = name.into();
        let label = name.clone();
        let f: TaskFn = Arc::new(move |ctx| {
            let fut = f(ctx);
            let label = label.clone();
            Box::pin(async move {
                let out = fut.await?;
                // A closure that already returns a `Value` skips the serialization round trip.
                let mut slot = Some(out);
                if let Some(value) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Value>>() {
                    return Ok(value.take().unwrap_or(Value::Null));
                }
                serde_json::to_value(slot)
                    .map_err(|e| TaskError::fatal(format!("function `{label}`: output is not JSON: {e}")))
            })
        });
        write(&self.functions).insert(name, f);
    }

    /// Registers a typed function: the execution's params are deserialized into `I` (a fatal
    /// error naming the mismatch otherwise) and its output serialized from `O`.
    pub fn register_typed<I, O, F, Fut>(&self, name: impl Into<String>, f: F)
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + 'static,
        F: Fn(TaskContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, TaskError>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.register(name, move |ctx: TaskContext| {
            let f = f.clone();
            async move {
                let input: I = ctx.input()?;
                f(ctx, input).await
            }
        });
    }

    /// The function registered as `name`.
    pub fn get(&self, name: &str) -> Option<TaskFn> {
        read(&self.functions).get(name).cloned()
    }

    /// True when `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        read(&self.functions).contains_key(name)
    }

    /// Every registered name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = read(&self.functions).keys().cloned().collect();
        names.sort();
        names
    }
}

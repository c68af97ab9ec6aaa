//! Reading a finished task's output as a Rust type: [`Execution::output_as`].

use serde::de::DeserializeOwned;

use super::Execution;
use crate::{Error, Result};

impl Execution {
    /// The output of task `task_id`, deserialized into `T`.
    ///
    /// Fails with [`Error::NotFound`] (kind `"task"`) when the execution has no such task,
    /// [`Error::Conflict`] when the task has no output (it did not complete: the message says
    /// its status), and [`Error::InvalidInput`] naming the task, where in its output and
    /// serde's message when the output does not fit `T`.
    ///
    /// ```
    /// # use naxos_core as naxos;
    /// use naxos::model::{JobDefinition, TaskBuilder};
    /// use naxos::{serde_json::json, Engine};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> naxos::Result<()> {
    /// let engine = Engine::in_memory();
    /// engine.register("answer", |_ctx| async move { Ok(json!(42)) });
    /// engine.register_definition(JobDefinition::builder("q").task(TaskBuilder::new("a", "answer")).build()).await?;
    /// engine.start()?;
    /// let run = engine.execute("q", json!({})).await?;
    /// let done = engine.wait_for(run.execution_id).await?;
    /// assert_eq!(done.output_as::<u32>("a")?, 42);
    /// assert!(done.output_as::<String>("a").unwrap_err().to_string().contains("the output of task `a`"));
    /// # engine.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn output_as<T: DeserializeOwned>(&self, task_id: &str) -> Result<T> {
        let task = self.task(task_id).ok_or_else(|| Error::not_found("task", task_id))?;
        let output = task.output.as_ref().ok_or_else(|| {
            Error::conflict(format!(
                "task `{task_id}` of execution {} has no output: it is {}",
                self.summary.id, task.status
            ))
        })?;
        serde_path_to_error::deserialize(output).map_err(|e| {
            let path = e.path().to_string();
            Error::InvalidInput(format!(
                "the output of task `{task_id}` does not fit the type asked for, at `{path}`: {}",
                e.into_inner()
            ))
        })
    }
}

//! The schedules' part of the [`Engine`] API: create, read, delete, pause, resume, and run one
//! scheduler pass.

use super::{scheduler, Engine, ScheduleReport};
use crate::model::{Schedule, SchedulePut, StoredSchedule};
use crate::{Error, Result};

impl Engine {
    /// Creates a cron schedule of a registered definition, or confirms an identical one
    /// (`created: false`, its paused state kept), or replaces one with the same id that asks
    /// for something else (`updated: true`; its ticks start from now). Every node's scheduler
    /// fires its ticks, each exactly once (see [`EngineConfig::schedule_grace`] for ticks
    /// missed while no node ran).
    ///
    /// [`Error::InvalidSchedule`] names the bad field: `cron`, `timezone`, `id`, `params`, or
    /// `definitionId` for a definition that is not registered.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> naxos_core::Result<()> {
    /// use naxos_core::model::{CatchUp, JobDefinition, Schedule, TaskBuilder};
    /// use naxos_core::{serde_json::json, Engine};
    /// let engine = Engine::in_memory();
    /// engine.register("report", |_ctx| async move { Ok(json!("done")) });
    /// engine
    ///     .register_definition(JobDefinition::builder("nightly").task(TaskBuilder::new("run", "report")).build())
    ///     .await?;
    /// let put = engine
    ///     .schedule(Schedule::new("nightly-at-2", "nightly", "0 2 * * *").timezone("Europe/Berlin").catch_up(CatchUp::One))
    ///     .await?;
    /// assert!(put.created);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`EngineConfig::schedule_grace`]: super::EngineConfig::schedule_grace
    pub async fn schedule(&self, schedule: Schedule) -> Result<SchedulePut> {
        schedule.cadence()?;
        match self.inner.store.get_definition(&schedule.definition_id, None).await {
            Ok(_) => {}
            Err(Error::NotFound { .. }) => {
                return Err(Error::InvalidSchedule {
                    message: format!(
                        "names job definition `{}`, which is not registered",
                        schedule.definition_id
                    ),
                    id: schedule.id,
                    field: "definitionId",
                })
            }
            Err(e) => return Err(e),
        }
        self.inner.store.put_schedule(schedule).await
    }

    /// Every schedule, by id.
    pub async fn schedules(&self) -> Result<Vec<StoredSchedule>> {
        self.inner.store.list_schedules().await
    }

    /// One schedule; `NotFound` when unknown.
    pub async fn get_schedule(&self, id: &str) -> Result<StoredSchedule> {
        self.inner.store.get_schedule(id).await
    }

    /// Deletes a schedule: no tick of it fires any more; the executions it started stay.
    /// `NotFound` when unknown.
    pub async fn delete_schedule(&self, id: &str) -> Result<()> {
        self.inner.store.delete_schedule(id).await
    }

    /// Pauses a schedule: no tick fires until it is resumed, and the ticks that pass meanwhile
    /// are never caught up.
    pub async fn pause_schedule(&self, id: &str) -> Result<StoredSchedule> {
        self.inner.store.set_schedule_paused(id, true).await
    }

    /// Resumes a paused schedule: its next tick after now fires.
    pub async fn resume_schedule(&self, id: &str) -> Result<StoredSchedule> {
        self.inner.store.set_schedule_paused(id, false).await
    }

    /// Runs one scheduler pass now (a started engine runs one every
    /// [`EngineConfig::schedule_interval`](super::EngineConfig::schedule_interval)).
    pub async fn schedule_once(&self) -> Result<ScheduleReport> {
        scheduler::schedule_once(&self.inner).await
    }
}

//! What the harness found: per scenario, how the execution ended, how often each function ran,
//! and every broken guarantee.

use std::collections::BTreeMap;
use std::fmt;

use super::fault::Fault;
use super::node::Call;
use crate::model::{AttemptOutcome, Execution, ExecutionStatus, TaskStatus};

/// One run of the DAG under its faults.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The faults injected (none for the baseline; one each, unless drawn at random).
    pub faults: Vec<Fault>,
    /// How the execution ended; `None` if it did not end within the harness's deadline.
    pub status: Option<ExecutionStatus>,
    /// How many times each task's function was called (started), by task id.
    pub runs: BTreeMap<String, u32>,
    /// The guarantees this run broke, in words; empty when it kept them all.
    pub violations: Vec<String>,
}

/// Every scenario the harness ran, the fault-free baseline first.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenarios, in the order they ran.
    pub scenarios: Vec<Scenario>,
}

impl Report {
    /// Every broken guarantee, with the scenario in which it broke.
    pub fn violations(&self) -> impl Iterator<Item = (&Scenario, &str)> {
        self.scenarios
            .iter()
            .flat_map(|s| s.violations.iter().map(move |v| (s, v.as_str())))
    }

    /// Panics, listing every broken guarantee and the report, unless there is none.
    #[track_caller]
    pub fn assert_guarantees(&self) {
        let broken: Vec<String> = self.violations().map(|(s, v)| format!("  under {s}: {v}")).collect();
        assert!(
            broken.is_empty(),
            "naxos::testing found {} broken guarantee(s):\n{}\n\n{self}",
            broken.len(),
            broken.join("\n")
        );
    }

    /// The most times `task`'s function ran in one scenario: 1 means no fault made it run
    /// twice; a side effect in a task whose figure is 2 or more must be idempotent.
    pub fn most_runs(&self, task: &str) -> u32 {
        self.scenarios
            .iter()
            .filter_map(|s| s.runs.get(task).copied())
            .max()
            .unwrap_or(0)
    }

    /// The scenario of `fault` alone, if it ran.
    pub fn scenario(&self, fault: &Fault) -> Option<&Scenario> {
        self.scenarios
            .iter()
            .find(|s| s.faults.len() == 1 && s.faults[0] == *fault)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tasks: Vec<&String> = self
            .scenarios
            .first()
            .map(|s| s.runs.keys().collect())
            .unwrap_or_default();
        let width = self.scenarios.iter().map(|s| s.to_string().len()).max().unwrap_or(0);
        write!(f, "{:width$}  {:10}", "fault", "ended")?;
        for t in &tasks {
            write!(f, "  {t}")?;
        }
        writeln!(f, "   (runs of each task's function)")?;
        for s in &self.scenarios {
            let ended = s.status.map_or("never".to_string(), |st| st.to_string());
            write!(f, "{:width$}  {ended:10}", s.to_string())?;
            for t in &tasks {
                write!(f, "  {:>w$}", s.runs.get(*t).copied().unwrap_or(0), w = t.len())?;
            }
            writeln!(f, "{}", if s.violations.is_empty() { "" } else { "   BROKEN" })?;
        }
        Ok(())
    }
}

impl fmt::Display for Scenario {
    /// Its faults, joined by ` + `; "no fault" for the baseline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.faults.is_empty() {
            return write!(f, "no fault");
        }
        for (i, fault) in self.faults.iter().enumerate() {
            write!(f, "{}{fault}", if i > 0 { " + " } else { "" })?;
        }
        Ok(())
    }
}

/// The guarantees one run must keep, judged from its end state, the baseline's, and the
/// function calls: it ended as it ends without faults, each task's outcome was recorded once,
/// and no function started before each of its dependencies' functions had returned an output.
pub(crate) fn check(
    ended: Option<&Execution>,
    baseline: Option<&Execution>,
    calls: &[Call],
    dependencies: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut broken = Vec::new();
    let Some(ended) = ended else {
        broken.push("the execution did not end".to_string());
        return broken;
    };
    if let Some(baseline) = baseline {
        if ended.status != baseline.status {
            broken.push(format!(
                "the execution ended {}, without faults it ends {}",
                ended.status, baseline.status
            ));
        }
        for t in &baseline.tasks {
            let now = ended.task(&t.task_id).map(|r| r.status);
            if now != Some(t.status) {
                broken.push(format!(
                    "task `{}` ended {}, without faults it ends {}",
                    t.task_id,
                    now.map_or("missing".into(), |s| s.to_string()),
                    t.status
                ));
            }
        }
    }
    for t in &ended.tasks {
        let completed = t
            .history
            .iter()
            .filter(|a| a.outcome == Some(AttemptOutcome::Completed))
            .count();
        let expected = usize::from(t.status == TaskStatus::Completed);
        if completed != expected {
            broken.push(format!(
                "task `{}` is {} with {completed} completed attempt(s) recorded",
                t.task_id, t.status
            ));
        }
    }
    for call in calls {
        for dep in dependencies.get(&call.task).into_iter().flatten() {
            let ready = calls
                .iter()
                .any(|c| &c.task == dep && matches!(c.returned, Some((at, true)) if at < call.started));
            if !ready {
                broken.push(format!(
                    "task `{}` started before its dependency `{dep}` had returned an output",
                    call.task
                ));
            }
        }
    }
    broken
}

//! An execution's dependency edges as task indices.

/// Dependencies and dependents of each task, by index in the execution's task list (tasks are
/// kept in sorted id order, so an index is also the task's position).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    dependencies: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
}

impl Graph {
    /// The graph of `tasks` (sorted by id), each given as its id and its dependencies' ids.
    /// Fails naming the first dependency that is not one of the tasks.
    pub fn new<'a, I, D>(tasks: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = (&'a str, D)>,
        D: IntoIterator<Item = &'a str>,
    {
        let tasks: Vec<(&str, D)> = tasks.into_iter().collect();
        let ids: Vec<&str> = tasks.iter().map(|(id, _)| *id).collect();
        let mut dependencies = Vec::with_capacity(ids.len());
        let mut dependents = vec![Vec::new(); ids.len()];
        for (i, (id, deps)) in tasks.into_iter().enumerate() {
            let mut mine = Vec::new();
            for dep in deps {
                let d = ids
                    .binary_search(&dep)
                    .map_err(|_| format!("task `{id}` depends on `{dep}`, which is not in the execution"))?;
                if !mine.contains(&d) {
                    mine.push(d);
                    dependents[d].push(i);
                }
            }
            dependencies.push(mine);
        }
        Ok(Self {
            dependencies,
            dependents,
        })
    }

    /// Adds `n` tasks without dependencies or dependents after the others (fan-out instances).
    pub fn grow(&mut self, n: usize) {
        self.dependencies.resize(self.dependencies.len() + n, Vec::new());
        self.dependents.resize(self.dependents.len() + n, Vec::new());
    }

    /// Indices of the tasks `task` waits for.
    pub fn dependencies(&self, task: usize) -> &[usize] {
        &self.dependencies[task]
    }

    /// Indices of the tasks that wait for `task`, ascending.
    pub fn dependents(&self, task: usize) -> &[usize] {
        &self.dependents[task]
    }
}

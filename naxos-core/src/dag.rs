//! The compiled graph of a job definition: task indices, dependencies, dependents, cycles.

use std::collections::HashMap;

use crate::model::JobDefinition;

/// A job definition's tasks as indices with dependency and dependent lists.
///
/// Tasks are indexed in sorted id order. Edges to unknown ids are left out (validation reports
/// them), so a `Dag` can be built from any definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dag {
    ids: Vec<String>,
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
}

impl Dag {
    /// Compiles `def`'s graph.
    pub fn build(def: &JobDefinition) -> Self {
        let ids: Vec<String> = def.tasks.keys().cloned().collect();
        let index: HashMap<String, usize> = ids.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
        let mut deps = vec![Vec::new(); ids.len()];
        let mut dependents = vec![Vec::new(); ids.len()];
        for (i, id) in ids.iter().enumerate() {
            let mut seen = std::collections::HashSet::new();
            for dep in def.dependencies(id) {
                if let Some(&d) = index.get(dep) {
                    if seen.insert(d) {
                        deps[i].push(d);
                        dependents[d].push(i);
                    }
                }
            }
        }
        Self { ids, deps, dependents }
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The task ids, sorted; a task's index is its position here.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Indices of the tasks `task` depends on.
    pub fn dependencies(&self, task: usize) -> &[usize] {
        &self.deps[task]
    }

    /// Indices of the tasks that depend on `task`.
    pub fn dependents(&self, task: usize) -> &[usize] {
        &self.dependents[task]
    }

    /// Every cycle (strongly connected component with an edge inside), as sorted task ids,
    /// ordered by their first id.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        let mut tarjan = Tarjan {
            dag: self,
            next: 0,
            index: vec![usize::MAX; self.len()],
            low: vec![0; self.len()],
            on_stack: vec![false; self.len()],
            stack: Vec::new(),
            cycles: Vec::new(),
        };
        for v in 0..self.len() {
            if tarjan.index[v] == usize::MAX {
                tarjan.visit(v);
            }
        }
        let mut cycles: Vec<Vec<String>> = tarjan
            .cycles
            .into_iter()
            .map(|c| {
                let mut ids: Vec<String> = c.into_iter().map(|i| self.ids[i].clone()).collect();
                ids.sort();
                ids
            })
            .collect();
        cycles.sort();
        cycles
    }
}

/// Tarjan's strongly connected components, over dependency edges.
struct Tarjan<'a> {
    dag: &'a Dag,
    next: usize,
    index: Vec<usize>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    cycles: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn visit(&mut self, v: usize) {
        self.index[v] = self.next;
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in self.dag.dependencies(v) {
            if self.index[w] == usize::MAX {
                self.visit(w);
                self.low[v] = self.low[v].min(self.low[w]);
            } else if self.on_stack[w] {
                self.low[v] = self.low[v].min(self.index[w]);
            }
        }
        if self.low[v] == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 || self.dag.dependencies(v).contains(&v) {
                self.cycles.push(component);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobDefinition, TaskBuilder};

    #[test]
    fn diamond_has_one_root_and_fan_in() {
        let def = JobDefinition::builder("d")
            .task(TaskBuilder::new("a", "f"))
            .task(TaskBuilder::new("b", "f").after(["a"]))
            .task(TaskBuilder::new("c", "f").after(["a"]))
            .task(TaskBuilder::new("d", "f").after(["b", "c"]))
            .build();
        let dag = Dag::build(&def);
        assert!(dag.dependencies(0).is_empty());
        assert_eq!(dag.dependents(0), &[1, 2]);
        assert_eq!(dag.dependencies(3), &[1, 2]);
        assert!(dag.cycles().is_empty());
    }
}

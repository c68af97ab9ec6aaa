//! The writer thread: group commit.
//!
//! LMDB has one writer at a time, and a durable commit costs an fsync (≈ 0.2 ms here), so one
//! commit per transition would cap the store near 5,000 transitions a second. Instead every
//! write is a request sent to one thread, which takes all the requests waiting, runs them one
//! after another in **one** write transaction, commits once, and only then answers each. The
//! requests that arrive while a commit is in flight wait in the channel and form the next
//! group. Under load the groups grow by themselves; alone, a request is committed at once.
//!
//! **Each request keeps its own result.** A transition is validated before it writes: naxos-core's
//! state functions work on an in-memory [`ExecutionState`] and leave it unchanged when they
//! refuse (a stale attempt, a finished execution), so a refused request writes nothing and the
//! others in its group commit as usual. Only an LMDB failure while writing (a full map, an I/O
//! error) spoils the transaction: the group is then aborted and its requests run again, each in
//! a transaction of its own, so that only the one that cannot be written fails. A failed
//! commit fails every request of the group (none of their effects is visible).
//!
//! **A cache of states.** The thread keeps the [`ExecutionState`]s of unfinished executions it
//! wrote last, so a transition of a running execution decodes nothing. It is the only writer
//! (the directory is locked to this process, and to one environment in it), so the cache can
//! only go stale through a transaction that did not commit: the states a group changed are
//! kept aside until its commit succeeds, and dropped otherwise.
//!
//! **Claims are answered before their commit.** A claim only moves a task from QUEUED to
//! RUNNING under a lease; the caller runs the function meanwhile, and the commit lands while it
//! runs instead of before it starts (one durable commit less in every hop of a DAG). That is
//! safe because this thread is the only writer: every later request — the task's heartbeat, its
//! finish — runs in a later group, so after this group's commit, or, when that commit failed or
//! the process died before it, against a state that never held the claim. The task is then
//! still QUEUED at the same attempt: its finish is refused as stale, and the stale-publish
//! recovery sends it again — the task runs again, as it does after a crash during its function.
//! Nothing a claim leads to is durable before the claim is, and a finish, which records an
//! outcome, is still answered only after its commit.
//!
//! **A group of claims alone lingers** ([`LINGER`]) for what comes next before it commits: a
//! short function's finish then runs in its claim's transaction, and one commit covers both
//! (otherwise the finish waits for the claim's commit, then for its own: two fsyncs a hop). The
//! first request that is not a claim ends the wait.
//!
//! Reads never come here: they use LMDB read transactions on tokio's blocking pool, and see
//! the last commit without waiting for the writer — except that a read waits for the commit of
//! a group that answered a claim early, so that whoever saw a claim's answer also reads it
//! ([`Shared::settled`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use heed::{RoTxn, RwTxn};
use naxos_core::model::{ExecutionId, ExecutionStatus};
use naxos_core::state::ExecutionState;
use naxos_core::{Clock, Error, Result};
use tokio::sync::{oneshot, watch};

use crate::env::{Db, Environment};
use crate::error::LmdbError;
use crate::tables::{Reader, Tables};

/// The most requests one write transaction takes (a bound on its size and latency).
const MAX_GROUP: usize = 1_024;

/// How long a group of claims alone stays open for more requests before it commits. A claim is
/// answered before its commit, so the task's function runs meanwhile, and for a short function
/// its finish comes within this time: it then runs in the claim's transaction and one durable
/// commit covers both, instead of the finish waiting for the claim's commit and then for its
/// own. Any other request ends the wait at once, so the writer never sits idle while work
/// waits; what it costs is a claim durable up to this much later, and a read that follows a
/// claim's answer waiting up to this much longer for it.
const LINGER: Duration = Duration::from_millis(1);

/// What the writer and the readers share: the environment, its databases and the clock.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) env: Environment,
    pub(crate) tables: Tables,
    pub(crate) clock: Clock,
    /// Write requests answered and transactions committed, since open.
    pub(crate) stats: Counters,
    /// Committed executions by status, in [`ExecutionStatus::ALL`] order: counted once at
    /// open, then moved by each commit (the store keeps no per-status database to count).
    pub(crate) by_status: [AtomicU64; 5],
    /// Reads see every answered write: see [`Shared::settled`].
    pub(crate) groups: Groups,
}

/// Group numbers, so that a read waits for the commit of a write answered before it.
#[derive(Debug)]
pub(crate) struct Groups {
    /// The last group that answered a request before its commit.
    early: AtomicU64,
    /// The last group whose commit succeeded or failed.
    settled: watch::Sender<u64>,
}

impl Default for Groups {
    fn default() -> Self {
        Self {
            early: AtomicU64::new(0),
            settled: watch::Sender::new(0),
        }
    }
}

/// What the writer has done since the store opened.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) commits: AtomicU64,
}

impl Shared {
    /// Returns once every write answered so far is committed (or failed): a claim is answered
    /// before its commit, and whoever saw that answer must read what it did. Immediate unless
    /// a group that answered early is still committing (then at most that commit's time).
    pub(crate) async fn settled(&self) {
        let early = self.groups.early.load(Ordering::Acquire);
        if *self.groups.settled.borrow() >= early {
            return;
        }
        let mut settled = self.groups.settled.subscribe();
        // The sender lives as long as `self`: an error cannot happen while we borrow it.
        let _ = settled.wait_for(|g| *g >= early).await;
    }

    /// Reads through any transaction.
    pub(crate) fn reader(&self) -> Reader<'_> {
        Reader {
            env: &self.env,
            t: &self.tables,
        }
    }
}

/// One write request, run in a group's transaction and answered after its commit.
trait Job: Send {
    /// Runs the request in `tx`; false when it failed in a way that spoils the transaction.
    fn run(&mut self, tx: &mut Tx<'_, '_>) -> bool;
    /// Its effects will not be committed: `e` becomes its result, unless it failed on its own.
    fn fail(&mut self, e: LmdbError);
    /// Answers the caller.
    fn reply(self: Box<Self>);
    /// True for a request answered before its commit (a claim).
    fn early(&self) -> bool;
}

struct Request<T, F> {
    f: F,
    result: Option<Result<T>>,
    /// `None` once answered.
    reply: Option<oneshot::Sender<Result<T>>>,
    /// Answer as soon as the request ran without spoiling the transaction, before the commit
    /// (see the module's docs: claims only).
    early: bool,
}

impl<T, F> Job for Request<T, F>
where
    T: Send,
    F: FnMut(&mut Tx<'_, '_>) -> Result<T> + Send,
{
    fn run(&mut self, tx: &mut Tx<'_, '_>) -> bool {
        let writes = tx.writes;
        tx.failure = None;
        // A panic (a bug) fails this request alone, not the writer thread and every later one.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.f)(tx)));
        let panicked = result.is_err();
        let result = result.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "an LMDB write request panicked");
            Err(Error::permanent(format!("the write panicked: {what}")))
        });
        // A request that failed after writing may have written half of its effects.
        let spoiled = panicked || tx.failure.is_some() || (result.is_err() && tx.writes != writes);
        self.result = Some(result);
        if let Some(e) = tx.failure.take() {
            self.fail(e);
        }
        if self.early && !spoiled {
            // Before the answer: whoever reads after it waits for this group's commit.
            tx.shared.groups.early.store(tx.group, Ordering::Release);
            self.answer();
        }
        !spoiled
    }

    fn fail(&mut self, e: LmdbError) {
        if !matches!(self.result, Some(Err(_))) {
            self.result = Some(Err(e.into()));
        }
    }

    fn reply(mut self: Box<Self>) {
        self.answer();
    }

    fn early(&self) -> bool {
        self.early
    }
}

impl<T, F> Request<T, F>
where
    T: Send + 'static,
    F: FnMut(&mut Tx<'_, '_>) -> Result<T> + Send + 'static,
{
    /// A request for the writer running `f` (answered early or after its commit), and where
    /// its answer arrives.
    fn job(f: F, early: bool) -> (Box<dyn Job>, oneshot::Receiver<Result<T>>) {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Self {
            f,
            result: None,
            reply: Some(reply),
            early,
        });
        (job, answer)
    }
}

impl<T, F> Request<T, F> {
    /// Sends the result, once: a request answered early and run again (its group aborted)
    /// answers nothing more.
    fn answer(&mut self) {
        if let Some(reply) = self.reply.take() {
            let result = self
                .result
                .take()
                .unwrap_or_else(|| Err(LmdbError::WriterStopped.into()));
            // The caller may have stopped waiting: nothing to tell then.
            let _ = reply.send(result);
        }
    }
}

/// The write side of a group: the transaction, and the states it changed.
pub(crate) struct Tx<'t, 'e> {
    txn: &'t mut RwTxn<'e>,
    shared: &'t Shared,
    /// States changed by this group (`None`: deleted), visible to its later requests.
    overlay: &'t mut HashMap<ExecutionId, Option<ExecutionState>>,
    cache: &'t mut States,
    /// How this group moved the executions' status counts.
    moved: &'t mut [i64; 5],
    writes: usize,
    /// The LMDB error a write of the current request met: the transaction must be aborted.
    failure: Option<LmdbError>,
    /// This group's number.
    group: u64,
}

impl<'t, 'e> Tx<'t, 'e> {
    /// The store's databases.
    pub(crate) fn tables(&self) -> &Tables {
        &self.shared.tables
    }

    /// Reads (seeing this group's writes).
    pub(crate) fn reader(&self) -> Reader<'t> {
        self.shared.reader()
    }

    /// The transaction, for reads.
    pub(crate) fn txn(&self) -> &RoTxn<'e> {
        self.txn
    }

    /// Now, by the store's clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    /// Writes one value.
    pub(crate) fn put(&mut self, db: Db, key: &[u8], value: &[u8]) -> Result<()> {
        self.writes += 1;
        db.put(self.txn, key, value).map_err(|e| self.spoil(e))
    }

    /// Deletes one key; false when it was absent.
    pub(crate) fn delete(&mut self, db: Db, key: &[u8]) -> Result<bool> {
        self.writes += 1;
        db.delete(self.txn, key).map_err(|e| self.spoil(e))
    }

    fn spoil(&mut self, e: heed::Error) -> Error {
        let e = self.shared.env.lmdb_error(e);
        self.failure = Some(e.clone());
        e.into()
    }

    /// Takes execution `id`'s state: from this group, the cache, or the database. Give it back
    /// with [`keep`](Self::keep) (changed or not) unless it was deleted.
    pub(crate) fn load(&mut self, id: ExecutionId) -> Result<Option<ExecutionState>> {
        if let Some(state) = self.overlay.remove(&id) {
            return Ok(state);
        }
        if let Some(state) = self.cache.map.remove(&id) {
            return Ok(Some(state));
        }
        let reader = self.reader();
        reader.state(self.txn, id)
    }

    /// Keeps a state as this group left it.
    pub(crate) fn keep(&mut self, state: ExecutionState) {
        self.overlay.insert(state.summary().id, Some(state));
    }

    /// Counts one execution more (`by` 1) or fewer (-1) in `status`, once the group commits.
    pub(crate) fn count(&mut self, status: ExecutionStatus, by: i64) {
        self.moved[crate::keys::status_byte(status) as usize] += by;
    }

    /// Records that execution `id` was deleted.
    pub(crate) fn forget(&mut self, id: ExecutionId) {
        self.overlay.insert(id, None);
    }
}

/// The states of unfinished executions the writer wrote last, at most `capacity`.
#[derive(Debug)]
struct States {
    map: HashMap<ExecutionId, ExecutionState>,
    capacity: usize,
}

impl States {
    /// Takes in what a committed group left.
    fn absorb(&mut self, overlay: HashMap<ExecutionId, Option<ExecutionState>>) {
        for (id, state) in overlay {
            match state {
                Some(s) if !s.is_finished() && self.capacity > 0 => {
                    if self.map.len() >= self.capacity && !self.map.contains_key(&id) {
                        // Any one: a miss costs one decode, nothing more.
                        if let Some(&victim) = self.map.keys().next() {
                            self.map.remove(&victim);
                        }
                    }
                    self.map.insert(id, s);
                }
                _ => {
                    self.map.remove(&id);
                }
            }
        }
    }
}

/// The handle on the writer thread: send requests; dropped, it stops the thread and waits.
#[derive(Debug)]
pub(crate) struct Writer {
    sender: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread, with a cache of at most `cached_states` execution states.
    pub(crate) fn start(shared: Arc<Shared>, cached_states: usize) -> Result<Self> {
        let (sender, receiver) = mpsc::channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name("naxos-lmdb-writer".into())
            .spawn(move || {
                let mut states = States {
                    map: HashMap::new(),
                    capacity: cached_states,
                };
                while let Ok(first) = receiver.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match receiver.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    commit_group(&shared, &mut states, group, Some(&receiver));
                }
            })
            .map_err(|e| Error::permanent(format!("could not start the LMDB writer thread: {e}")))?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Runs `f` in the next group's write transaction and returns its result once committed.
    /// `f` may run more than once (when its group is aborted by another request's failure).
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_, '_>) -> Result<T> + Send + 'static,
    {
        self.send(f, false).await
    }

    /// Runs `f` in the next group's write transaction and returns its result as soon as it
    /// ran, before the commit: for claims only (see the module's docs for why that is safe).
    pub(crate) async fn write_early<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_, '_>) -> Result<T> + Send + 'static,
    {
        self.send(f, true).await
    }

    async fn send<T, F>(&self, f: F, early: bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_, '_>) -> Result<T> + Send + 'static,
    {
        let (job, answer) = Request::job(f, early);
        self.sender
            .as_ref()
            .ok_or(LmdbError::WriterStopped)?
            .send(job)
            .map_err(|_| LmdbError::WriterStopped)?;
        answer.await.map_err(|_| LmdbError::WriterStopped)?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has answered what it holds.
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the LMDB writer thread panicked");
            }
        }
    }
}

/// Runs a group in one transaction and answers it; when a request spoiled the transaction,
/// runs each request again alone, so that only the one that cannot be written fails. A group
/// of claims alone takes in what `more` brings within [`LINGER`] first.
fn commit_group(
    shared: &Shared,
    states: &mut States,
    mut group: Vec<Box<dyn Job>>,
    more: Option<&mpsc::Receiver<Box<dyn Job>>>,
) {
    let number = *shared.groups.settled.borrow() + 1;
    let spoiled = run_group(shared, states, &mut group, number, more).is_err();
    shared.stats.requests.fetch_add(group.len() as u64, Ordering::Relaxed);
    if spoiled && group.len() > 1 {
        for job in group {
            let mut alone = vec![job];
            // Spoiled alone: its own error is its result, and nothing of it was committed.
            let _ = run_group(shared, states, &mut alone, number, None);
            if let Some(job) = alone.pop() {
                job.reply();
            }
        }
    } else {
        group.into_iter().for_each(|job| job.reply());
    }
    shared.groups.settled.send_replace(number);
}

/// A transaction that must be aborted: the failing request's own result says why.
struct Spoiled;

/// Runs `jobs` in one write transaction and commits it; while they are all claims, first takes
/// in (appending to `jobs`) and runs what `more` brings within [`LINGER`]. A failure to begin or
/// commit is put into every job's result; `Spoiled` when a job spoiled the transaction.
fn run_group(
    shared: &Shared,
    states: &mut States,
    jobs: &mut Vec<Box<dyn Job>>,
    group: u64,
    more: Option<&mpsc::Receiver<Box<dyn Job>>>,
) -> std::result::Result<(), Spoiled> {
    let failed = |jobs: &mut [Box<dyn Job>], e: LmdbError| {
        for job in jobs.iter_mut() {
            job.fail(e.clone());
        }
    };
    let mut txn = match shared.env.env().write_txn() {
        Ok(txn) => txn,
        Err(e) => {
            failed(jobs, shared.env.lmdb_error(e));
            return Ok(());
        }
    };
    let mut overlay = HashMap::new();
    let mut moved = [0; 5];
    {
        let mut tx = Tx {
            txn: &mut txn,
            shared,
            overlay: &mut overlay,
            cache: states,
            moved: &mut moved,
            writes: 0,
            failure: None,
            group,
        };
        for job in jobs.iter_mut() {
            if !job.run(&mut tx) {
                return Err(Spoiled);
            }
        }
        let mut claims_only = jobs.iter().all(|job| job.early());
        if let Some(receiver) = more {
            let until = Instant::now() + LINGER;
            while claims_only && jobs.len() < MAX_GROUP {
                let Ok(mut job) = receiver.recv_timeout(until.saturating_duration_since(Instant::now())) else {
                    break;
                };
                claims_only = job.early();
                let ran = job.run(&mut tx);
                jobs.push(job);
                if !ran {
                    return Err(Spoiled);
                }
            }
        }
    }
    match txn.commit() {
        Ok(()) => {
            shared.stats.commits.fetch_add(1, Ordering::Relaxed);
            for (count, by) in shared.by_status.iter().zip(moved) {
                count.fetch_add(by as u64, Ordering::Relaxed);
            }
            states.absorb(overlay);
            Ok(())
        }
        Err(e) => {
            failed(jobs, shared.env.lmdb_error(e));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::Mutex;

    use super::*;
    use crate::env::{Kind, Options};

    fn shared() -> Shared {
        let path = crate::temporary_path("writer");
        let (env, dbs) = Environment::open(
            Options {
                path: &path,
                map_size: 1 << 20,
                kind: Kind::Store,
                temporary: true,
            },
            crate::tables::NAMES,
        )
        .unwrap();
        Shared {
            env,
            tables: Tables::new(dbs),
            clock: Clock::System,
            stats: Counters::default(),
            by_status: Default::default(),
            groups: Groups::default(),
        }
    }

    fn job<T, F>(f: F, early: bool) -> (Box<dyn Job>, oneshot::Receiver<Result<T>>)
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_, '_>) -> Result<T> + Send + 'static,
    {
        Request::job(f, early)
    }

    /// A group of claims alone takes in a finish that comes while it lingers: one commit for
    /// both. A group with a finish does not linger: a claim sent after it waits for the next.
    #[test]
    fn claims_linger_for_a_finish_and_a_finish_does_not_wait() {
        let shared = shared();
        let mut states = States {
            map: HashMap::new(),
            capacity: 0,
        };
        let put = |key: &'static [u8], early: bool| {
            job(
                move |tx| {
                    let db = tx.tables().nodes;
                    tx.put(db, key, b"1")
                },
                early,
            )
        };
        let (more, receiver) = mpsc::channel();
        let (claim, mut claimed) = put(b"claim", true);
        let (finish, mut finished) = put(b"finish", false);
        more.send(finish).unwrap();
        commit_group(&shared, &mut states, vec![claim], Some(&receiver));
        assert_eq!(shared.stats.commits.load(Ordering::Relaxed), 1, "one commit for both");
        assert_eq!(shared.stats.requests.load(Ordering::Relaxed), 2);
        claimed.try_recv().expect("answered").expect("claimed");
        finished.try_recv().expect("answered").expect("finished");

        let (finish, mut finished) = put(b"finish-2", false);
        let (claim, mut claimed) = put(b"claim-2", true);
        more.send(claim).unwrap();
        commit_group(&shared, &mut states, vec![finish], Some(&receiver));
        finished.try_recv().expect("answered").expect("finished");
        assert!(claimed.try_recv().is_err(), "the claim waits for the next group");
        assert_eq!(shared.stats.requests.load(Ordering::Relaxed), 3);

        // A claim alone waits for nothing but the time: it commits by itself.
        let started = Instant::now();
        let waiting = receiver.try_recv().expect("the claim is still queued");
        commit_group(&shared, &mut states, vec![waiting], Some(&receiver));
        claimed.try_recv().expect("answered").expect("claimed");
        assert!(started.elapsed() >= LINGER, "it lingered");
        assert_eq!(shared.stats.commits.load(Ordering::Relaxed), 3);
    }

    /// An early request (a claim) is answered before its group commits; when a later request
    /// of the group spoils the transaction, the early one runs again alone and is committed,
    /// answering nothing more, while the spoiler alone fails and leaves nothing behind.
    #[test]
    fn an_early_request_is_answered_before_the_commit_and_once() {
        let shared = shared();
        let mut states = States {
            map: HashMap::new(),
            capacity: 0,
        };
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let (claim, claimed) = job(
            move |tx| {
                let db = tx.tables().nodes;
                tx.put(db, b"claim", b"1")?;
                Ok(counted.fetch_add(1, Ordering::SeqCst) + 1)
            },
            true,
        );
        // The spoiler runs in the claim's group, before its commit, and looks at its answer.
        let claimed = Arc::new(Mutex::new(Some(claimed)));
        let (seen, saw) = std::sync::mpsc::channel();
        let (spoiler, mut spoiled) = job(
            move |tx| -> Result<()> {
                if let Some(mut answer) = claimed.lock().unwrap().take() {
                    seen.send(answer.try_recv()).unwrap();
                }
                let db = tx.tables().nodes;
                tx.put(db, b"spoiler", b"1")?;
                Err(Error::permanent("fails after writing"))
            },
            false,
        );
        commit_group(&shared, &mut states, vec![claim, spoiler], None);

        let early = saw.try_recv().expect("the spoiler ran in the claim's group");
        let early = early.expect("answered before the commit").expect("claimed");
        assert_eq!(early, 1, "the first run's result");
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "run again alone after the group was aborted"
        );
        let err = spoiled
            .try_recv()
            .expect("answered")
            .expect_err("the spoiler fails alone");
        assert!(err.to_string().contains("fails after writing"), "{err}");
        let txn = shared.env.env().read_txn().unwrap();
        assert!(
            shared.tables.nodes.get(&txn, b"claim").unwrap().is_some(),
            "the claim committed"
        );
        assert!(
            shared.tables.nodes.get(&txn, b"spoiler").unwrap().is_none(),
            "the spoiler did not"
        );
    }
}

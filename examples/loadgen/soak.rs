//! The soak mode: drives one running server over HTTP at a fixed rate for a set time and watches
//! its memory, to catch what grows per execution (`scripts/soak.sh` starts the server and runs
//! this).
//!
//! ```text
//! loadgen soak --url http://127.0.0.1:PORT --server-pid PID [--rate R | --fraction F]
//!     [--duration S] [--interval S] [--warmup S] [--limit-kb KB] [--postgres-url URL]
//!     [--scrape-metrics] [--json FILE]
//! ```
//!
//! Without `--rate` it first measures the drain rate with a burst (submissions as fast as
//! 8 clients go for `--burst` seconds, then until every one finished) and soaks at `--fraction`
//! of it. Every second it reads the server's `RssAnon` and how many submitted executions have
//! finished; every `--interval` it prints a row. At the end, the growth after the warm-up:
//! the least-squares slope of `RssAnon` against finished executions, over the 1-second samples
//! after the warm-up — bytes per execution — and it fails above `--limit-kb`.

mod client;
mod probe;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use client::{Api, Finished, Tracker};
use hdrhistogram::Histogram;
use hyper::body::Bytes;
use naxos::chrono::{DateTime, Utc};
use naxos::serde_json::{json, Value};
use probe::{cpu_seconds, rss_anon, Database, DbReading};

const USAGE: &str = "usage: loadgen soak --url URL --server-pid PID [--rate R | --fraction F] [--burst S]
               [--duration S] [--interval S] [--warmup S] [--limit-kb KB] [--rss-cap-mb MB]
               [--definition ID] [--params JSON] [--postgres-url URL] [--scrape-metrics] [--json FILE]
  --url           the running server's base URL
  --server-pid    its process id (RssAnon from /proc/PID/status)
  --rate          executions submitted per second; without it, --fraction of the drain rate
                  measured by a --burst seconds burst first (default fraction 0.5, burst 5 s)
  --duration      seconds at the fixed rate, warm-up included (default 600)
  --interval      seconds between printed rows (default 10)
  --warmup        seconds left out of the growth figure (default 30)
  --limit-kb      fail when RssAnon grows more than this many KiB per finished execution
                  after the warm-up (default 0.5)
  --rss-cap-mb    stop submitting, and fail, when the server's RssAnon passes this (default 4096)
  --definition    the definition to execute (default sample-2), --params its params (default {})
  --postgres-url  the server's database: adds connections and table sizes to each row
  --scrape-metrics  read the queue depth from /metrics at each row, as a Prometheus server
                  would scrape it (a scrape also empties the recorder's histogram buffers);
                  without it, from /api/v1/system/status and the node is never scraped
  --json FILE     also write the rows and the result as JSON";

struct Args {
    url: String,
    pid: u32,
    rate: Option<f64>,
    fraction: f64,
    burst: f64,
    duration: f64,
    interval: f64,
    warmup: f64,
    limit_kb: f64,
    rss_cap_mb: f64,
    definition: String,
    params: Bytes,
    postgres_url: Option<String>,
    scrape_metrics: bool,
    json: Option<String>,
}

fn args(mut it: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut url = None;
    let mut pid = None;
    let mut a = Args {
        url: String::new(),
        pid: 0,
        rate: None,
        fraction: 0.5,
        burst: 5.0,
        duration: 600.0,
        interval: 10.0,
        warmup: 30.0,
        limit_kb: 0.5,
        rss_cap_mb: 4096.0,
        definition: "sample-2".into(),
        params: Bytes::from_static(b"{}"),
        postgres_url: None,
        scrape_metrics: false,
        json: None,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        let mut number = || -> anyhow::Result<f64> {
            let v = value()?;
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .with_context(|| format!("{flag}: `{v}` is not a number >= 0"))
        };
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--server-pid" => pid = Some(value()?.parse().context("--server-pid")?),
            "--rate" => a.rate = Some(number()?).filter(|r| *r > 0.0),
            "--fraction" => a.fraction = number()?,
            "--burst" => a.burst = number()?,
            "--duration" => a.duration = number()?,
            "--interval" => a.interval = number()?.max(1.0),
            "--warmup" => a.warmup = number()?,
            "--limit-kb" => a.limit_kb = number()?,
            "--rss-cap-mb" => a.rss_cap_mb = number()?,
            "--definition" => a.definition = value()?,
            "--params" => a.params = Bytes::from(value()?),
            "--postgres-url" => a.postgres_url = Some(value()?).filter(|u| !u.is_empty()),
            "--scrape-metrics" => a.scrape_metrics = true,
            "--json" => a.json = Some(value()?),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    a.url = url.context("--url is required")?;
    a.pid = pid.context("--server-pid is required")?;
    if a.warmup + 2.0 > a.duration {
        bail!(
            "--duration ({}) must leave time after --warmup ({})",
            a.duration,
            a.warmup
        );
    }
    if a.rate.is_none() && !(a.fraction > 0.0 && a.burst > 0.0) {
        bail!("without --rate, --fraction and --burst must be > 0");
    }
    Ok(a)
}

/// One sample a second: the fit's input.
#[derive(Clone, Copy)]
struct Sample {
    at: f64,
    finished: u64,
    rss: u64,
}

/// Running totals of the soak.
#[derive(Default)]
struct Counts {
    submitted: AtomicU64,
    errors: AtomicU64,
    finished: AtomicU64,
    not_completed: AtomicU64,
}

/// `loadgen soak ...`: runs the soak; an error (and exit code 1) when the growth is over the
/// limit, an execution did not complete or a submission failed.
pub(crate) async fn main(rest: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let a = args(rest)?;
    let api = Api::new(&a.url);
    rss_anon(a.pid)?;
    let db = match &a.postgres_url {
        Some(url) => Some(Database::connect(url).await?),
        None => None,
    };
    let rate = match a.rate {
        Some(r) => r,
        None => {
            let drain = burst(&api, &a).await?;
            let rate = drain * a.fraction;
            println!(
                "drain rate {drain:.1} executions/s; soaking at {:.2} of it: {rate:.1}/s",
                a.fraction
            );
            rate
        }
    };
    println!(
        "soak: {} at {rate:.1}/s for {:.0} s (warm-up {:.0} s, rows every {:.0} s); server pid {}",
        a.definition, a.duration, a.warmup, a.interval, a.pid
    );
    let row_head = format!(
        "{:>7} {:>10} {:>10} {:>11} {:>8} {:>8} {:>6} {:>9} {:>7} {:>10}",
        "time s", "submitted", "finished", "RssAnon MB", "p50 ms", "p99 ms", "CPU %", "db conns", "queued", "tables MB"
    );
    println!("{row_head}");

    let tracker = Arc::new(Tracker::new(api.clone(), &a.definition));
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let submitter = tokio::spawn(submit_at_rate(
        api.clone(),
        tracker.clone(),
        counts.clone(),
        stop.clone(),
        a.definition.clone(),
        a.params.clone(),
        rate,
        started + Duration::from_secs_f64(a.duration),
    ));

    let mut samples: Vec<Sample> = Vec::new();
    let mut rows: Vec<Value> = Vec::new();
    let mut latency = Histogram::<u64>::new(3)?;
    let mut next_row = a.interval;
    let mut stopped_early = None;
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut db_at_warmup: Option<(u64, DbReading)> = None;
    let mut last_cpu = (0.0, cpu_seconds(a.pid)?);
    loop {
        tick.tick().await;
        record(&tracker.poll().await?, &counts, &mut latency)?;
        let at = started.elapsed().as_secs_f64();
        let rss = rss_anon(a.pid)?;
        let finished = counts.finished.load(Ordering::Relaxed);
        samples.push(Sample { at, finished, rss });
        let last = at + 0.5 >= a.duration;
        if at + 0.5 >= next_row || last {
            let reading = match &db {
                Some(db) => Some(db.read().await?),
                None => None,
            };
            if at + 0.5 >= a.warmup && db_at_warmup.is_none() {
                db_at_warmup = reading.map(|r| (finished, r));
            }
            let cpu = cpu_seconds(a.pid)?;
            let reading = Reading {
                at,
                rss,
                cpu_percent: 100.0 * (cpu - last_cpu.1) / (at - last_cpu.0),
                db: reading,
                warming_up: at + 0.5 < a.warmup,
                scrape_metrics: a.scrape_metrics,
            };
            last_cpu = (at, cpu);
            rows.push(row(&api, &counts, &latency, reading).await?);
            latency.reset();
            next_row += a.interval;
        }
        if rss as f64 > a.rss_cap_mb * 1024.0 * 1024.0 && stopped_early.is_none() {
            stop.store(true, Ordering::Relaxed);
            stopped_early = Some(at);
            println!("RssAnon passed --rss-cap-mb {:.0}: submissions stop here", a.rss_cap_mb);
        }
        if last || stopped_early.is_some() {
            break;
        }
    }
    submitter.await??;
    // Submitted but not finished when the fixed rate ended: a node that keeps up holds about
    // rate × latency of them.
    let backlog = counts
        .submitted
        .load(Ordering::Relaxed)
        .saturating_sub(counts.finished.load(Ordering::Relaxed));

    // Let the last submissions finish, so nothing is left counted as lost.
    let drain_until = Instant::now() + Duration::from_secs(120);
    while tracker.pending() > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        record(&tracker.poll().await?, &counts, &mut latency)?;
    }
    let reading = match &db {
        Some(db) => Some(db.read().await?),
        None => None,
    };
    let at = started.elapsed().as_secs_f64();
    let last = Reading {
        at,
        rss: rss_anon(a.pid)?,
        cpu_percent: 100.0 * (cpu_seconds(a.pid)? - last_cpu.1) / (at - last_cpu.0),
        db: reading,
        warming_up: false,
        scrape_metrics: a.scrape_metrics,
    };
    rows.push(row(&api, &counts, &latency, last).await?);
    println!("(last row: after the submissions stopped and the backlog drained)");

    let outcome = Outcome {
        rate,
        samples,
        backlog,
        unfinished: tracker.pending(),
        db_at_warmup,
        db_end: reading,
        stopped_early,
    };
    let result = verdict(&a, &counts, &outcome);
    if let Some(path) = &a.json {
        let report = json!({ "rate": rate, "args": {
            "duration": a.duration, "interval": a.interval, "warmup": a.warmup, "limitKb": a.limit_kb,
            "scrapeMetrics": a.scrape_metrics,
            "definition": a.definition }, "rows": rows, "result": result.report,
            "samples": outcome.samples.iter().map(|s| json!([s.at, s.finished, s.rss])).collect::<Vec<_>>() });
        std::fs::write(path, naxos::serde_json::to_string_pretty(&report)? + "\n")?;
    }
    match result.failure {
        Some(why) => bail!("soak failed: {why}"),
        None => Ok(()),
    }
}

/// Counts finished executions and their latency into the current interval's histogram.
fn record(finished: &[Finished], counts: &Counts, latency: &mut Histogram<u64>) -> anyhow::Result<()> {
    for f in finished {
        counts.finished.fetch_add(1, Ordering::Relaxed);
        if !f.completed {
            counts.not_completed.fetch_add(1, Ordering::Relaxed);
        }
        latency.record(f.latency_us())?;
    }
    Ok(())
}

/// What a row shows besides the running totals.
struct Reading {
    at: f64,
    rss: u64,
    /// The server's CPU time over the row's interval, in % of one core.
    cpu_percent: f64,
    db: Option<DbReading>,
    warming_up: bool,
    scrape_metrics: bool,
}

/// Prints one row and returns it as JSON.
async fn row(api: &Api, counts: &Counts, latency: &Histogram<u64>, r: Reading) -> anyhow::Result<Value> {
    let queued = api.queued_tasks(r.scrape_metrics).await?;
    let ms = |q: f64| (!latency.is_empty()).then(|| latency.value_at_quantile(q) as f64 / 1000.0);
    let (submitted, finished) = (
        counts.submitted.load(Ordering::Relaxed),
        counts.finished.load(Ordering::Relaxed),
    );
    let show = |v: Option<f64>, prec: usize| v.map_or_else(|| "-".to_string(), |v| format!("{v:.prec$}"));
    println!(
        "{:>7.0} {:>10} {:>10} {:>11.1} {:>8} {:>8} {:>6.0} {:>9} {:>7} {:>10}{}",
        r.at,
        submitted,
        finished,
        r.rss as f64 / 1048576.0,
        show(ms(0.5), 1),
        show(ms(0.99), 1),
        r.cpu_percent,
        r.db.map_or_else(|| "-".to_string(), |d| d.connections.to_string()),
        queued,
        show(r.db.map(|d| d.tables_bytes as f64 / 1048576.0), 1),
        if r.warming_up { "  (warm-up)" } else { "" }
    );
    Ok(json!({
        "seconds": r.at, "submitted": submitted, "finished": finished, "rssAnonBytes": r.rss,
        "p50Ms": ms(0.5), "p99Ms": ms(0.99), "cpuPercent": r.cpu_percent,
        "dbConnections": r.db.map(|d| d.connections), "queuedTasks": queued,
        "tablesBytes": r.db.map(|d| d.tables_bytes), "warmUp": r.warming_up,
    }))
}

/// Submits at `rate` per second until `until` (or `stop`), at most 64 requests in flight.
#[allow(clippy::too_many_arguments)]
async fn submit_at_rate(
    api: Api,
    tracker: Arc<Tracker>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    definition: String,
    params: Bytes,
    rate: f64,
    until: Instant,
) -> anyhow::Result<()> {
    const IN_FLIGHT: u32 = 64;
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT as usize));
    let started = Instant::now();
    let mut sent: u64 = 0;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let slot = slots.clone().acquire_owned().await?;
            sent += 1;
            let (api, tracker, counts, definition, params) = (
                api.clone(),
                tracker.clone(),
                counts.clone(),
                definition.clone(),
                params.clone(),
            );
            tokio::spawn(async move {
                match api.execute(&definition, &params).await {
                    Ok(id) => {
                        tracker.add(id);
                        counts.submitted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if counts.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("submission failed: {e:#}");
                        }
                    }
                }
                drop(slot);
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _all = slots.acquire_many(IN_FLIGHT).await?;
    Ok(())
}

/// Submits from 8 clients as fast as they go for `--burst` seconds, then waits until every one
/// finished: executions / (last end − first creation), by the Store's clock.
async fn burst(api: &Api, a: &Args) -> anyhow::Result<f64> {
    let tracker = Arc::new(Tracker::new(api.clone(), &a.definition));
    let until = Instant::now() + Duration::from_secs_f64(a.burst);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (api, tracker, definition, params) = (api.clone(), tracker.clone(), a.definition.clone(), a.params.clone());
        clients.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                tracker.add(api.execute(&definition, &params).await?);
                n += 1;
            }
            anyhow::Ok(n)
        });
    }
    let mut submitted = 0;
    while let Some(n) = clients.join_next().await {
        submitted += n??;
    }
    let (mut first, mut last, mut failed) = (None, None, 0);
    let give_up = Instant::now() + Duration::from_secs(300);
    while tracker.pending() > 0 {
        if Instant::now() > give_up {
            bail!(
                "burst: {} of {submitted} executions unfinished after 300 s",
                tracker.pending()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for f in tracker.poll().await? {
            first = Some(first.map_or(f.created_at, |t: DateTime<Utc>| t.min(f.created_at)));
            last = Some(last.map_or(f.end_time, |t: DateTime<Utc>| t.max(f.end_time)));
            failed += u64::from(!f.completed);
        }
    }
    if failed > 0 {
        bail!("burst: {failed} of {submitted} executions did not complete");
    }
    let (Some(first), Some(last)) = (first, last) else {
        bail!("burst: nothing was submitted");
    };
    let seconds = (last - first).num_microseconds().unwrap_or(0) as f64 / 1e6;
    println!("burst: {submitted} executions from 8 clients in {:.0} s, all finished {seconds:.1} s after the first was created", a.burst);
    Ok(submitted as f64 / seconds.max(0.001))
}

/// What the soak saw, for the verdict.
struct Outcome {
    rate: f64,
    samples: Vec<Sample>,
    /// Submitted, not finished when the fixed rate ended.
    backlog: u64,
    /// Still not finished after the drain.
    unfinished: usize,
    db_at_warmup: Option<(u64, DbReading)>,
    db_end: Option<DbReading>,
    stopped_early: Option<f64>,
}

struct Verdict {
    report: Value,
    failure: Option<String>,
}

/// The growth after the warm-up, printed, and whether the soak passes.
fn verdict(a: &Args, counts: &Counts, o: &Outcome) -> Verdict {
    let after: Vec<&Sample> = o.samples.iter().filter(|s| s.at + 0.5 >= a.warmup).collect();
    let kib = |bytes: f64| bytes / 1024.0;
    let mut failures = Vec::new();
    let (slope, first_last) = match (after.first(), after.last()) {
        (Some(f), Some(l)) if after.len() >= 3 && l.finished > f.finished => {
            let n = after.len() as f64;
            let (mx, my) = (
                after.iter().map(|s| s.finished as f64).sum::<f64>() / n,
                after.iter().map(|s| s.rss as f64).sum::<f64>() / n,
            );
            let sxy: f64 = after
                .iter()
                .map(|s| (s.finished as f64 - mx) * (s.rss as f64 - my))
                .sum();
            let sxx: f64 = after.iter().map(|s| (s.finished as f64 - mx).powi(2)).sum();
            let first_last = (l.rss as f64 - f.rss as f64) / (l.finished - f.finished) as f64;
            (Some(sxy / sxx), Some((first_last, f, l)))
        }
        _ => (None, None),
    };
    println!();
    match (slope, first_last) {
        (Some(slope), Some((fl, f, l))) => {
            println!(
                "RssAnon growth after the warm-up: {:.3} KiB per finished execution (least-squares slope over {} one-second samples, \
                 {} executions); first/last: {:.1} -> {:.1} MB, {:.3} KiB per execution",
                kib(slope),
                after.len(),
                l.finished - f.finished,
                f.rss as f64 / 1048576.0,
                l.rss as f64 / 1048576.0,
                kib(fl)
            );
            if kib(slope) > a.limit_kb {
                failures.push(format!(
                    "RssAnon grew {:.3} KiB per execution, over the limit of {} KiB",
                    kib(slope),
                    a.limit_kb
                ));
            }
        }
        _ => failures.push("no executions finished after the warm-up: nothing to measure".to_string()),
    }
    let tables = match (o.db_at_warmup, o.db_end) {
        (Some((finished, w)), Some(e)) => {
            let done = counts.finished.load(Ordering::Relaxed).saturating_sub(finished);
            let per = (e.tables_bytes - w.tables_bytes) as f64 / done.max(1) as f64;
            println!(
                "Store tables: {:.1} -> {:.1} MB after the warm-up, {:.2} KiB per finished execution (kept until pruned)",
                w.tables_bytes as f64 / 1048576.0,
                e.tables_bytes as f64 / 1048576.0,
                kib(per)
            );
            Some(per)
        }
        _ => None,
    };
    let (errors, not_completed) = (
        counts.errors.load(Ordering::Relaxed),
        counts.not_completed.load(Ordering::Relaxed),
    );
    if errors > 0 {
        failures.push(format!("{errors} submissions failed"));
    }
    if not_completed > 0 {
        failures.push(format!("{not_completed} executions ended without COMPLETED"));
    }
    if o.unfinished > 0 {
        failures.push(format!(
            "{} executions still unfinished 120 s after the last submission",
            o.unfinished
        ));
    }
    // More than 10 s of submissions waiting: the node fell behind, and what it holds for a
    // growing backlog is not growth per execution. The figure above does not mean what it says.
    if o.backlog as f64 > (o.rate * 10.0).max(100.0) {
        failures.push(format!(
            "the node did not keep up with {:.1}/s: {} executions unfinished when submissions stopped \
             (rerun at a lower --rate, or on a quieter machine)",
            o.rate, o.backlog
        ));
    }
    if let Some(at) = o.stopped_early {
        failures.push(format!("stopped at {at:.0} s: RssAnon passed {} MB", a.rss_cap_mb));
    }
    let failure = (!failures.is_empty()).then(|| failures.join("; "));
    match &failure {
        None => println!("PASS: growth within {} KiB per execution", a.limit_kb),
        Some(why) => println!("FAIL: {why}"),
    }
    Verdict {
        report: json!({
            "rssAnonBytesPerExecution": slope, "firstLastBytesPerExecution": first_last.map(|(fl, _, _)| fl),
            "samplesAfterWarmup": after.len(), "tablesBytesPerExecution": tables,
            "submitted": counts.submitted.load(Ordering::Relaxed), "finished": counts.finished.load(Ordering::Relaxed),
            "errors": errors, "notCompleted": not_completed, "backlogAtEnd": o.backlog, "limitKb": a.limit_kb, "passed": failure.is_none(),
        }),
        failure,
    }
}

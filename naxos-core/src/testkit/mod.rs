//! The backend conformance suite: what "a correct backend" means, as async test functions.
//!
//! Every backend crate runs the whole suite with one macro call per trait, in its own tests
//! (with the facade's `testkit` feature, or `naxos-core`'s):
//!
//! ```text
//! naxos::store_conformance!(|clock: Clock| async move { Some(Arc::new(MyStore::connect(.., clock).await) as Arc<dyn Store>) });
//! naxos::queue_conformance!(|| async { Some(Arc::new(MyQueue::connect(..).await) as Arc<dyn Queue>) });
//! naxos::cache_conformance!(|| async { Some(Arc::new(MyCache::open(..)) as Arc<dyn Cache>) });
//! ```
//!
//! Each macro expands to one `#[tokio::test]` per check, so a failure names the broken rule; the
//! Store suite adds the [differential test](differential), which runs random
//! [scenarios](scenario) on the backend and on the state module and compares every step.
//! The factory is called once per test (the Store's with the fake clock the check moves) and
//! returns `Some(backend)` that no other test uses (its
//! own schema, queue names or directory), or `None` to skip when the backend's service is not
//! configured (see [`service_url`]); the checks also use fresh ids, so a shared database works.

pub mod cache;
pub mod differential;
pub mod engine;
pub(crate) mod fixtures;
pub mod proxy;
pub mod queue;
pub mod scenario;
pub mod store;

pub use fixtures::{diamond, test_clock, unique_id};

/// The URL of a test service from the environment variable `variable` (e.g.
/// `NAXOS_TEST_POSTGRES_URL`, which `scripts/test.sh` sets).
///
/// When it is unset: under `CI=true` this panics (a backend test whose service is missing
/// fails, never silently skips); otherwise it prints a note and returns `None` so the test
/// can skip.
pub fn service_url(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{variable} is not set and CI=true: run the tests through scripts/test.sh, which starts the service")
        }
        _ => {
            eprintln!("note: {variable} is not set; skipping (scripts/test.sh starts the service and sets it)");
            None
        }
    }
}

/// Expands to one test per item, each calling `$module::$name` on a backend from `$make`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($module:ident, $make:expr, [$($name:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let make = $make;
                let Some(backend) = make().await else {
                    return;
                };
                $crate::testkit::$module::$name(backend).await;
            }
        )*
    };
}

/// Runs the Store conformance suite, including the [differential test](differential) against
/// the state module: `store_conformance!(|clock: Clock| async move { Some(Arc<dyn Store>) })`.
///
/// The factory must build a store that reads the time from `clock` (the checks move it).
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        #[test]
        fn differential_against_the_state_module() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            let clock = $crate::testkit::scenario::clock();
            let make = $make;
            let Some(store) = rt.block_on(make($crate::Clock::Manual(clock.clone()))) else {
                return;
            };
            $crate::testkit::differential::run(&rt, store, clock);
        }

        $crate::__store_conformance_tests!(
            $make,
            [
                definitions_are_versioned,
                create_queues_the_roots,
                idempotency_key_returns_the_first_execution,
                racing_creations_with_one_key_create_one_execution,
                a_batch_creates_each_in_order_and_dedups_by_key,
                a_batch_starts_the_sub_jobs_of_its_roots,
                claim_is_guarded,
                heartbeat_extends_and_is_fenced,
                completion_unlocks_dependents_once,
                racing_completions_unlock_the_join_exactly_once,
                racing_finishes_end_the_execution_exactly_once,
                stale_or_double_finish_is_rejected,
                retryable_failure_waits_then_runs_again,
                final_failure_skips_dependents_and_fails_the_execution,
                finish_batch_applies_each_item,
                stop_cancels_and_tells_the_running_worker,
                expired_lease_is_recovered_once,
                lease_expiries_are_bounded,
                stale_queued_tasks_are_taken_once,
                a_waiting_task_is_republished_ever_more_rarely,
                release_requeues_with_a_new_attempt,
                retry_execution_reruns_the_failed_part,
                retry_from_reruns_the_task_and_below_only,
                a_retried_execution_gets_a_fresh_deadline,
                listing_pages_and_filters,
                overdue_executions_and_pruning,
                a_definition_keeps_its_retention,
                pruning_follows_the_definition_then_the_default_by_end_state,
                a_prune_deletes_at_most_its_limit,
                a_retried_execution_counts_from_its_new_end,
                counts_and_nodes,
                silent_nodes_are_pruned,
                the_trace_context_travels_with_the_execution,
                schedules_are_created_paused_resumed_and_deleted,
                a_tick_fires_once_when_callers_race,
                executions_list_by_schedule,
                a_false_condition_skips_and_the_join_runs,
                a_condition_that_fails_to_evaluate_fails_the_task,
                all_success_below_a_condition_is_skipped_not_failed,
                all_done_runs_after_a_failure_and_the_execution_fails,
                any_success_runs_at_the_first_completion,
                retry_leaves_the_branch_not_taken,
                a_sleep_waits_until_due_then_completes_once,
                a_signal_completes_the_waiting_task_or_is_kept_for_it,
                a_wait_past_its_timeout_fails_once,
                a_fan_out_runs_an_instance_per_item_and_fans_in_once,
                a_failed_instance_fails_the_fan_out_and_a_retry_keeps_the_completed,
                fan_outs_too_long_empty_or_not_a_list,
                a_delayed_execution_starts_at_its_time_once,
                wake_due_starts_due_delayed_executions_once,
                a_delayed_execution_cancelled_before_its_time_never_starts,
                a_delay_too_far_ahead_is_refused,
                a_sub_job_starts_its_child_at_once_and_completes_with_it,
                a_failed_child_is_retried_with_a_new_child_then_fails_the_task,
                a_cancelled_child_fails_its_task_and_a_stopped_parent_names_its_child,
                a_paused_definition_blocks_its_claims_until_resumed,
                a_concurrency_limit_blocks_claims_and_admits_in_order,
                a_concurrency_key_limits_per_key,
                a_cancelled_waiting_run_no_longer_waits,
                a_paused_admitted_run_keeps_its_slot,
                waiting_runs_are_admitted_highest_priority_first,
                a_rate_limit_starts_a_burst_then_books_turns,
                a_rate_limit_counts_per_key,
                cancelled_runs_give_their_turns_back,
            ]
        );
    };
}

/// Expands to one test per Store check, each on a store from `$make` that reads a fresh fake
/// clock, which the check is given too.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_tests {
    ($make:expr, [$($name:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let clock = $crate::testkit::test_clock();
                let make = $make;
                let Some(store) = make($crate::Clock::Manual(clock.clone())).await else {
                    return;
                };
                $crate::testkit::store::$name(store, clock).await;
            }
        )*
    };
}

/// Runs the Queue conformance suite: `queue_conformance!(|| async { Arc<dyn Queue> })`.
#[macro_export]
macro_rules! queue_conformance {
    ($make:expr) => {
        $crate::__conformance_tests!(
            queue,
            $make,
            [
                publish_consume_ack,
                nack_redelivers,
                dropped_consumer_redelivers_to_another,
                prefetch_bounds_unacknowledged_deliveries,
                short_delay_is_not_blocked_by_a_long_one,
                task_messages_carry_their_trace_context,
                higher_priorities_are_delivered_first,
                events_reach_every_subscriber_in_order,
                a_selected_subscription_gets_only_what_it_selected,
            ]
        );
    };
}

/// Runs the Cache conformance suite: `cache_conformance!(|| async { Arc<dyn Cache> })`.
#[macro_export]
macro_rules! cache_conformance {
    ($make:expr) => {
        $crate::__conformance_tests!(cache, $make, [get_after_put, versions_are_separate]);
    };
}

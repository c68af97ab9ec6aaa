//! The rules a definition or schedule must meet, written into their schemas, so that what a
//! client generator or a fuzzer builds from the document is what the API accepts.
//!
//! The rules are naxos-core's (`naxos_core::model::validate`, `Schedule::cadence`); this
//! module states them in JSON Schema. Every one that JSON Schema can say is here: the id
//! charset and length (`pattern`, `minLength`, `maxLength`, also for the keys of `tasks` and
//! `graph`), how many tasks (`minProperties`, `maxProperties`, from the engine's
//! [`Limits`]), `maxRetry`'s ceiling, the registered functions (`enum`), a sub-job's
//! definition id and version (from 1), timeouts of at least 1 ms, no repeated dependency
//! (`uniqueItems`), no U+0000 in text, the backoff's ranges. The rest relates one field to
//! another (a task's `id` equals its key, a dependency names a task, no cycles, `initialMs` ≤
//! `maxMs`, a `when` or a sub-job's `params` that compiles, a sub-job's definition that exists)
//! and is said in the descriptions; a definition that breaks one of those gets a 422 listing
//! every problem.

use naxos_core::model::Limits;
use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Object, ObjectBuilder, Type};
use utoipa::openapi::{OpenApi, RefOr, Schema};
use utoipa::Modify;

use crate::HttpConfig;

/// The longest id (`naxos_core::model::is_valid_id`).
const MAX_ID_LEN: usize = 128;

/// Text without the character U+0000, which no Store keeps.
const NO_NUL: &str = r"^[^\u0000]*$";

/// The pattern of a definition, task or schedule id: what `is_valid_id` accepts.
pub(crate) fn id_pattern() -> String {
    format!("^[A-Za-z0-9_.-]{{1,{MAX_ID_LEN}}}$")
}

/// A string schema for an id.
fn id_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(id_pattern()))
        .min_length(Some(1))
        .max_length(Some(MAX_ID_LEN))
        .build()
}

/// The rules of one server: its engine's limits and functions, its body limit.
pub(crate) struct Rules<'a> {
    /// The engine's definition limits.
    pub(crate) limits: Limits,
    /// [`HttpConfig::max_body_bytes`].
    pub(crate) max_body_bytes: usize,
    /// The registered task functions; none known leaves `functionName` open.
    pub(crate) functions: &'a [String],
}

/// The rules under the default settings, for [`ApiDoc::openapi`](crate::ApiDoc).
pub(crate) struct DefaultRules;

impl Modify for DefaultRules {
    fn modify(&self, doc: &mut OpenApi) {
        Rules {
            limits: Limits::default(),
            max_body_bytes: HttpConfig::default().max_body_bytes,
            functions: &[],
        }
        .modify(doc);
    }
}

/// Every change below sets a whole value (never appends), so applying the rules of a server
/// over the defaults leaves only the server's.
impl Modify for Rules<'_> {
    fn modify(&self, doc: &mut OpenApi) {
        let max_tasks = self.limits.max_tasks;
        let max_retry = self.limits.max_retry;

        let job = schema(doc, "JobDefinition");
        set(
            property(job, "id"),
            id_schema(),
            "Unique id: 1 to 128 of `A-Z a-z 0-9 _ . -`.",
        );
        property(job, "name").pattern = Some(NO_NUL.into());
        property(job, "description").pattern = Some(NO_NUL.into());
        property(job, "timeoutMs").minimum = Some(1.into());
        let tasks = property(job, "tasks");
        tasks.min_properties = Some(1);
        tasks.max_properties = Some(max_tasks);
        tasks.property_names = Some(Box::new(id_schema().into()));
        tasks.description = Some(format!(
            "The tasks, keyed by their id: 1 to {max_tasks} of them. Each task's `id` equals its key."
        ));
        let graph = property(job, "graph");
        graph.property_names = Some(Box::new(id_schema().into()));
        graph.description = Some(
            "Dependencies: task id → the ids it waits for. Every id here is a key of `tasks`, a task \
             lists a dependency once, and no tasks depend on each other in a cycle."
                .into(),
        );
        let Some(AdditionalProperties::RefOr(RefOr::T(Schema::Array(deps)))) =
            graph.additional_properties.as_deref_mut()
        else {
            panic!("`graph` of JobDefinition is a map of arrays");
        };
        deps.unique_items = true;
        deps.items = ArrayItems::RefOrSchema(Box::new(RefOr::T(id_schema().into())));

        let task = schema(doc, "TaskDefinition");
        set(
            property(task, "id"),
            id_schema(),
            "The task's id; equals its key in `tasks`.",
        );
        property(task, "name").pattern = Some(NO_NUL.into());
        property(task, "maxRetry").maximum = Some(max_retry.into());
        property(task, "timeoutMs").minimum = Some(1.into());
        let when = property(task, "when");
        when.pattern = Some(NO_NUL.into());
        when.description = Some(
            "Optional condition (CEL over `params` and `upstream`, giving a bool), checked when the \
             definition is registered and evaluated once when the trigger holds: false SKIPS the task \
             with error `condition false` and its function never runs; an evaluation error FAILS it."
                .into(),
        );
        let function = property(task, "functionName");
        function.min_length = Some(1);
        function.enum_values =
            (!self.functions.is_empty()).then(|| self.functions.iter().map(|f| f.as_str().into()).collect());
        function.description = Some("The name a task function was registered under with the engine.".into());

        let sub_job = schema(doc, "SubJob");
        set(
            property(sub_job, "definitionId"),
            id_schema(),
            "The definition the child runs: 1 to 128 of `A-Z a-z 0-9 _ . -`, registered before this \
             one (or this one itself, nesting at most 10 deep).",
        );
        let version = property(sub_job, "version");
        version.minimum = Some(1.into());
        version.description = Some(
            "The version the child runs (from 1; it must exist); absent: the latest when the parent \
             execution is created, kept for every retry."
                .into(),
        );
        let params = property(sub_job, "params");
        params.pattern = Some(NO_NUL.into());
        params.description = Some(
            "The child's params: CEL over `params` and `upstream` (the COMPLETED direct dependencies' \
             outputs), giving an object; checked when the definition is registered (it compiles, reads \
             no `item` or `index`) and evaluated when the task starts: an evaluation error, or a value \
             that is not an object, FAILS the task. Absent: the parent's params."
                .into(),
        );

        let concurrency = schema(doc, "Concurrency");
        property(concurrency, "limit").minimum = Some(1.into());
        let key = property(concurrency, "key");
        key.pattern = Some(NO_NUL.into());
        key.description = Some(
            "The key the limit counts per: CEL over `params` and `upstream` giving a string (a number \
             or bool counts as its JSON text), checked when the definition is registered and evaluated \
             once when the task starts (a fan-out's instances share it); an evaluation error FAILS the \
             task. Absent: one limit for the task across every execution of its definition."
                .into(),
        );

        let rate = schema(doc, "RateLimit");
        let per_second = property(rate, "perSecond");
        per_second.exclusive_minimum = Some(0.into());
        per_second.maximum = Some(naxos_core::model::MAX_RATE.into());
        let burst = property(rate, "burst");
        burst.minimum = Some(1.into());
        burst.maximum = Some(naxos_core::model::MAX_BURST.into());
        burst.description = Some(
            "Starts at once after a quiet spell (default 1): in any window of t seconds, at most \
             `burst + perSecond × t` runs start."
                .into(),
        );
        let key = property(rate, "key");
        key.pattern = Some(NO_NUL.into());
        key.description = Some(
            "The key the limit counts per, as `concurrency.key`: CEL over `params` and `upstream` giving \
             a string, evaluated once when the task starts. Absent: one limit for the task across every \
             execution of its definition."
                .into(),
        );

        let backoff = schema(doc, "BackoffPolicy");
        backoff.description = Some(
            "Exponential backoff between attempts: `initialMs × multiplier^(n-1)`, capped at `maxMs` \
             (`initialMs` ≤ `maxMs`), minus up to `jitter` (a fraction, 0–1) of it at random."
                .into(),
        );
        property(backoff, "multiplier").minimum = Some(1.into());
        let jitter = property(backoff, "jitter");
        jitter.minimum = Some(0.into());
        jitter.maximum = Some(1.into());

        let schedule = schema(doc, "Schedule");
        set(
            property(schedule, "id"),
            id_schema(),
            "The schedule's id: 1 to 128 of `A-Z a-z 0-9 _ . -`.",
        );
        set(
            property(schedule, "definitionId"),
            id_schema(),
            "The definition each tick runs (its latest version at the tick).",
        );
        property(schedule, "params").schema_type = Type::Object.into();

        let create = doc
            .paths
            .paths
            .get_mut("/api/v1/job-definitions")
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.request_body.as_mut())
            .expect("POST /api/v1/job-definitions has a body");
        create.description = Some(format!(
            "A job definition in the original naxos format, at most {} bytes (413 over that)",
            self.max_body_bytes
        ));
    }
}

/// A component schema that is an object.
fn schema<'d>(doc: &'d mut OpenApi, name: &str) -> &'d mut Object {
    match doc.components.as_mut().and_then(|c| c.schemas.get_mut(name)) {
        Some(RefOr::T(Schema::Object(object))) => object,
        _ => panic!("the schema {name} is an object"),
    }
}

/// A property of an object schema that is itself a plain schema.
fn property<'o>(object: &'o mut Object, name: &str) -> &'o mut Object {
    match object.properties.get_mut(name) {
        Some(RefOr::T(Schema::Object(p))) => p,
        _ => panic!("the property {name} is a plain schema"),
    }
}

/// `target` becomes `rules`, keeping its own type (which may also allow `null`).
fn set(target: &mut Object, rules: Object, description: &str) {
    target.pattern = rules.pattern;
    target.min_length = rules.min_length;
    target.max_length = rules.max_length;
    target.description = Some(description.into());
}

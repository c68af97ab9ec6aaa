//! Expressions — `when` conditions and `sleep.until` times: CEL (the `cel` crate) over an
//! execution's `params` and the outputs of a task's COMPLETED direct dependencies (`upstream`,
//! by task id).
//!
//! An expression is compiled when its definition is registered ([`check`]: a syntax error is a
//! validation problem naming the task and the field) and evaluated by the state module when the
//! task's trigger holds ([`evaluate`], [`evaluate_time`]). Evaluation is pure — CEL has no I/O and no clock — so
//! the state module stays a function of its inputs. Compiled programs are kept in a small
//! bounded cache, so a condition is parsed about once per process, not once per execution.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cel::{Context, Program};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::sync::lock;

/// The longest condition accepted, in bytes.
pub const MAX_LEN: usize = 4_096;

/// Compiled programs kept at most; past it the cache starts over.
const CACHE_SIZE: usize = 1_024;

static CACHE: Mutex<Option<HashMap<String, Arc<Program>>>> = Mutex::new(None);

/// Checks that `source` is a CEL expression naxos accepts: not longer than [`MAX_LEN`], and one
/// that parses. The error says what is wrong (a syntax error with its line and column).
pub fn check(source: &str) -> Result<(), String> {
    compile(source).map(|_| ())
}

/// Checks a `when` condition or a `forEach` list: as [`check`], and it reads no `item` or
/// `index` — those are an instance's, and these are evaluated once for the whole task,
/// before any instance exists.
pub fn check_when(source: &str) -> Result<(), String> {
    let program = compile(source)?;
    let references = program.references();
    match ["item", "index"].into_iter().find(|v| references.has_variable(v)) {
        Some(v) => Err(format!(
            "it reads `{v}`, which only a fan-out's instances have (their function reads it); \
             this expression is evaluated once for the whole task"
        )),
        None => Ok(()),
    }
}

/// The compiled program of `source`, from the cache or compiled now.
fn compile(source: &str) -> Result<Arc<Program>, String> {
    if source.len() > MAX_LEN {
        return Err(format!(
            "it is {} bytes long, over the limit of {MAX_LEN}",
            source.len()
        ));
    }
    if source.trim().is_empty() {
        return Err("it is empty".into());
    }
    if let Some(program) = lock(&CACHE).as_ref().and_then(|c| c.get(source)) {
        return Ok(program.clone());
    }
    let program = Arc::new(Program::compile(source).map_err(|e| {
        e.errors
            .iter()
            .map(|e| format!("line {}, column {}: {}", e.pos.0, e.pos.1, e.msg))
            .collect::<Vec<_>>()
            .join("; ")
    })?);
    let mut cache = lock(&CACHE);
    let cache = cache.get_or_insert_with(HashMap::new);
    if cache.len() >= CACHE_SIZE {
        cache.clear();
    }
    cache.insert(source.to_string(), program.clone());
    Ok(program)
}

/// Evaluates the condition `source` with `params` and `upstream` (task id → output). The error
/// is the text a task FAILS with: the evaluation error (a missing key, a type mismatch, …), or
/// a result that is not a bool.
pub fn evaluate<'a>(
    source: &str,
    params: &Value,
    upstream: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Result<bool, String> {
    match run("when", source, params, upstream)? {
        cel::Value::Bool(b) => Ok(b),
        other => Err(format!("`when` evaluated to a {}, not a bool", other.type_of())),
    }
}

/// Evaluates `source`, the expression of the field `field` (named in errors, e.g.
/// `sleep.until`), to a point in time: a CEL timestamp, or a string in RFC 3339.
pub fn evaluate_time<'a>(
    field: &str,
    source: &str,
    params: &Value,
    upstream: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Result<DateTime<Utc>, String> {
    match run(field, source, params, upstream)? {
        cel::Value::Timestamp(t) => Ok(t.with_timezone(&Utc)),
        cel::Value::String(s) => DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("`{field}` gave \"{s}\", not an RFC 3339 time: {e}")),
        other => Err(format!(
            "`{field}` evaluated to a {}, not a timestamp or an RFC 3339 string",
            other.type_of()
        )),
    }
}

/// Evaluates the `forEach` expression `source` to its list of items (as JSON). The error is
/// the text the task FAILS with.
pub fn evaluate_list<'a>(
    source: &str,
    params: &Value,
    upstream: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Result<Vec<Value>, String> {
    match run("forEach", source, params, upstream)? {
        cel::Value::List(items) => items
            .iter()
            .map(|item| {
                item.json()
                    .map_err(|e| format!("`forEach` gave an item that is not JSON: {e}"))
            })
            .collect(),
        other => Err(format!("`forEach` evaluated to a {}, not a list", other.type_of())),
    }
}

/// Evaluates `source`, the expression of the field `field` (named in errors, e.g.
/// `subJob.params`), to a JSON object. The error is the text the task FAILS with.
pub fn evaluate_object<'a>(
    field: &str,
    source: &str,
    params: &Value,
    upstream: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Result<Value, String> {
    let value = run(field, source, params, upstream)?;
    match value.json() {
        Ok(object @ Value::Object(_)) => Ok(object),
        Ok(other) => Err(format!("`{field}` gave {other}, not an object")),
        Err(e) => Err(format!("`{field}` gave a value that is not JSON: {e}")),
    }
}

/// Evaluates `source`, the key expression of the field `field` (`concurrency.key`,
/// `rateLimit.key`), to the key a limit counts per: a string as it is, a number or bool as its
/// JSON text. The error is the text the task FAILS with.
pub fn evaluate_key<'a>(
    field: &str,
    source: &str,
    params: &Value,
    upstream: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Result<String, String> {
    let value = run(field, source, params, upstream)?;
    match value.json() {
        Ok(Value::String(s)) => Ok(s),
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
        Ok(other) => Err(format!("`{field}` gave {other}, not a string")),
        Err(e) => Err(format!("`{field}` gave a value that is not JSON: {e}")),
    }
}

/// Runs the expression `source` of the field `field` over `params` and `upstream`.
fn run<'a>(
    field: &str,
    source: &str,
    params: &Value,
    upstream: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Result<cel::Value, String> {
    let program = compile(source).map_err(|e| format!("`{field}` does not compile: {e}"))?;
    let upstream: serde_json::Map<String, Value> = upstream
        .into_iter()
        .map(|(id, output)| (id.to_string(), output.clone()))
        .collect();
    let mut context = Context::default();
    context
        .add_variable("params", params)
        .and_then(|()| context.add_variable("upstream", &upstream))
        .map_err(|e| format!("`{field}` could not read its variables: {e}"))?;
    program
        .execute(&context)
        .map_err(|e| format!("`{field}` could not be evaluated: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_are_strings_or_the_text_of_scalars() {
        let params = json!({"tenant": "acme", "n": 3, "list": [1]});
        assert_eq!(
            evaluate_key("concurrency.key", "params.tenant", &params, []),
            Ok("acme".into())
        );
        assert_eq!(evaluate_key("concurrency.key", "params.n", &params, []), Ok("3".into()));
        assert_eq!(
            evaluate_key("concurrency.key", "params.n > 1", &params, []),
            Ok("true".into())
        );
        assert_eq!(
            evaluate_key("concurrency.key", "params.list", &params, []),
            Err("`concurrency.key` gave [1], not a string".into())
        );
        assert!(evaluate_key("concurrency.key", "params.missing", &params, [])
            .unwrap_err()
            .contains("could not be evaluated"));
    }

    #[test]
    fn syntax_errors_are_named_with_their_place() {
        assert_eq!(check("params.x > 1"), Ok(()));
        let e = check("params.x >").unwrap_err();
        assert!(e.starts_with("line 1, column 11: Syntax error"), "{e}");
        assert_eq!(check("  ").unwrap_err(), "it is empty");
        assert!(check(&"1".repeat(MAX_LEN + 1)).unwrap_err().contains("over the limit"));
    }

    #[test]
    fn conditions_read_params_and_completed_upstream() {
        let params = json!({"x": 2, "name": "a"});
        let out = json!({"ok": true});
        let up = [("a", &out)];
        assert_eq!(evaluate("params.x > 1", &params, []), Ok(true));
        assert_eq!(evaluate("params.x <= 1", &params, []), Ok(false));
        assert_eq!(evaluate("has(upstream.a) && upstream.a.ok", &params, up), Ok(true));
        assert_eq!(evaluate("has(upstream.b)", &params, up), Ok(false));
        assert_eq!(
            evaluate("params.missing > 1", &params, []),
            Err("`when` could not be evaluated: No such key: missing".into())
        );
        assert_eq!(
            evaluate("params.x", &params, []),
            Err("`when` evaluated to a uint, not a bool".into())
        );
        assert!(evaluate("item == 1", &params, []).unwrap_err().contains("item"));
    }

    #[test]
    fn times_come_from_strings_or_timestamps() {
        let params = json!({"at": "2026-01-02T03:04:05Z", "n": 1});
        let at: DateTime<Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(evaluate_time("sleep.until", "params.at", &params, []), Ok(at));
        assert_eq!(
            evaluate_time("sleep.until", "timestamp(params.at) + duration('1h')", &params, []),
            Ok(at + chrono::Duration::hours(1))
        );
        let e = evaluate_time("sleep.until", "params.n", &params, []).unwrap_err();
        assert!(e.starts_with("`sleep.until` evaluated to a"), "{e}");
        let e = evaluate_time("sleep.until", "'tomorrow'", &params, []).unwrap_err();
        assert!(e.contains("not an RFC 3339 time"), "{e}");
    }
}

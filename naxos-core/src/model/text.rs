//! Text every Store can keep. PostgreSQL's `text` and `jsonb` cannot hold the character U+0000,
//! so naxos refuses it wherever it enters — params, definitions, task outputs — with an error
//! naming where it is, rather than let one Store fail later (and a task run again for it).

use std::borrow::Cow;

use serde_json::Value;

/// Where in `value` a string or an object key holds U+0000, as a path like `$.a.b[2]`; `None`
/// when nowhere.
pub fn find_nul(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(key, item)| {
                let len = path.len();
                path.push('.');
                path.push_str(&key.replace('\0', "\\u0000"));
                let found = key.contains('\0') || walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
    let mut path = String::from("$");
    walk(value, &mut path).then_some(path)
}

/// `text` with each U+0000 replaced by U+FFFD, for texts naxos writes itself (error messages).
pub fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// The message for a value that holds U+0000 at `path`.
pub fn nul_message(what: &str, path: &str) -> String {
    format!("{what} holds the character U+0000 at `{path}`, which cannot be stored")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_is_found_in_strings_and_keys_and_named_by_path() {
        assert_eq!(find_nul(&json!({"a": [1, "x"], "b": {"c": true}})), None);
        assert_eq!(find_nul(&json!({"a": [1, "x\u{0}y"]})).as_deref(), Some("$.a[1]"));
        assert_eq!(find_nul(&json!({"a": {"k\u{0}": 1}})).as_deref(), Some("$.a.k\\u0000"));
        assert_eq!(find_nul(&json!("\u{0}")).as_deref(), Some("$"));
        assert_eq!(without_nul("a\u{0}b"), "a\u{FFFD}b");
    }
}

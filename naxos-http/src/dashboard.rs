//! `GET /`: the dashboard, one self-contained page (no CDN).
//!
//! The page itself is open; the data it loads comes from the `/api/` routes, which need the
//! token when one is set. It finds them under the prefix the router is mounted at, which the
//! server writes into the page's `naxos-base` meta tag as it sends it (see [`crate::mount`]).

use axum::response::Html;

use crate::mount::Mount;

/// The page as shipped, with an empty base.
const PAGE: &str = include_str!("../assets/dashboard.html");

/// The tag the base is written into.
const BASE_TAG: &str = r#"<meta name="naxos-base" content="">"#;

/// `GET /` (and `/prefix`, `/prefix/` when nested).
pub(crate) async fn page(Mount(prefix): Mount) -> Html<String> {
    Html(with_base(&prefix))
}

/// The page with `prefix` as the base of its API calls.
fn with_base(prefix: &str) -> String {
    PAGE.replacen(
        BASE_TAG,
        &format!(r#"<meta name="naxos-base" content="{}">"#, attribute(prefix)),
        1,
    )
}

/// `text` escaped for a double-quoted HTML attribute: a prefix may hold what a caller typed
/// (a host's `/{tenant}/naxos`), and must never become markup.
fn attribute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{with_base, BASE_TAG, PAGE};

    #[test]
    fn the_page_has_one_base_tag_and_it_is_filled_in() {
        assert_eq!(PAGE.matches(BASE_TAG).count(), 1);
        assert_eq!(with_base(""), PAGE);
        let page = with_base("/naxos");
        assert!(page.contains(r#"<meta name="naxos-base" content="/naxos">"#));
        assert!(!page.contains(BASE_TAG));
    }

    #[test]
    fn a_prefix_cannot_inject_markup() {
        let page = with_base(r#"/a"><script>alert(1)</script>"#);
        assert!(page.contains(r#"content="/a&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">"#));
        assert!(!page.contains("<script>alert(1)"));
    }
}

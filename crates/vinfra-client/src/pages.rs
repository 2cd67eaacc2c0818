//! Lists in pages (docs/design.md "REST API", "Pages"): the client asks each list for pages of
//! [`PAGE_LIMIT`] items and follows the `Link: <…>; rel="next"` header (RFC 8288) of each
//! answer until there is none, so a list of any length comes whole in answers of bounded size.
//!
//! Pure: the query parameter added to a path, the next page's address read from the header,
//! and the check that it is a path of the same console (the token is never sent elsewhere).

/// Items asked for per page: the most a page may hold.
pub const PAGE_LIMIT: u32 = 1000;

/// `path` with `limit=PAGE_LIMIT` added to its query: the first page of a list.
pub fn first_page(path: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}limit={PAGE_LIMIT}")
}

/// The target of the first link of relation `next` among the values of an answer's `Link`
/// headers, as written (`/api/v1/vms?limit=1000&page_token=…`); `None` when there is none.
pub fn next_link<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    values
        .into_iter()
        .flat_map(links)
        .find(|(_, rels)| rels.iter().any(|r| r.eq_ignore_ascii_case("next")))
        .map(|(target, _)| target)
}

/// Each link of one `Link` header value: its target and its relation types. A link whose
/// syntax is broken ends the reading (what came before it is kept).
fn links(value: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let Some(after) = rest.strip_prefix('<') else {
            return out;
        };
        let Some(end) = after.find('>') else {
            return out;
        };
        let target = after[..end].trim().to_string();
        let (params, next) = split_params(&after[end + 1..]);
        rest = next;
        let rels = params
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("rel"))
            .flat_map(|(_, v)| v.split_whitespace().map(str::to_string))
            .collect();
        out.push((target, rels));
    }
}

/// The `; key=value` parameters after a link's target, up to the `,` that ends the link
/// (`;` and `,` inside quotes do not count; quotes and escapes are taken off the values);
/// returns them and what follows that comma.
fn split_params(s: &str) -> (Vec<(String, String)>, &str) {
    let mut params = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut escaped) = (false, false);
    let mut rest = "";
    for (i, c) in s.char_indices() {
        if escaped {
            current.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => push_param(&mut params, &std::mem::take(&mut current)),
            ',' if !quoted => {
                rest = &s[i + 1..];
                break;
            }
            _ => current.push(c),
        }
    }
    push_param(&mut params, &current);
    (params, rest)
}

/// Adds `key=value` (a parameter without `=` is left out).
fn push_param(params: &mut Vec<(String, String)>, p: &str) {
    if let Some((k, v)) = p.split_once('=') {
        params.push((k.trim().to_string(), v.trim().to_string()));
    }
}

/// The path to ask for a next page named `link` by the console at `base` (no trailing `/`): a
/// path of the API as it is, or a URL on `base` without it. `None` for anything else (another
/// host, another scheme, a relative reference): the client does not follow it.
pub fn same_console(base: &str, link: &str) -> Option<String> {
    let path = if link.starts_with('/') && !link.starts_with("//") {
        link
    } else {
        link.strip_prefix(base).filter(|p| p.starts_with('/'))?
    };
    path.starts_with("/api/").then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_pages_ask_for_the_most_items() {
        assert_eq!(first_page("/api/v1/vms"), "/api/v1/vms?limit=1000");
        assert_eq!(
            first_page("/api/v1/vms?host=h1&state=running"),
            "/api/v1/vms?host=h1&state=running&limit=1000"
        );
    }

    #[test]
    fn the_next_link_is_found_among_others() {
        let next = |v: &[&str]| next_link(v.iter().copied());
        assert_eq!(
            next(&[r#"</api/v1/vms?limit=100&page_token=6162>; rel="next""#]).as_deref(),
            Some("/api/v1/vms?limit=100&page_token=6162")
        );
        // Unquoted, other cases, several relation types, other links first, parameters with
        // commas and semicolons in quotes.
        assert_eq!(
            next(&[r#"</a?x=1,2>; rel=prev; title="a, b; c", < /b >; REL="last Next""#]).as_deref(),
            Some("/b")
        );
        assert_eq!(
            next(&[r#"</a>; rel="prev""#, r#"</c>;rel=next"#]).as_deref(),
            Some("/c")
        );
        assert_eq!(next(&[r#"</a>; rel="prev", </b>; rel="nextish""#]), None);
        assert_eq!(
            next(&[r#"</x>; title="a; rel=next, </z>; rel=next", </y>; rel=prev"#]),
            None
        );
        assert_eq!(next(&[]), None);
        assert_eq!(next(&[""]), None);
        // Broken syntax: nothing past it is read; what came before counts.
        assert_eq!(next(&[r#"/a; rel="next""#]), None);
        assert_eq!(next(&[r#"</a; rel="next""#]), None);
        assert_eq!(
            next(&[r#"</a>; rel="next", garbage"#]).as_deref(),
            Some("/a")
        );
        assert_eq!(
            next(&[r#"</x>; title="quote \" inside, still one", </y>; rel=next"#]).as_deref(),
            Some("/y")
        );
    }

    #[test]
    fn only_this_consoles_api_is_followed() {
        let base = "https://10.0.0.1:7443";
        assert_eq!(
            same_console(base, "/api/v1/vms?page_token=aa").as_deref(),
            Some("/api/v1/vms?page_token=aa")
        );
        assert_eq!(
            same_console(base, "https://10.0.0.1:7443/api/v1/vms?page_token=aa").as_deref(),
            Some("/api/v1/vms?page_token=aa")
        );
        for other in [
            "https://evil.example/api/v1/vms",
            "https://10.0.0.1:74430/api/v1/vms",
            "http://10.0.0.1:7443/api/v1/vms",
            "//evil.example/api/v1/vms",
            "api/v1/vms",
            "/elsewhere",
            "",
        ] {
            assert_eq!(same_console(base, other), None, "{other}");
        }
    }
}

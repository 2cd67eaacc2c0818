//! Pages of the list endpoints: `?limit=N&page_token=T`.
//!
//! Without either parameter a list is answered whole, as before pages existed. With them, the
//! items are ordered by their key (a name; a floating IP's address; a recommendation's id; an
//! event's `seq`, oldest first), at most `limit` are answered, and when more follow, a
//! `Link: <…?limit=N&page_token=T>; rel="next"` header gives the next page. The token is
//! opaque to clients: the key of the page's last item, hex-encoded; the next page starts after
//! it, so items created or deleted meanwhile neither repeat nor shift the pages.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::problem::ApiError;

/// The largest page (and the page size when only `page_token` is given).
pub const MAX_PAGE: u32 = 1000;

/// `?limit=N&page_token=T` on a list endpoint.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many items (1 to 1000); without it and without `page_token`, every item.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Where to go on: the token of the previous answer's `Link: <…>; rel="next"` header.
    pub page_token: Option<String>,
}

/// A checked page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    limit: usize,
    after: Option<String>,
}

impl Page {
    /// The key the page starts after.
    pub fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// At most this many items.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl PageQuery {
    /// The page asked for (`None`: the whole list), or why the query is refused (400).
    pub fn page(&self) -> Result<Option<Page>, ApiError> {
        if self.limit.is_none() && self.page_token.is_none() {
            return Ok(None);
        }
        let limit = self.limit.unwrap_or(MAX_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::Page("limit must be 1 to 1000"));
        }
        let after = match &self.page_token {
            None => None,
            Some(t) => Some(decode(t).ok_or(ApiError::Page(
                "page_token is not a token this API gave out",
            ))?),
        };
        Ok(Some(Page {
            limit: limit as usize,
            after,
        }))
    }
}

fn encode(key: &str) -> String {
    hex::encode(key.as_bytes())
}

fn decode(token: &str) -> Option<String> {
    if token.is_empty() || token.len() > 1024 {
        return None;
    }
    String::from_utf8(hex::decode(token).ok()?).ok()
}

/// The answer to a list request: `items` whole when no page was asked for; else the page
/// after the token, in key order, with a `Link` to the next one when there is more. `path` is
/// the endpoint's, for the link, with the list's own query (filters) if it has one.
///
/// Lists mostly come in key order already (from the console's ordered maps): their keys are
/// checked, not sorted, and the page is cut out where it lies. What the answer does not show
/// is dropped off the request's path.
pub fn answer<T: Serialize + Send + 'static>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    page: Option<Page>,
    path: &str,
) -> Response {
    let Some(page) = page else {
        let resp = json(&items);
        drop_later(items.len(), items);
        return resp;
    };
    let mut keys: Vec<String> = items.iter().map(&key).collect();
    if !keys.is_sorted() {
        let mut keyed: Vec<(String, T)> = keys.into_iter().zip(items.drain(..)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        (keys, items) = keyed.into_iter().unzip();
    }
    let start = match &page.after {
        Some(after) => keys.partition_point(|k| k <= after),
        None => 0,
    };
    let end = keys.len().min(start.saturating_add(page.limit));
    let next = (keys.len() - start > page.limit).then(|| encode(&keys[end - 1]));
    let shown: Vec<T> = items.drain(start..end).collect();
    let mut resp = json(&shown);
    drop_later(keys.len(), (items, keys));
    if let Some(token) = next {
        let sep = if path.contains('?') { '&' } else { '?' };
        let link = format!(
            "<{path}{sep}limit={}&page_token={token}>; rel=\"next\"",
            page.limit
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    resp
}

/// `items` as a JSON array (`application/json`, as [`axum::Json`] answers), encoded into one
/// buffer sized from the first item's encoding (a list's items are alike): not grown and
/// copied again and again on the way to a 4-MiB list.
fn json<T: Serialize>(items: &[T]) -> Response {
    let mut buf = Vec::new();
    if let Some(first) = items.first() {
        let one = serde_json::to_vec(first).map_or(0, |b| b.len());
        buf.reserve(2 + items.len().saturating_mul(one + one / 4 + 1));
    }
    match serde_json::to_writer(&mut buf, items) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            buf,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            e.to_string(),
        )
            .into_response(),
    }
}

/// Items at least this many are dropped on a blocking thread, not on the request's.
const DROP_LATER: usize = 1024;

/// Drops what an answer no longer needs: a large list (thousands of items, each with its
/// strings) on a blocking thread, after the answer is on its way.
fn drop_later<T: Send + 'static>(len: usize, what: T) {
    if len >= DROP_LATER && tokio::runtime::Handle::try_current().is_ok() {
        tokio::task::spawn_blocking(move || drop(what));
    }
}

/// A numeric key that sorts as the number does.
pub fn number_key(n: u64) -> String {
    format!("{n:020}")
}

/// A floating IP's key: its address as a number (sorts as addresses do), or the text.
pub fn address_key(ip: &str) -> String {
    match ip.parse::<std::net::Ipv4Addr>() {
        Ok(a) => number_key(u64::from(u32::from(a))),
        Err(_) => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(limit: Option<u32>, token: Option<&str>) -> Result<Option<Page>, ApiError> {
        PageQuery {
            limit,
            page_token: token.map(str::to_string),
        }
        .page()
    }

    #[test]
    fn bad_pages_are_refused_and_tokens_round_trip() {
        assert!(page(None, None).unwrap().is_none());
        assert!(matches!(page(Some(0), None), Err(ApiError::Page(_))));
        assert!(matches!(page(Some(1001), None), Err(ApiError::Page(_))));
        for bad in ["", "zz", "abc", "ff", &"00".repeat(600)] {
            assert!(
                matches!(page(Some(5), Some(bad)), Err(ApiError::Page(_))),
                "{bad}"
            );
        }
        let p = page(None, Some(&encode("vm-7"))).unwrap().unwrap();
        assert_eq!(p.after.as_deref(), Some("vm-7"));
        assert_eq!(p.limit, MAX_PAGE as usize);
        assert!(address_key("10.0.0.9") < address_key("10.0.0.10"));
    }

    /// The body and `Link` of [`answer`] for `items` keyed by themselves.
    async fn answered(items: Vec<String>, page: Option<Page>) -> (Vec<String>, Option<String>) {
        let resp = answer(items, |s| s.clone(), page, "/x");
        let link = resp
            .headers()
            .get(header::LINK)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (serde_json::from_slice(&body).unwrap(), link)
    }

    #[tokio::test]
    async fn pages_are_cut_in_key_order_whether_or_not_the_list_came_sorted() {
        let sorted: Vec<String> = (0..2000).map(|i| format!("k{i:05}")).collect();
        let mut shuffled = sorted.clone();
        shuffled.reverse();
        shuffled.swap(3, 1500);
        for items in [sorted.clone(), shuffled] {
            // Whole: as given.
            let (all, link) = answered(items.clone(), None).await;
            assert_eq!(all, items);
            assert!(link.is_none());
            // First, middle and last pages: the sorted list's slices, a link while more follow.
            let p = |after: Option<&str>| Page {
                limit: 700,
                after: after.map(str::to_string),
            };
            let (first, link) = answered(items.clone(), Some(p(None))).await;
            assert_eq!(first, sorted[..700]);
            assert_eq!(
                link.as_deref(),
                Some(
                    format!(
                        "</x?limit=700&page_token={}>; rel=\"next\"",
                        encode("k00699")
                    )
                    .as_str()
                )
            );
            let (mid, link) = answered(items.clone(), Some(p(Some("k00699")))).await;
            assert_eq!(mid, sorted[700..1400]);
            assert!(link.is_some());
            let (last, link) = answered(items.clone(), Some(p(Some("k01399")))).await;
            assert_eq!(last, sorted[1400..]);
            assert!(link.is_none());
            let (none, link) = answered(items, Some(p(Some("k99999")))).await;
            assert!(none.is_empty() && link.is_none());
        }
    }
}

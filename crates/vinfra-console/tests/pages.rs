//! Pages of the list endpoints against a real console: without parameters a list is whole
//! (as before pages), with `limit` it comes in pages linked by `Link: <…>; rel="next"` whose
//! tokens go on after the last item even when items are created or deleted between pages, and
//! a bad `limit` or `page_token` is a 400 problem.

mod common;

use common::{assert_problem, start_console, TestConsole};
use serde_json::Value;

/// `GET path`: status, body and the `rel="next"` link's target, if any.
async fn get(c: &TestConsole, path: &str) -> (u16, Value, Option<String>) {
    let r = c
        .client
        .get(format!("{}{path}", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let next = r.headers().get("link").map(|v| {
        let v = v.to_str().unwrap();
        assert!(v.ends_with(">; rel=\"next\""), "{v}");
        v.trim_start_matches('<')
            .trim_end_matches(">; rel=\"next\"")
            .to_string()
    });
    (status, r.json().await.unwrap(), next)
}

fn names(body: &Value) -> Vec<String> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn lists_come_whole_or_in_linked_pages() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    // Created out of name order.
    let made = ["g05", "g01", "g07", "g03", "g02", "g06", "g04"];
    for g in made {
        let r = c
            .call(
                "POST",
                "/api/v1/security-groups",
                Some(&format!(r#"{{"name":"{g}","rules":[]}}"#)),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }

    // No parameters: the whole list, no link (what clients from before pages get).
    let (status, whole, next) = get(&c, "/api/v1/security-groups").await;
    assert_eq!(status, 200);
    assert_eq!(names(&whole).len(), 7);
    assert_eq!(next, None);

    // Pages of 3: 3, 3, 1, in name order, each linking the next.
    let (status, p1, next) = get(&c, "/api/v1/security-groups?limit=3").await;
    assert_eq!(status, 200);
    assert_eq!(names(&p1), ["g01", "g02", "g03"]);
    let next = next.expect("a next page");
    assert!(next.starts_with("/api/v1/security-groups?limit=3&page_token="));

    // Between pages: one not yet listed is deleted, one created before the token's key, one
    // after; the next pages neither repeat nor skip what is still there.
    assert_eq!(
        c.call("DELETE", "/api/v1/security-groups/g05", None)
            .await
            .status,
        204
    );
    for g in ["g00", "g08"] {
        let r = c
            .call(
                "POST",
                "/api/v1/security-groups",
                Some(&format!(r#"{{"name":"{g}","rules":[]}}"#)),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let (_, p2, next) = get(&c, &next).await;
    assert_eq!(names(&p2), ["g04", "g06", "g07"]);
    let (_, p3, next) = get(&c, &next.expect("a third page")).await;
    assert_eq!(names(&p3), ["g08"]);
    assert_eq!(next, None, "the last page links nothing");

    // A page that ends exactly at the end links nothing either.
    let (_, all, next) = get(&c, "/api/v1/security-groups?limit=8").await;
    assert_eq!(names(&all).len(), 8);
    assert_eq!(next, None);

    // Events page by their number, oldest first.
    let (_, events, _) = get(&c, "/api/v1/events").await;
    let seqs: Vec<u64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.len() >= 10, "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let mut paged = Vec::new();
    let mut path = Some("/api/v1/events?limit=4".to_string());
    while let Some(p) = path {
        let (status, body, next) = get(&c, &p).await;
        assert_eq!(status, 200);
        let page: Vec<u64> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert!(page.len() <= 4);
        paged.extend(page);
        path = next;
    }
    assert_eq!(paged, seqs);

    // Bad requests are 400 problems.
    for bad in [
        "/api/v1/security-groups?limit=0",
        "/api/v1/security-groups?limit=1001",
        "/api/v1/security-groups?limit=-1",
        "/api/v1/security-groups?limit=ten",
        "/api/v1/security-groups?page_token=nothex",
        "/api/v1/security-groups?page_token=",
        "/api/v1/vms?limit=2&cursor=x",
        "/api/v1/hosts?page_token=ff",
    ] {
        let r = c.call("GET", bad, None).await;
        assert_problem(&r, 400);
        assert_eq!(r.body["type"], "/problems/invalid-request", "{bad}");
    }
    // Every list endpoint takes them.
    for list in [
        "/api/v1/hosts",
        "/api/v1/vms",
        "/api/v1/tokens",
        "/api/v1/rules",
        "/api/v1/drs/recommendations",
        "/api/v1/networks",
        "/api/v1/routers",
        "/api/v1/floating-ips",
    ] {
        let (status, body, _) = get(&c, &format!("{list}?limit=1")).await;
        assert_eq!(status, 200, "{list}");
        assert!(body.as_array().unwrap().len() <= 1, "{list}");
    }
    c.shutdown().await;
}

#[tokio::test]
async fn vms_are_listed_by_host_state_and_network_and_filtered_pages_keep_the_filter() {
    use common::{vm_json, FakeAgent, GIB};
    use vinfra_types::HostCapacity;
    let host = HostCapacity {
        cores: 8,
        memory_mib: 16 * GIB,
    };
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _a = FakeAgent::join_and_connect(&c, "a", host).await;
    let _b = FakeAgent::join_and_connect(&c, "b", host).await;
    let net = serde_json::json!({"name": "blue", "kind": "overlay", "subnet": "10.80.1.0/24"});
    let r = c
        .call("POST", "/api/v1/networks", Some(&net.to_string()))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // a1, a2 (stopped), a3 (on blue) on a; b1 (on blue) on b.
    for (vm, host, start, blue) in [
        ("a1", "a", true, false),
        ("a2", "a", false, false),
        ("a3", "a", true, true),
        ("b1", "b", true, true),
    ] {
        let mut v: Value = serde_json::from_str(&vm_json(vm, 1, GIB)).unwrap();
        v["host"] = host.into();
        v["start"] = start.into();
        if blue {
            v["nics"] = serde_json::json!([{"network": "blue"}]);
        }
        let r = c.call("POST", "/api/v1/vms", Some(&v.to_string())).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    for (query, want) in [
        ("", vec!["a1", "a2", "a3", "b1"]),
        ("?host=a", vec!["a1", "a2", "a3"]),
        ("?state=stopped", vec!["a2"]),
        ("?host=a&state=running", vec!["a1", "a3"]),
        ("?network=blue", vec!["a3", "b1"]),
        ("?network=blue&host=b", vec!["b1"]),
        ("?host=nohost", vec![]),
    ] {
        let (status, body, _) = get(&c, &format!("/api/v1/vms{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        let mut got = names(&body);
        got.sort();
        assert_eq!(got, want, "{query}");
    }
    // Pages of a filtered list: the link keeps the filter, every VM once.
    let (_, first, next) = get(&c, "/api/v1/vms?host=a&limit=2").await;
    assert_eq!(names(&first), ["a1", "a2"]);
    let next = next.expect("a next page");
    assert!(
        next.starts_with("/api/v1/vms?host=a&limit=2&page_token="),
        "{next}"
    );
    let (_, second, last) = get(&c, &next).await;
    assert_eq!(names(&second), ["a3"]);
    assert_eq!(last, None);
    // Bad filters are 400 problems.
    for bad in ["?state=asleep", "?host=Bad%2F", "?network=", "?color=red"] {
        let r = c.call("GET", &format!("/api/v1/vms{bad}"), None).await;
        assert_problem(&r, 400);
    }
    c.shutdown().await;
}

#[tokio::test]
async fn pages_list_every_vm_exactly_once_while_vms_come_and_go() {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use common::{vm_json, FakeAgent, GIB};
    use vinfra_types::HostCapacity;
    let host = HostCapacity {
        cores: 64,
        memory_mib: 256 * GIB,
    };
    let dir = tempfile::tempdir().unwrap();
    let c = Arc::new(start_console(dir.path(), None, false).await);
    let _a = FakeAgent::join_and_connect(&c, "a", host).await;
    let create = |name: String| {
        let c = c.clone();
        async move {
            let mut v: Value = serde_json::from_str(&vm_json(&name, 1, 64)).unwrap();
            v["start"] = false.into();
            let r = c.call("POST", "/api/v1/vms", Some(&v.to_string())).await;
            assert_eq!(r.status, 201, "{name}: {:?}", r.body);
        }
    };
    // 40 that stay, 20 that are deleted while the pages are read.
    for i in 0..40 {
        create(format!("keep-{i:02}")).await;
    }
    for i in 0..20 {
        create(format!("gone-{i:02}")).await;
    }
    let churn = {
        let c = c.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                let r = c
                    .call("DELETE", &format!("/api/v1/vms/gone-{i:02}"), None)
                    .await;
                assert_eq!(r.status, 204, "{:?}", r.body);
                let mut v: Value =
                    serde_json::from_str(&vm_json(&format!("new-{i:02}"), 1, 64)).unwrap();
                v["start"] = false.into();
                let r = c.call("POST", "/api/v1/vms", Some(&v.to_string())).await;
                assert_eq!(r.status, 201, "{:?}", r.body);
            }
        })
    };
    // Pages of 3, read while the churn runs (a pause between pages lets it interleave).
    let mut seen = Vec::new();
    let mut pages_during_churn = 0;
    let mut path = Some("/api/v1/vms?limit=3".to_string());
    while let Some(p) = path {
        let (status, body, next) = get(&c, &p).await;
        assert_eq!(status, 200, "{body}");
        seen.extend(names(&body));
        if !churn.is_finished() {
            pages_during_churn += 1;
        }
        path = next;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    churn.await.unwrap();
    assert!(
        pages_during_churn >= 2,
        "the pages were read after the churn"
    );
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a VM listed twice: {seen:?}");
    for i in 0..40 {
        let name = format!("keep-{i:02}");
        assert!(unique.contains(&name), "{name} missed: {seen:?}");
    }
    assert!(
        seen.iter()
            .all(|n| n.starts_with("keep-") || n.starts_with("gone-") || n.starts_with("new-")),
        "{seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "pages in name order: {seen:?}"
    );
    let c = Arc::try_unwrap(c).ok().expect("the only holder");
    c.shutdown().await;
}

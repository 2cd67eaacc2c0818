//! The REST API alone, in process, against a stub console: random requests never panic the
//! router, get a problem+json whenever they are refused, and reach the stub (with exactly the
//! command the request means) only when well formed.

mod api_common;

use std::sync::Arc;

use api_common::routes::routes;
use api_common::stub::{check_problem, expected, runtime, send, Stub, TOKEN};
use axum::http::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use vinfra_console::api::MAX_BODY;

/// One random request.
#[derive(Debug, Clone)]
struct Case {
    method: String,
    path: String,
    query: String,
    body: Vec<u8>,
    auth: Option<String>,
}

fn case() -> impl Strategy<Value = Case> {
    let templates: Vec<(&'static str, &'static str)> = routes()
        .iter()
        .map(|r| (r.method, r.path))
        .chain([
            ("GET", "/api/v1/vms/{name}/nope"),
            ("GET", "/api/v2/vms"),
            ("GET", "/api/openapi.json"),
            ("DELETE", "/api/v1/vms/{name}/"),
            ("GET", "/api/v1"),
            ("GET", "/"),
        ])
        .collect();
    let segment = prop_oneof![
        prop::sample::select(vec![
            "web-1", "7", "a", "0", "h1", "start", "a%2Db", "%77eb", "16", "32", "33", "08",
        ])
        .prop_map(str::to_string),
        prop::sample::select(vec![
            "Bad_Name",
            "-x",
            "x-",
            "..",
            "%2e%2e",
            "a%2Fb",
            "a%20b",
            "%ff",
            "%zz",
            "a.b",
            "18446744073709551616",
            "+5",
            "-1",
        ])
        .prop_map(str::to_string),
        "[a-z0-9-]{1,8}",
        "[a-zA-Z0-9._~%-]{0,70}",
    ];
    let any_method = prop::sample::select(vec![
        "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "BREW",
    ]);
    // Mostly the route's own method, sometimes any.
    let templated = (
        prop::sample::select(templates),
        segment,
        any_method.clone(),
        0..4u8,
    )
        .prop_map(|((m, t), s, other, dice)| {
            let method = if dice == 0 { other } else { m };
            (
                method.to_string(),
                t.replace("{name}", &s)
                    .replace("{id}", &s)
                    .replace("{index}", &s)
                    .replace("{network}", &s)
                    .replace("{addr}", "10.9.0.0")
                    .replace("{len}", &s),
            )
        });
    let words = prop::sample::select(vec![
        "api",
        "v1",
        "vms",
        "hosts",
        "rules",
        "drs",
        "networks",
        "settings",
        "x",
        "",
        "start",
        "stop",
        "run",
        "recommendations",
        "1",
        "apply",
        "openapi.json",
        "..",
        "Bad_Name",
        "migration",
        "console",
        "counters",
        "switch",
        "fence",
        "security-groups",
        "nics",
        "routers",
        "interfaces",
        "routes",
        "10.9.0.0",
        "%2F",
    ]);
    let random = (prop::collection::vec(words, 0..7), any_method)
        .prop_map(|(v, m)| (m.to_string(), format!("/{}", v.join("/"))));
    let target = prop_oneof![4 => templated, 1 => random];
    let query = prop::sample::select(vec![
        "",
        "",
        "force=true",
        "force=false",
        "force=yes",
        "bytes=10",
        "bytes=0",
        "bytes=-1",
        "junk=1",
        "force",
        "limit=3",
        "limit=0",
        "limit=1001",
        "limit=x",
        "page_token=766d2d37",
        "limit=2&page_token=766d2d37",
        "page_token=zz",
        "page_token=",
        "limit=2&limit=3",
    ])
    .prop_map(str::to_string);
    let samples: Vec<&'static str> = routes().iter().map(|r| r.sample).collect();
    let body = prop_oneof![
        4 => prop::sample::select(samples).prop_map(|s| s.as_bytes().to_vec()),
        2 => prop::sample::select(vec![
            "", " ", "{", "{}", "[]", "null", "\"x\"", r#"{"unknown":1}"#, r#"{"force":"yes"}"#,
            r#"{"to":"Bad_Name"}"#, r#"{"maintenance":true,"ratios":null}"#,
            r#"{"ha":{"priority":"urgent"}}"#, r#"{"fence_command":null}"#, r#"{"ha":null}"#,
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        2 => prop::collection::vec(any::<u8>(), 0..64),
        1 => Just(vec![b' '; MAX_BODY + 1]),
    ];
    let auth = prop_oneof![
        4 => Just(Some(format!("Bearer {TOKEN}"))),
        1 => Just(Some(format!("bearer  {TOKEN} "))),
        1 => Just(None),
        1 => Just(Some("Bearer wrong".to_string())),
        1 => Just(Some(format!("Basic {TOKEN}"))),
        1 => "[ -~]{0,20}".prop_map(Some),
    ];
    (target, query, body, auth).prop_map(|((method, path), query, body, auth)| Case {
        method,
        path,
        query,
        body,
        auth,
    })
}

async fn check(stub: &Arc<Stub>, c: Case) -> Result<(), TestCaseError> {
    let uri = if c.query.is_empty() {
        c.path.clone()
    } else {
        format!("{}?{}", c.path, c.query)
    };
    let Some(a) = send(stub, &c.method, &uri, c.body.clone(), c.auth.as_deref()).await else {
        // Not a request at all (the URI or a header does not parse): nothing to send.
        return Ok(());
    };
    let calls = stub.take_calls();
    if a.status >= 400 {
        check_problem(&a).map_err(TestCaseError::fail)?;
    }
    let want = expected(&c.method, &c.path, &c.query, &c.body, c.auth.as_deref());
    prop_assert_eq!(
        &calls,
        &want.clone().into_iter().collect::<Vec<_>>(),
        "{:?}",
        a.status
    );
    if want.is_some() {
        prop_assert_eq!(a.status, StatusCode::NO_CONTENT.as_u16());
    } else {
        prop_assert!(
            a.status >= 400 || c.path == "/api/openapi.json",
            "refused requests are problems: {}",
            a.status
        );
    }
    Ok(())
}

#[test]
fn random_requests_never_reach_the_console_unless_well_formed() {
    let rt = runtime();
    let stub = Arc::new(Stub::default());
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case(), |c| rt.block_on(check(&stub, c)))
        .unwrap();
}

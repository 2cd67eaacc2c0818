//! Named API tokens and their roles against a real console: a viewer reads and changes
//! nothing (403), an operator runs the workloads but not the cluster (403), a revoked or
//! expired token is refused (401), the token list never shows a secret, bad token requests are
//! 400 and create nothing, events name the token that made the change, and a cluster from
//! before named tokens keeps its token as the admin token `bootstrap`.

mod common;

use std::time::Duration;

use common::{assert_problem, start_console, FakeAgent, Resp, TestConsole};
use serde_json::Value;
use vinfra_types::HostCapacity;

/// Creates token `name` with `role` (and an expiry) as the admin; returns its secret.
async fn token(c: &TestConsole, name: &str, role: &str, expires_in_s: Option<u64>) -> String {
    let body = match expires_in_s {
        Some(s) => format!(r#"{{"name":"{name}","role":"{role}","expires_in_s":{s}}}"#),
        None => format!(r#"{{"name":"{name}","role":"{role}"}}"#),
    };
    let r = c.call("POST", "/api/v1/tokens", Some(&body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["name"], name);
    assert_eq!(r.body["role"], role);
    r.body["token"].as_str().expect("the secret").to_string()
}

/// A 403 problem naming the forbidden kind.
fn assert_forbidden(r: &Resp) {
    assert_problem(r, 403);
    assert_eq!(r.body["type"], "/problems/forbidden", "{:?}", r.body);
}

/// A 401 problem.
fn assert_refused(r: &Resp) {
    assert_problem(r, 401);
    assert_eq!(r.body["type"], "/problems/unauthorized", "{:?}", r.body);
}

/// The token's row of `GET /api/v1/tokens`.
async fn listed(c: &TestConsole, name: &str) -> Value {
    let r = c.call("GET", "/api/v1/tokens", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no token {name} in {:?}", r.body))
}

const GROUP: &str = r#"{"name":"web","rules":[]}"#;
const NETWORK: &str = r#"{"name":"blue","kind":"overlay","subnet":"10.0.0.0/24"}"#;

#[tokio::test]
async fn viewer_reads_everything_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let viewer = token(&c, "audit", "viewer", None).await;
    let v = Some(viewer.as_str());

    for path in [
        "/api/v1/vms",
        "/api/v1/hosts",
        "/api/v1/settings",
        "/api/v1/events",
        "/api/v1/networks",
        "/api/v1/security-groups",
        "/api/v1/drs",
    ] {
        let r = c.call_with("GET", path, None, v).await;
        assert_eq!(r.status, 200, "viewer GET {path}: {:?}", r.body);
    }
    assert_forbidden(
        &c.call_with("POST", "/api/v1/security-groups", Some(GROUP), v)
            .await,
    );
    assert_forbidden(
        &c.call_with("POST", "/api/v1/networks", Some(NETWORK), v)
            .await,
    );
    // The role check comes before the handler: no 404 tells a viewer what exists.
    assert_forbidden(&c.call_with("DELETE", "/api/v1/vms/nope", None, v).await);
    assert_forbidden(
        &c.call_with("GET", "/api/v1/vms/nope/console", None, v)
            .await,
    );
    assert_forbidden(&c.call_with("GET", "/api/v1/tokens", None, v).await);
    assert_forbidden(
        &c.call_with(
            "POST",
            "/api/v1/tokens",
            Some(r#"{"name":"mine","role":"admin"}"#),
            v,
        )
        .await,
    );
    let r = c.call_with("POST", "/api/v1/token/rotate", None, v).await;
    assert_forbidden(&r);
    assert!(
        r.body["detail"].as_str().unwrap().contains("'audit'"),
        "the detail names the token: {:?}",
        r.body
    );

    // Nothing was created.
    let groups = c.call("GET", "/api/v1/security-groups", None).await;
    assert_eq!(groups.body, serde_json::json!([]));
    let networks = c.call("GET", "/api/v1/networks", None).await;
    assert_eq!(networks.body, serde_json::json!([]));
    assert_eq!(
        c.call("GET", "/api/v1/tokens", None)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2,
        "bootstrap and audit only"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn operator_runs_workloads_but_not_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let operator = token(&c, "ops", "operator", None).await;
    let o = Some(operator.as_str());

    let r = c
        .call_with("POST", "/api/v1/security-groups", Some(GROUP), o)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = c
        .call_with("POST", "/api/v1/networks", Some(NETWORK), o)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = c
        .call_with("POST", "/api/v1/routers", Some(r#"{"name":"r1"}"#), o)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = c
        .call_with("DELETE", "/api/v1/security-groups/web", None, o)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    let settings = c.call("GET", "/api/v1/settings", None).await.body;
    for (method, path, body) in [
        ("PUT", "/api/v1/settings", Some(settings.to_string())),
        ("POST", "/api/v1/join-tokens", None),
        (
            "PATCH",
            "/api/v1/hosts/h1",
            Some(r#"{"maintenance":true}"#.into()),
        ),
        ("DELETE", "/api/v1/hosts/h1", None),
        ("POST", "/api/v1/hosts/h1/fence", None),
        (
            "POST",
            "/api/v1/rules",
            Some(r#"{"name":"r","strength":"must","kind":"affinity","vms":["a","b"]}"#.into()),
        ),
        ("POST", "/api/v1/drs/run", None),
        ("GET", "/api/v1/tokens", None),
        (
            "POST",
            "/api/v1/tokens",
            Some(r#"{"name":"more","role":"admin"}"#.into()),
        ),
        ("DELETE", "/api/v1/tokens/bootstrap", None),
        ("POST", "/api/v1/token/rotate", None),
    ] {
        let r = c.call_with(method, path, body.as_deref(), o).await;
        assert_eq!(r.status, 403, "operator {method} {path}: {:?}", r.body);
        assert_forbidden(&r);
    }
    // The settings did not change, no token was made, bootstrap still works.
    assert_eq!(c.call("GET", "/api/v1/settings", None).await.body, settings);
    assert_eq!(listed(&c, "bootstrap").await["state"], "active");
    c.shutdown().await;
}

#[tokio::test]
async fn revoked_token_is_refused_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let secret = token(&c, "ci", "operator", None).await;
    let t = Some(secret.as_str());
    assert_eq!(c.call_with("GET", "/api/v1/vms", None, t).await.status, 200);

    let r = c.call("DELETE", "/api/v1/tokens/ci", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = c.call_with("GET", "/api/v1/vms", None, t).await;
    assert_refused(&r);
    assert!(r.body["detail"].as_str().unwrap().contains("revoked"));
    let row = listed(&c, "ci").await;
    assert_eq!(row["state"], "revoked");
    assert!(row["revoked_at"].as_u64().is_some());
    // The name is never reused; unknown names are 404.
    assert_problem(
        &c.call(
            "POST",
            "/api/v1/tokens",
            Some(r#"{"name":"ci","role":"viewer"}"#),
        )
        .await,
        409,
    );
    assert_problem(&c.call("DELETE", "/api/v1/tokens/nope", None).await, 404);
    // The last active admin token cannot be revoked.
    assert_problem(
        &c.call("DELETE", "/api/v1/tokens/bootstrap", None).await,
        409,
    );
    assert_eq!(c.call("GET", "/api/v1/vms", None).await.status, 200);

    // Revocation survives a restart (the mirror is loaded from the store).
    let admin = c.token.clone();
    c.shutdown().await;
    let c = start_console(dir.path(), Some(admin), false).await;
    assert_refused(&c.call_with("GET", "/api/v1/vms", None, t).await);
    assert_eq!(c.call("GET", "/api/v1/vms", None).await.status, 200);
    c.shutdown().await;
}

#[tokio::test]
async fn expired_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let secret = token(&c, "short", "viewer", Some(2)).await;
    let t = Some(secret.as_str());
    // Expiry is in whole seconds from the creation's second: at least one second is left.
    assert_eq!(c.call_with("GET", "/api/v1/vms", None, t).await.status, 200);
    let row = listed(&c, "short").await;
    assert_eq!(row["state"], "active");
    let expires_at = row["expires_at"].as_u64().expect("an expiry");
    assert!(row["created_at"].as_u64().unwrap() + 2 == expires_at);

    tokio::time::sleep(Duration::from_millis(3100)).await;
    let r = c.call_with("GET", "/api/v1/vms", None, t).await;
    assert_refused(&r);
    assert!(r.body["detail"].as_str().unwrap().contains("expired"));
    assert_eq!(listed(&c, "short").await["state"], "expired");
    c.shutdown().await;
}

#[tokio::test]
async fn tokens_are_listed_without_secrets_and_bad_requests_create_none() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let secret = token(&c, "ci", "viewer", Some(3600)).await;
    let hash = vinfra_proto::pki::token_hash(&secret);
    let r = c.call("GET", "/api/v1/tokens", None).await;
    let text = r.body.to_string();
    for hidden in [
        &secret,
        &hash,
        &c.token,
        &vinfra_proto::pki::token_hash(&c.token),
    ] {
        assert!(!text.contains(hidden.as_str()), "listed: {text}");
    }
    assert_eq!(listed(&c, "bootstrap").await["role"], "admin");

    for body in [
        r#"{"name":"Bad_Name","role":"viewer"}"#,
        r#"{"name":"x","role":"root"}"#,
        r#"{"name":"x","role":"viewer","expires_in_s":0}"#,
        r#"{"name":"x","role":"viewer","expires_in_s":999999999999}"#,
        r#"{"name":"x","role":"viewer","secret":"mine"}"#,
        r#"{"role":"viewer"}"#,
    ] {
        let r = c.call("POST", "/api/v1/tokens", Some(body)).await;
        assert_problem(&r, 400);
    }
    assert_eq!(
        c.call("GET", "/api/v1/tokens", None)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Rotation gives the asking token a new secret: same name and role, the old one refused.
    let r = c.call("POST", "/api/v1/token/rotate", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let new = r.body["token"].as_str().unwrap().to_string();
    assert_refused(&c.call("GET", "/api/v1/vms", None).await);
    let r = c.call_with("GET", "/api/v1/tokens", None, Some(&new)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    c.shutdown().await;
}

/// The events of `object`, as `(kind of actor, name of actor, message)`.
async fn actors_of(c: &TestConsole, object: &str) -> Vec<(String, String, String)> {
    let r = c.call("GET", "/api/v1/events", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["object"] == object)
        .map(|e| {
            (
                e["actor"]["kind"].as_str().unwrap_or("-").to_string(),
                e["actor"]["name"].as_str().unwrap_or("-").to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn events_name_the_token_that_made_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, false).await;
    let alice = token(&c, "alice", "operator", None).await;
    let bob = token(&c, "bob", "operator", None).await;

    let r = c
        .call_with("POST", "/api/v1/networks", Some(NETWORK), Some(&alice))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = c
        .call_with("DELETE", "/api/v1/networks/blue", None, Some(&bob))
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    let blue = actors_of(&c, "blue").await;
    assert_eq!(blue.len(), 2, "{blue:?}");
    assert_eq!((blue[0].0.as_str(), blue[0].1.as_str()), ("token", "alice"));
    assert_eq!((blue[1].0.as_str(), blue[1].1.as_str()), ("token", "bob"));
    assert_eq!(blue[1].2, "deleted");
    // The tokens' own events name the admin token that made them.
    let made = actors_of(&c, "alice").await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(
        (made[0].0.as_str(), made[0].1.as_str()),
        ("token", "bootstrap")
    );
    assert!(made[0].2.contains("role operator"), "{made:?}");

    // What the console does on its own names the part of it that did it: a host's join is the
    // agent endpoint's.
    let _agent = FakeAgent::join_and_connect(
        &c,
        "h1",
        HostCapacity {
            cores: 4,
            memory_mib: 8192,
        },
    )
    .await;
    let h1 = actors_of(&c, "h1").await;
    assert!(
        h1.iter().any(|(kind, name, m)| kind == "controller"
            && name == "agents"
            && m.contains("joined")),
        "{h1:?}"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn token_of_a_cluster_from_before_named_tokens_stays_admin() {
    let dir = tempfile::tempdir().unwrap();
    let old = "vinfra_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";
    {
        let store = vinfra_store::SqliteStore::open(&dir.path().join("console.db")).unwrap();
        let record = format!(r#"{{"hash":"{}"}}"#, vinfra_proto::pki::token_hash(old));
        vinfra_store::Store::put(&store, "/vinfra/auth/api-token", record.as_bytes(), 0).unwrap();
    }
    let c = start_console(dir.path(), Some(old.to_string()), false).await;
    assert!(c.running.api_token.is_none(), "no new token is made");
    let row = listed(&c, "bootstrap").await;
    assert_eq!(row["role"], "admin");
    assert_eq!(row["state"], "active");
    assert!(row.get("expires_at").is_none());
    // The old secret does what an admin does.
    token(&c, "ops", "operator", None).await;
    c.shutdown().await;

    // Moved once: a second start finds it where it now lives.
    let c = start_console(dir.path(), Some(old.to_string()), false).await;
    assert!(c.running.api_token.is_none());
    assert_eq!(c.call("GET", "/api/v1/tokens", None).await.status, 200);
    c.shutdown().await;
}

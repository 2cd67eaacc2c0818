//! Test harness: a console on 127.0.0.1 (real store, real TLS) and a fake agent that speaks the real
//! protocol over real mutual TLS, with an in-memory VM table instead of QEMU.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use vinfra_console::{ConsoleConfig, RunningConsole};
use vinfra_proto::pki;

pub mod browser;
mod fake_agent;
mod fake_counters;
pub mod network;

pub use fake_agent::*;
#[allow(unused_imports)]
pub use fake_counters::*;

pub const GIB: u64 = 1024;

pub struct TestConsole {
    pub running: RunningConsole,
    pub client: reqwest::Client,
    pub base: String,
    pub token: String,
}

pub async fn start_console(dir: &Path, token: Option<String>, tls: bool) -> TestConsole {
    start_console_with(dir, token, tls, |_| {}).await
}

/// Like [`start_console`], with `tune` applied to the configuration first.
pub async fn start_console_with(
    dir: &Path,
    token: Option<String>,
    tls: bool,
    tune: impl FnOnce(&mut ConsoleConfig),
) -> TestConsole {
    let mut config = ConsoleConfig::new(dir.to_path_buf());
    tune(&mut config);
    config.api_listen = "127.0.0.1:0".parse().unwrap();
    config.agent_listen = "127.0.0.1:0".parse().unwrap();
    config.tls = tls;
    config.token_file = Some(dir.join("token"));
    let running = vinfra_console::start(config).await.expect("console starts");
    let token = running.api_token.clone().or(token).expect("a token");
    // The client trusts only the cluster CA (rustls with ring, configured by vinfra-proto).
    let client_tls = pki::client_config(&running.ca_pem, None).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured((*client_tls).clone())
        .build()
        .unwrap();
    let scheme = if tls { "https" } else { "http" };
    let base = format!("{scheme}://127.0.0.1:{}", running.api_addr.port());
    TestConsole {
        running,
        client,
        base,
        token,
    }
}

pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl TestConsole {
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        self.call_with(method, path, body, Some(&self.token)).await
    }

    /// [`Self::call_raw_with`], a task followed to its end and answered as the request was
    /// before tasks: its result with the status the operation had (201 for a create, 204 for
    /// a delete, 200 otherwise), or its error as a problem; a migration (or a recommendation
    /// applied) is not followed: 202 with its first progress, as before; a migration's cancel
    /// (`DELETE /vms/{name}/migration`) is followed to the migration's end: 200 with its last
    /// progress, as before.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Resp {
        let r = self.call_raw_with(method, path, body, token).await;
        if r.status != 202 || r.body.get("kind").is_none() {
            return r;
        }
        let kind = r.body["kind"].as_str().unwrap_or_default().to_string();
        if method == "DELETE" && path.ends_with("/migration") {
            self.wait_task(r.body["id"].as_u64().unwrap(), token).await;
            let p = self.call_raw_with("GET", path, None, token).await;
            return Resp { status: 200, ..p };
        }
        if kind == "vm_migrate" || kind == "recommendation_apply" {
            let vm = if kind == "vm_migrate" {
                r.body["target"].as_str().unwrap_or_default().to_string()
            } else {
                task_vm(&r.body)
            };
            let p = self
                .call_raw_with("GET", &format!("/api/v1/vms/{vm}/migration"), None, token)
                .await;
            return Resp { status: 202, ..p };
        }
        let task = self.wait_task(r.body["id"].as_u64().unwrap(), token).await;
        match task["state"].as_str() {
            Some("succeeded") => Resp {
                status: match kind.as_str() {
                    "vm_create" => 201,
                    "vm_delete" => 204,
                    _ => 200,
                },
                content_type: "application/json".into(),
                body: task.get("result").cloned().unwrap_or(Value::Null),
            },
            _ => Resp {
                status: task["error"]["status"].as_u64().unwrap_or(500) as u16,
                content_type: "application/problem+json".into(),
                body: task["error"].clone(),
            },
        }
    }

    /// Follows task `id` to its end (long polls, with `token` or the console's); its last JSON.
    pub async fn wait_task(&self, id: u64, token: Option<&str>) -> Value {
        let token = Some(token.unwrap_or(&self.token));
        for _ in 0..20 {
            let t = self
                .call_raw_with("GET", &format!("/api/v1/tasks/{id}?wait_s=10"), None, token)
                .await;
            assert_eq!(t.status, 200, "task {id}: {:?}", t.body);
            if ["succeeded", "failed", "cancelled"]
                .contains(&t.body["state"].as_str().unwrap_or(""))
            {
                return t.body;
            }
        }
        panic!("task {id} did not end within 200 s");
    }

    /// One request as it is answered (a task is not followed).
    pub async fn call_raw(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        self.call_raw_with(method, path, body, Some(&self.token))
            .await
    }

    /// One request with `token`, as it is answered.
    pub async fn call_raw_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp {
            status,
            content_type,
            body,
        }
    }

    pub async fn join_token(&self) -> String {
        let r = self.call("POST", "/api/v1/join-tokens", None).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["token"].as_str().unwrap().to_string()
    }

    /// Waits until the host has the given status.
    pub async fn wait_host_status(&self, host: &str, status: &str) {
        for _ in 0..100 {
            let r = self
                .call("GET", &format!("/api/v1/hosts/{host}"), None)
                .await;
            if r.status == 200 && r.body["status"] == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("host {host} never became {status}");
    }

    pub async fn shutdown(self) {
        self.running.shutdown().await.unwrap();
    }
}

/// The VM a recommendation's task migrates (its message: `migrating VM 'x' from a to b`).
pub fn task_vm(task: &Value) -> String {
    task["message"]
        .as_str()
        .and_then(|m| m.split('\'').nth(1))
        .unwrap_or_default()
        .to_string()
}

/// A problem+json response with this status.
pub fn assert_problem(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "body: {:?}", r.body);
    assert_eq!(
        r.content_type, "application/problem+json",
        "body: {:?}",
        r.body
    );
    assert_eq!(r.body["status"], status);
    assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

/// Waits until VM `vm`'s migration ends (completed, failed or cancelled); returns its progress.
pub async fn wait_migration(c: &TestConsole, vm: &str) -> serde_json::Value {
    for _ in 0..200 {
        let r = c
            .call("GET", &format!("/api/v1/vms/{vm}/migration"), None)
            .await;
        if r.status == 200
            && ["completed", "failed", "cancelled"]
                .contains(&r.body["phase"].as_str().unwrap_or(""))
        {
            // The record is final; wait for the task to release the VM.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("migration of {vm} never finished");
}

pub fn vm_json(name: &str, vcpus: u32, memory_mib: u64) -> String {
    serde_json::json!({
        "name": name, "vcpus": vcpus, "memory_mib": memory_mib,
        "boot": {"kind": "kernel", "kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": "console=ttyS0"},
        "disks": [{"name": "root", "size_gib": 1}]
    })
    .to_string()
}

/// Creates VM `name` (1 vCPU, `memory_mib`) on host `host` through `POST /vms`, asserting it is
/// created: the VM's record.
pub async fn create_vm_on(c: &TestConsole, name: &str, host: &str, memory_mib: u64) -> Value {
    let mut body: Value = serde_json::from_str(&vm_json(name, 1, memory_mib)).unwrap();
    body["host"] = Value::from(host);
    let r = c.call("POST", "/api/v1/vms", Some(&body.to_string())).await;
    assert_eq!(r.status, 201, "create {name} on {host}: {:?}", r.body);
    r.body
}

/// `PUT /settings` with ratios 4 (CPU) and 1 (memory) and `balancing`, asserting it is taken.
pub async fn put_balancing(c: &TestConsole, balancing: Value) {
    let body = serde_json::json!({"ratios": {"cpu": 4.0, "memory": 1.0}, "balancing": balancing});
    let r = c
        .call("PUT", "/api/v1/settings", Some(&body.to_string()))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// The incarnation of the leases [`write_lease`] writes.
pub const LEASE_INCARNATION: u64 = 7;

/// Writes `host`'s lease in `datastore` as its guard would (a temporary file renamed over it),
/// incarnation [`LEASE_INCARNATION`], counter `counter`.
#[allow(dead_code)]
pub fn write_lease(datastore: &Path, host: &str, counter: u64) {
    use vinfra_ha::{lease::LEASE_VERSION, Lease, LeaseState};
    let dir = datastore.join("ha").join("hosts");
    std::fs::create_dir_all(&dir).unwrap();
    let lease = Lease {
        version: LEASE_VERSION,
        host: host.into(),
        incarnation: LEASE_INCARNATION,
        counter,
        state: LeaseState::Live,
        agent_absent_ms: None,
        written_unix_ms: 0,
    };
    let tmp = dir.join(format!("{host}.lease.tmp"));
    std::fs::write(&tmp, lease.to_bytes()).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{host}.lease"))).unwrap();
}

/// A console reading host leases from `datastore`.
#[allow(dead_code)]
pub async fn start_ha_console(dir: &Path, datastore: &Path) -> TestConsole {
    let datastore = datastore.to_path_buf();
    start_console_with(dir, None, true, move |cfg| {
        cfg.datastore = Some(datastore);
    })
    .await
}

/// Waits until `agent`'s last switch configuration satisfies `ok`.
pub async fn wait_config(
    agent: &FakeAgent,
    what: &str,
    ok: impl Fn(&vinfra_proto::HostSwitchConfig) -> bool,
) -> vinfra_proto::HostSwitchConfig {
    for _ in 0..200 {
        if let Some(cfg) = agent.switch_config() {
            if ok(&cfg) {
                return cfg;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "{}: never got a switch configuration with {what}; last: {:?}",
        agent.host,
        agent.switch_config()
    );
}

//! The serial console in the web console and the API, against a real console and a fake agent
//! (whose console log is `login: ` 100 times, then what was typed): the VM's page links to the
//! console's page, which holds the terminal (`#serial-console`, `data-state`) and the scripts
//! with a policy that allows xterm.js's inline styles only; the WebSocket with the session's
//! cookie streams the log and types what is sent; one from another site, or without a session,
//! is refused; a viewer may not open it; a stopped VM says it takes no input; the API reads
//! from an offset and types (`POST …/console/input`), with bad input refused.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{start_console, vm_json, FakeAgent, TestConsole};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use vinfra_proto::pki;
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 16,
    memory_mib: 64 * 1024,
};

type Ws = WebSocketStream<TlsStream<TcpStream>>;

async fn console_with_vm() -> (tempfile::TempDir, TestConsole, FakeAgent) {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("web-1", 2, 1024)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    (dir, c, agent)
}

/// A client of the console's web pages, without redirects.
fn web_client(c: &TestConsole) -> reqwest::Client {
    let tls = pki::client_config(&c.running.ca_pem, None).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `POST /login` with `token`: the session cookie (`name=value`).
async fn login(c: &TestConsole, token: &str) -> String {
    let body: String = token
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let resp = web_client(c)
        .post(format!("{}/login", c.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={body}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

/// `GET path` with `cookie`: status, headers, body.
async fn get(
    c: &TestConsole,
    path: &str,
    cookie: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = web_client(c)
        .get(format!("{}{path}", c.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// Opens VM `vm`'s console WebSocket with `cookie` from a page of `origin`; the refusal's
/// words otherwise.
async fn ws_connect(c: &TestConsole, vm: &str, cookie: &str, origin: &str) -> Result<Ws, String> {
    let authority = c.base.trim_start_matches("https://").to_string();
    let mut req = format!("wss://{authority}/vms/{vm}/console/ws")
        .into_client_request()
        .unwrap();
    if !cookie.is_empty() {
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
    }
    req.headers_mut().insert("origin", origin.parse().unwrap());
    let config = pki::client_config(&c.running.ca_pem, None).unwrap();
    let host = authority.rsplit_once(':').unwrap().0.to_string();
    let name = rustls_pki_types::ServerName::try_from(host).unwrap();
    let tcp = TcpStream::connect(&authority).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(&config))
        .connect(name, tcp)
        .await
        .unwrap();
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(e) => Err(e.to_string()),
    }
}

/// The socket's messages until one satisfies `done`, within 10 s: all of them.
async fn until(ws: &mut Ws, done: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no such message within 10 s: {got:?}"));
        let Some(Ok(Message::Text(text))) = next else {
            panic!("the socket ended: {next:?} after {got:?}");
        };
        let m: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        let stop = done(&m);
        got.push(m);
        if stop {
            return got;
        }
    }
}

#[tokio::test]
async fn the_console_page_and_its_socket_stream_and_type() {
    let (_dir, c, _agent) = console_with_vm().await;
    let cookie = login(&c, &c.token).await;

    let (status, _, vm_page) = get(&c, "/vms/web-1", &cookie).await;
    assert_eq!(status, 200);
    assert!(
        vm_page.contains(r#"href="/vms/web-1/console""#),
        "{vm_page}"
    );
    let (status, headers, page) = get(&c, "/vms/web-1/console", &cookie).await;
    assert_eq!(status, 200, "{page}");
    for part in [
        r#"id="serial-console""#,
        r#"data-state="closed""#,
        r#"src="/assets/xterm/xterm.js""#,
        r#"src="/assets/console.js""#,
        r#"href="/assets/xterm/xterm.css""#,
    ] {
        assert!(page.contains(part), "{part} in {page}");
    }
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("style-src 'self' 'unsafe-inline'"), "{csp}");
    // Other pages keep the strict policy.
    let (_, headers, _) = get(&c, "/vms/web-1", &cookie).await;
    let strict = headers["content-security-policy"].to_str().unwrap();
    assert!(strict.contains("style-src 'self';"), "{strict}");
    for asset in [
        "/assets/xterm/xterm.js",
        "/assets/xterm/xterm.css",
        "/assets/console.js",
    ] {
        let (status, _, body) = get(&c, asset, &cookie).await;
        assert_eq!(status, 200, "{asset}");
        assert!(body.len() > 100, "{asset}");
    }

    // Another site's page, or no session: refused.
    let refused = ws_connect(&c, "web-1", &cookie, "https://evil.example")
        .await
        .expect_err("cross-site");
    assert!(refused.contains("403"), "{refused}");
    let refused = ws_connect(&c, "web-1", "", &c.base)
        .await
        .expect_err("no session");
    assert!(refused.contains("303"), "{refused}");
    let missing = ws_connect(&c, "nope", &cookie, &c.base)
        .await
        .expect_err("no such VM");
    assert!(missing.contains("404"), "{missing}");

    let mut ws = ws_connect(&c, "web-1", &cookie, &c.base).await.unwrap();
    let got = until(&mut ws, |m| m["type"] == "status").await;
    assert!(
        got.iter()
            .any(|m| m["type"] == "output" && m["text"].as_str().unwrap().contains("login: ")),
        "{got:?}"
    );
    assert_eq!(got.last().unwrap()["input"], true, "{got:?}");
    ws.send(Message::Text("hello\r".into())).await.unwrap();
    let got = until(&mut ws, |m| m["type"] == "output").await;
    // Only what is new since: the log's end, not its beginning again.
    assert_eq!(got.last().unwrap()["text"], "hello\r", "{got:?}");

    // Stopped: no input, in words, and a keystroke refused.
    let r = c.call("POST", "/api/v1/vms/web-1/stop", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let got = until(&mut ws, |m| m["type"] == "status").await;
    let status = got.last().unwrap();
    assert_eq!(status["input"], false);
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("'web-1' is stopped"), "{message}");
    ws.send(Message::Text("x".into())).await.unwrap();
    let got = until(&mut ws, |m| m["type"] == "error").await;
    let error = got.last().unwrap()["message"].as_str().unwrap();
    assert!(
        error.contains("only running VMs take serial console input"),
        "{error}"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn a_viewer_may_not_open_the_console() {
    let (_dir, c, _agent) = console_with_vm().await;
    let r = c
        .call(
            "POST",
            "/api/v1/tokens",
            Some(r#"{"name":"audit","role":"viewer"}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let cookie = login(&c, r.body["token"].as_str().unwrap()).await;
    let (status, _, vm_page) = get(&c, "/vms/web-1", &cookie).await;
    assert_eq!(status, 200);
    assert!(!vm_page.contains("/vms/web-1/console"), "{vm_page}");
    let (status, _, page) = get(&c, "/vms/web-1/console", &cookie).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("needs role operator"), "{page}");
    let refused = ws_connect(&c, "web-1", &cookie, &c.base)
        .await
        .expect_err("a viewer's socket");
    assert!(refused.contains("403"), "{refused}");
    c.shutdown().await;
}

#[tokio::test]
async fn the_api_reads_from_an_offset_and_types() {
    let (_dir, c, _agent) = console_with_vm().await;
    let tail = c.call("GET", "/api/v1/vms/web-1/console", None).await;
    assert_eq!(tail.status, 200, "{:?}", tail.body);
    assert_eq!(tail.body["host"], "h1");
    assert_eq!(tail.body["input"], true);
    let end = tail.body["end"].as_u64().unwrap();
    assert_eq!(end, 700);
    let r = c
        .call(
            "POST",
            "/api/v1/vms/web-1/console/input",
            Some(r#"{"text":"ls\r"}"#),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let next = c
        .call(
            "GET",
            &format!("/api/v1/vms/web-1/console?from={end}"),
            None,
        )
        .await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    assert_eq!(next.body["text"], "ls\r");
    assert_eq!(next.body["start"], end);
    assert_eq!(next.body["end"], end + 3);
    // Past the end (a rotated log): the tail.
    let past = c
        .call("GET", "/api/v1/vms/web-1/console?from=99999&bytes=3", None)
        .await;
    assert_eq!(past.body["text"], "ls\r", "{:?}", past.body);

    for bad in [r#"{"text":""}"#, r#"{"text":"a","more":1}"#, "{}"] {
        let r = c
            .call("POST", "/api/v1/vms/web-1/console/input", Some(bad))
            .await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }
    let long = serde_json::json!({ "text": "a".repeat(4097) }).to_string();
    let r = c
        .call("POST", "/api/v1/vms/web-1/console/input", Some(&long))
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    let r = c.call("POST", "/api/v1/vms/web-1/stop", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = c
        .call(
            "POST",
            "/api/v1/vms/web-1/console/input",
            Some(r#"{"text":"x"}"#),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("only running VMs take serial console input"),
        "{:?}",
        r.body
    );
    c.shutdown().await;
}

/// A console with nothing new to show keeps its socket: the server pings every 5 s, within the
/// listener's idle close (6 s here), which would otherwise end a quiet connection.
#[tokio::test]
async fn a_quiet_console_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::start_console_with(dir.path(), None, true, |cfg| {
        cfg.api_limits.header_timeout = Duration::from_secs(6);
    })
    .await;
    let _agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("quiet-1", 1, 512)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let cookie = login(&c, &c.token).await;
    let mut ws = ws_connect(&c, "quiet-1", &cookie, &c.base)
        .await
        .expect("the socket opens");
    let started = tokio::time::Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_secs(14) {
        match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Text(_) | Message::Pong(_)))) => {}
            other => panic!("the socket ended after {:?}: {other:?}", started.elapsed()),
        }
    }
    assert!(pings >= 2, "{pings} pings in 14 s");
    c.shutdown().await;
}

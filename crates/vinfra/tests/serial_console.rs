//! The serial console live, with real QEMU in the lab: read from an offset through the API
//! (each byte once: the guest's counter lines come in order, none twice) and typed on through
//! `POST …/console/input` (the guest answers a typed line with `VINFRA-TYPED <line>`); the
//! web console's WebSocket (`/vms/{name}/console/ws`, with the session cookie of `POST /login`)
//! shows the counter going on and types what is sent; a WebSocket from another site is
//! refused (403); a stopped VM says why it takes no input, over the socket and the API (409).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{api, boot_guest, can_run_labs, start_lab};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use vinfra_lab::ApiAccess;
use vinfra_types::api::StopVmRequest;

/// How long a line typed takes at most to be answered (TCG guests are slow).
const ANSWER: Duration = Duration::from_secs(30);

/// The numbers of the `VINFRA-COUNTER n …` lines of `text`, in order.
fn counters(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            let rest = &l[l.find("VINFRA-COUNTER ")? + "VINFRA-COUNTER ".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// The console read from `from` through the API until `done` holds for what was read since;
/// the text read and the offset it ends at.
fn read_until(
    client: &vinfra_client::Client,
    name: &str,
    mut from: u64,
    done: impl Fn(&str) -> bool,
) -> (String, u64) {
    let deadline = Instant::now() + ANSWER;
    let mut text = String::new();
    loop {
        let log = client.console_from(name, Some(from)).expect("console read");
        assert_eq!(log.start, from, "the read starts where the last one ended");
        text.push_str(&log.text);
        from = log.end;
        if done(&text) {
            return (text, from);
        }
        assert!(
            Instant::now() < deadline,
            "console of {name} within {ANSWER:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn serial_console_live_over_the_api_and_the_web_socket() {
    if !can_run_labs() {
        return;
    }
    let lab = start_lab("serial", 1);
    boot_guest(&lab, "s1", 256, None);
    let client = api(&lab);

    // Read by offset: the counter goes on, each line once, in order.
    let tail = client.console_from("s1", None).expect("console tail");
    assert!(tail.input, "a running VM's console takes input: {tail:?}");
    assert!(!tail.host.is_empty() && tail.end >= tail.start);
    let (text, end) = read_until(&client, "s1", tail.end, |t| counters(t).len() >= 4);
    let seen = counters(&text);
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "counter lines in order, none twice: {seen:?}"
    );

    // Typed through the API: the guest answers the line.
    client
        .console_input("s1", "hello api\r")
        .expect("console input");
    let (text, end) = read_until(&client, "s1", end, |t| t.contains("VINFRA-TYPED hello api"));
    assert!(!text.contains("VINFRA-TYPED hello ws"));
    let last = *seen.iter().chain(counters(&text).iter()).max().unwrap();

    let access = lab.api_access().expect("API access");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cookie = login(&access).await;
        // Another site's page may not open it.
        let refused = ws_connect(&access, "s1", &cookie, "https://evil.example")
            .await
            .expect_err("a cross-site WebSocket is refused");
        assert!(refused.contains("403"), "{refused}");
        let mut ws = ws_connect(&access, "s1", &cookie, &access.url)
            .await
            .expect("WebSocket of the console");
        // The counter goes on through it (past what the API read), and typing works.
        let got = until(&mut ws, false, |out, statuses| {
            !statuses.is_empty() && counters(out).iter().any(|&n| n > last + 2)
        })
        .await;
        assert!(got.statuses.iter().any(|s| s["input"] == true), "{got:?}");
        // What is typed reaches the guest.
        ws.send(Message::Text("hello ws\r".into())).await.unwrap();
        until(&mut ws, false, |out, _| {
            out.contains("VINFRA-TYPED hello ws")
        })
        .await;

        // Stopped: the socket says the VM takes no input, and a keystroke is refused.
        let stop = StopVmRequest {
            force: true,
            timeout_s: None,
        };
        tokio::task::block_in_place(|| client.stop_vm("s1", &stop)).expect("stop");
        let got = until(&mut ws, false, |_, statuses| {
            statuses.iter().any(|s| s["input"] == false)
        })
        .await;
        let status = got.statuses.iter().find(|s| s["input"] == false).unwrap();
        let message = status["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("'s1' is stopped") && message.contains("no input"),
            "{message}"
        );
        ws.send(Message::Text("x".into())).await.unwrap();
        let got = until(&mut ws, true, |_, _| false).await.errors.join("; ");
        assert!(
            got.contains("only running VMs take serial console input"),
            "{got}"
        );
    });
    let refused = client
        .console_input("s1", "x")
        .expect_err("a stopped VM takes no input");
    let words = vinfra_types::error::chain(&refused);
    assert!(
        words.contains("409") || words.contains("stopped"),
        "{words}"
    );
    // What it printed stays readable.
    let (text, _) = read_until(&client, "s1", 0, |t| t.contains("VINFRA-TYPED hello ws"));
    assert!(text.contains("VINFRA-TYPED hello api"));
    let _ = end;
}

type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// What a WebSocket sent: the output text and the status messages.
#[derive(Debug, Default)]
struct Got {
    output: String,
    statuses: Vec<serde_json::Value>,
    errors: Vec<String>,
}

/// Reads the socket until `done(output, statuses)`, or with `on_error` until an error
/// message, within [`ANSWER`].
async fn until(
    ws: &mut Ws,
    on_error: bool,
    done: impl Fn(&str, &[serde_json::Value]) -> bool,
) -> Got {
    let mut got = Got::default();
    let deadline = tokio::time::Instant::now() + ANSWER;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("within {ANSWER:?}: {got:?}"));
        let Some(Ok(Message::Text(text))) = next else {
            panic!("the socket ended: {next:?} after {got:?}");
        };
        let m: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        match m["type"].as_str() {
            Some("output") => got.output.push_str(m["text"].as_str().unwrap()),
            Some("status") => got.statuses.push(m.clone()),
            Some("error") => got.errors.push(m["message"].as_str().unwrap().into()),
            other => panic!("unknown message type {other:?}: {m}"),
        }
        if (on_error && !got.errors.is_empty()) || done(&got.output, &got.statuses) {
            return got;
        }
    }
}

/// A TLS connection to the lab's console.
async fn tls(access: &ApiAccess) -> TlsStream<TcpStream> {
    let authority = access.url.trim_start_matches("https://").to_string();
    let host = authority
        .rsplit_once(':')
        .map_or(authority.as_str(), |(h, _)| h);
    let ca = String::from_utf8(access.ca_pem.clone()).unwrap();
    let config = vinfra_proto::pki::client_config(&ca, None).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config));
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).unwrap();
    let tcp = TcpStream::connect(&authority).await.unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// `POST /login` with the lab's token: the session cookie (`name=value`).
async fn login(access: &ApiAccess) -> String {
    let authority = access.url.trim_start_matches("https://");
    let body: String = format!("token={}", access.token)
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'=' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut s = tls(access).await;
    let req = format!(
        "POST /login HTTP/1.1\r\nHost: {authority}\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp).await;
    let resp = String::from_utf8_lossy(&resp);
    resp.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie")
                .then(|| v.trim().split(';').next().unwrap_or_default().to_string())
        })
        .filter(|c| !c.ends_with('='))
        .unwrap_or_else(|| panic!("no session cookie in {resp}"))
}

/// Opens the console's WebSocket of VM `name` with `cookie` from a page of `origin`; the
/// refusal's words otherwise.
async fn ws_connect(
    access: &ApiAccess,
    name: &str,
    cookie: &str,
    origin: &str,
) -> Result<Ws, String> {
    let authority = access.url.trim_start_matches("https://");
    let mut req = format!("wss://{authority}/vms/{name}/console/ws")
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("cookie", cookie.parse().unwrap());
    h.insert("origin", origin.parse().unwrap());
    let stream = tls(access).await;
    match tokio_tungstenite::client_async(req, stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(e) => Err(e.to_string()),
    }
}

//! The REST API's limits against a real console over its real TLS listener: slow clients
//! (slowloris: connections that never finish their TLS handshake, their request head or their
//! body; HTTP/2 connections that never send a request) neither stop it from answering a normal
//! client nor stay open past their timeouts; past the connection cap a new connection waits
//! for a slot or, past as many waiting, is closed at once; an idle HTTP/2 connection is closed;
//! each token is held to its rate; refused tokens are limited per client address; a too-large
//! body is 413 over HTTP/1.1 and HTTP/2.

mod common;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_problem, start_console, start_console_with, TestConsole};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use vinfra_console::api::limits::RateLimit;
use vinfra_proto::pki;

/// A TLS connection to the console's API offering `alpn` (`http/1.1` or `h2`).
async fn tls(c: &TestConsole, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = (*pki::client_config(&c.running.ca_pem, None).unwrap()).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(c.running.api_addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// Reads until the peer closes (or errs) or `within` passes; what was read, and whether the
/// connection ended.
async fn read_to_close<S: AsyncRead + Unpin>(s: &mut S, within: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET /api/v1/vms` with the console's own token, which must be refused 429: its
/// `Retry-After`, in seconds.
async fn refused_retry_after(c: &TestConsole) -> u64 {
    let refused = c
        .client
        .get(format!("{}/api/v1/vms", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// `GET /api/v1/vms` by the normal client: its status and how long it took.
async fn normal_get(c: &TestConsole) -> (u16, Duration) {
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), c.call("GET", "/api/v1/vms", None))
        .await
        .expect("the normal client is answered");
    (r.status, t.elapsed())
}

/// 200 slow connections of five kinds at once; the API keeps answering, and each slow
/// connection is ended by its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_do_not_stop_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console_with(dir.path(), None, true, |cfg| {
        cfg.api_limits.header_timeout = Duration::from_secs(2);
        cfg.api_limits.body_timeout = Duration::from_secs(2);
    })
    .await;
    let addr: SocketAddr = c.running.api_addr;
    let opened = Instant::now();

    // 40 that never start their TLS handshake.
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    // 40 that send part of a TLS ClientHello and stop.
    let mut half_hello = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        half_hello.push(s);
    }
    // 40 slowloris: a request head sent a line at a time, never finished.
    let mut heads = Vec::new();
    for _ in 0..40 {
        let mut s = tls(&c, b"http/1.1").await;
        s.write_all(b"GET /api/v1/vms HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        s.flush().await.unwrap();
        heads.push(s);
    }
    // 40 slow POSTs: a whole head, then a body that never arrives; half of them the web
    // console's login form, which needs no token.
    let mut bodies = Vec::new();
    for i in 0..40 {
        let mut s = tls(&c, b"http/1.1").await;
        let head = if i % 2 == 0 {
            format!(
                "POST /api/v1/networks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"na",
                c.token
            )
        } else {
            "POST /login HTTP/1.1\r\nHost: x\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nto"
                .to_string()
        };
        s.write_all(head.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        bodies.push(s);
    }
    // 40 HTTP/2 connections that never send their preface.
    let mut h2 = Vec::new();
    for _ in 0..40 {
        h2.push(tls(&c, b"h2").await);
    }
    assert!(
        opened.elapsed() < Duration::from_secs(2),
        "the 200 slow connections were opened before any timeout ({:?})",
        opened.elapsed()
    );

    // All 200 are open: a normal client is answered, and quickly.
    for _ in 0..5 {
        let (status, took) = normal_get(&c).await;
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(1), "answered in {took:?}");
    }
    // The slowloris heads keep trickling: a header every 300 ms does not keep them open.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for s in &mut heads {
            let _ = s.write_all(b"X-Slow: 1\r\n").await;
            let _ = s.flush().await;
        }
    }

    // Each kind is closed by its timeout (2 s), well before it could pile up.
    let within = Duration::from_secs(6);
    for s in &mut silent {
        let (_, closed) = read_to_close(s, within).await;
        assert!(closed, "a connection without a TLS handshake is closed");
    }
    for s in &mut half_hello {
        let (_, closed) = read_to_close(s, within).await;
        assert!(closed, "a half TLS handshake is closed");
    }
    for s in &mut heads {
        let (_, closed) = read_to_close(s, within).await;
        assert!(closed, "an unfinished request head is closed");
    }
    for s in &mut bodies {
        let (got, closed) = read_to_close(s, within).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "a body that does not come is 408: {text}"
        );
        assert!(text.contains("/problems/request-timeout"), "{text}");
        assert!(closed, "and the connection is closed");
    }
    for s in &mut h2 {
        let (_, closed) = read_to_close(s, within).await;
        assert!(closed, "an HTTP/2 connection without a request is closed");
    }
    assert!(
        opened.elapsed() < Duration::from_secs(10),
        "closed within their timeouts ({:?})",
        opened.elapsed()
    );
    // Nothing was created by the half-sent POSTs.
    let networks = c.call("GET", "/api/v1/networks", None).await;
    assert_eq!(networks.body, serde_json::json!([]));
    let (status, _) = normal_get(&c).await;
    assert_eq!(status, 200);
    c.shutdown().await;
}

/// Past the cap a connection waits for a slot (and is served when one frees up); past as
/// many waiting, a new connection is closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_makes_new_connections_wait_then_closes_them() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console_with(dir.path(), None, true, |cfg| {
        cfg.api_limits.header_timeout = Duration::from_millis(1500);
        cfg.api_limits.max_connections = 4;
    })
    .await;
    let addr = c.running.api_addr;

    // Four silent connections take every slot; the normal client waits for one to free up
    // (the first silent ones end at their handshake timeout) and is answered then.
    let t0 = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = normal_get(&c).await;
    assert_eq!(status, 200);
    assert!(
        t0.elapsed() >= Duration::from_millis(1200),
        "the client waited for a slot ({:?})",
        t0.elapsed()
    );
    drop(silent);
    // The client's kept-alive connection holds a slot until it has been idle for the header
    // timeout.
    tokio::time::sleep(Duration::from_millis(2000)).await;

    // Four served and four waiting: the next one is closed at once.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    let (_, closed) = read_to_close(&mut extra, Duration::from_millis(1000)).await;
    assert!(closed, "a connection past the waiting ones is closed");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "at once ({:?})",
        t.elapsed()
    );
    // A waiting one is not closed at once: it gets a slot when a served one times out.
    let (_, closed) = read_to_close(&mut held[7], Duration::from_millis(500)).await;
    assert!(!closed, "a waiting connection is still open");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, took) = normal_get(&c).await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "slots free again ({took:?})");
    c.shutdown().await;
}

/// Each token has its own bucket: past it 429 problem+json with Retry-After, other tokens
/// unaffected, answered again once the bucket refills; a refused token is not counted.
#[tokio::test]
async fn each_token_is_held_to_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console_with(dir.path(), None, true, |cfg| {
        cfg.api_limits.rate = Some(RateLimit {
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(4).unwrap(),
        });
    })
    .await;
    // The admin's bucket pays for the creation of the viewer token: 1 of 4.
    let r = c
        .call(
            "POST",
            "/api/v1/tokens",
            Some(r#"{"name":"watch","role":"viewer"}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let viewer = r.body["token"].as_str().unwrap().to_string();

    for _ in 0..3 {
        assert_eq!(c.call("GET", "/api/v1/vms", None).await.status, 200);
    }
    let retry_after = refused_retry_after(&c).await;
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    let r = c.call("GET", "/api/v1/vms", None).await;
    assert_problem(&r, 429);
    assert_eq!(r.body["type"], "/problems/too-many-requests");
    assert!(
        r.body["detail"].as_str().unwrap().contains("'bootstrap'"),
        "{:?}",
        r.body
    );

    // Another token has its own bucket; a request with a wrong token costs nobody anything.
    for _ in 0..4 {
        let r = c.call_with("GET", "/api/v1/vms", None, Some(&viewer)).await;
        assert_eq!(r.status, 200);
    }
    // (Fewer than the 10 refused tokens a minute that would hold this address back.)
    for _ in 0..9 {
        let r = c
            .call_with("GET", "/api/v1/vms", None, Some("vinfra_wrong"))
            .await;
        assert_eq!(r.status, 401);
    }
    // The OpenAPI document needs no token and is not limited.
    let doc = c
        .client
        .get(format!("{}/api/openapi.json", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(doc.status().as_u16(), 200);

    // The bucket refills at one a second.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(c.call("GET", "/api/v1/vms", None).await.status, 200);
    c.shutdown().await;
}

/// Refused bearer tokens are limited per client address: ten within a minute are 401, then
/// the address is 429 problem+json with `Retry-After`, its token not tried (a right one
/// included); a client on another address with the right token is answered, and its own wrong
/// tokens are counted apart.
#[tokio::test]
async fn refused_tokens_are_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let wrong = |i: usize| format!("vinfra_wrong{i}");
    for i in 0..10 {
        let r = c
            .call_with("GET", "/api/v1/vms", None, Some(&wrong(i)))
            .await;
        assert_problem(&r, 401);
    }
    let retry_after = refused_retry_after(&c).await;
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let r = c
        .call_with("GET", "/api/v1/vms", None, Some(&wrong(10)))
        .await;
    assert_problem(&r, 429);
    assert_eq!(r.body["type"], "/problems/too-many-requests");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("too many refused bearer tokens"),
        "{:?}",
        r.body
    );

    // Another address of the loopback (the console listens on 127.0.0.1).
    let tls = pki::client_config(&c.running.ca_pem, None).unwrap();
    let other = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls).clone())
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let get = |token: String| {
        other
            .get(format!("{}/api/v1/vms", c.base))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(get(c.token.clone()).await.unwrap().status().as_u16(), 200);
    assert_eq!(get(wrong(0)).await.unwrap().status().as_u16(), 401);
    assert_eq!(get(c.token.clone()).await.unwrap().status().as_u16(), 200);
    c.shutdown().await;
}

/// A body past the limit gets its 413 problem+json over HTTP/1.1 and HTTP/2 alike: the
/// console reads the body to its end first, so a client that sends its whole body before it
/// reads (as Python's does) is not cut off mid-send, and HTTP/2 clients that take a stream
/// reset after the answer as an error (curl) see the answer; the connection then serves the
/// next request.
#[tokio::test]
async fn too_large_body_is_413_over_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(8 * 1024 * 1024));

    // HTTP/1.1: the whole body written, then the answer read, then a second request.
    let mut s = tls(&c, b"http/1.1").await;
    let head = format!(
        "POST /api/v1/networks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        c.token,
        big.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(big.as_bytes())
        .await
        .expect("the whole body is taken");
    // A TLS stream's `write_all` may leave the last records in the session's buffer when the
    // socket is full: without a flush the body's tail would never leave, and the console would
    // wait for it as this waits for the answer.
    s.flush().await.expect("the whole body is sent");
    let answer = read_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("/problems/too-large"), "{answer}");
    let get = format!(
        "GET /api/v1/networks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        c.token
    );
    s.write_all(get.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    let answer = read_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // HTTP/2 (reqwest): 413 problem+json on the stream, and the connection goes on.
    let tls_config = pki::client_config(&c.running.ca_pem, None).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured((*tls_config).clone())
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..2 {
        let r = client
            .post(format!("{}/api/v1/networks", c.base))
            .bearer_auth(&c.token)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .expect("the 413 is received");
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status().as_u16(), 413);
        assert_eq!(r.headers()["content-type"], vinfra_types::api::PROBLEM_JSON);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["type"], "/problems/too-large");
    }
    let r = client
        .get(format!("{}/api/v1/networks", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // HTTP/2 (curl, which fails on a stream reset after the answer): 413 and its problem.
    if vinfra_testenv::Needs::new()
        .named("too_large_body_is_413_over_http1_and_http2 (curl)")
        .program("curl")
        .met()
    {
        let body_file = dir.path().join("big.json");
        std::fs::write(&body_file, &big).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &c.running.ca_pem).unwrap();
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--http2", "--cacert"])
            .arg(&ca)
            .args(["-H", &format!("Authorization: Bearer {}", c.token)])
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", body_file.display()))
            .args(["-w", "\n%{http_code} %{http_version}"])
            .arg(format!("{}/api/v1/networks", c.base))
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "curl: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.ends_with("\n413 2"), "{stdout}");
        assert!(stdout.contains("/problems/too-large"), "{stdout}");
    }
    c.shutdown().await;
}

/// Reads one HTTP/1.1 answer with a `Content-Length` body.
async fn read_answer<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("the connection stays open");
        assert!(
            n > 0,
            "the connection was closed: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// An HTTP/2 connection that made a request and then sends nothing more is closed once idle
/// for the header timeout (HTTP/2 has no header timeout of its own after the first request);
/// while it made none, the first-request timeout closes it.
#[tokio::test]
async fn idle_http2_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console_with(dir.path(), None, true, |cfg| {
        cfg.api_limits.header_timeout = Duration::from_millis(1500);
    })
    .await;
    let mut s = tls(&c, b"h2").await;
    // The client preface, empty SETTINGS, and one HEADERS frame (stream 1, END_STREAM |
    // END_HEADERS) for GET /api/openapi.json, its fields HPACK-coded without Huffman.
    let mut block = vec![0x82, 0x87]; // :method GET, :scheme https (static table)
    for (index, value) in [(0x04u8, "/api/openapi.json"), (0x01, "x")] {
        block.push(index); // literal without indexing, name from the static table
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let len = block.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[0x1, 0x5, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    s.write_all(&out).await.unwrap();
    s.flush().await.unwrap();

    // The answer comes (a HEADERS frame on stream 1 with status 200: index 8, 0x88), then
    // nothing more is sent; the connection must be closed after about 1.5 s of idleness.
    let t = Instant::now();
    let (got, closed) = read_to_close(&mut s, Duration::from_secs(8)).await;
    assert!(closed, "the idle connection is closed");
    let answered = got
        .windows(10)
        .any(|w| w[3] == 0x1 && w[5..9] == [0, 0, 0, 1] && w[9] == 0x88);
    assert!(answered, "the request was answered 200 first");
    assert!(
        t.elapsed() >= Duration::from_millis(1200) && t.elapsed() < Duration::from_secs(5),
        "closed when idle for the timeout ({:?})",
        t.elapsed()
    );
    c.shutdown().await;
}

/// The server's HTTP/2 SETTINGS cap the requests one connection may have in flight at
/// [`vinfra_console::API_MAX_STREAMS`] (not hyper's 200).
#[tokio::test]
async fn http2_connections_have_few_streams_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let mut s = tls(&c, b"h2").await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    s.write_all(&out).await.unwrap();
    s.flush().await.unwrap();
    // The server's first frame is its SETTINGS (type 4, stream 0): 6-byte parameters.
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head))
        .await
        .expect("the server's SETTINGS within 5 s")
        .unwrap();
    assert_eq!(
        (head[3], &head[5..9]),
        (0x4, &[0u8, 0, 0, 0][..]),
        "a SETTINGS frame: {head:?}"
    );
    let len = usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    let streams = body
        .chunks_exact(6)
        .find(|p| p[..2] == [0, 0x3])
        .map(|p| u32::from_be_bytes([p[2], p[3], p[4], p[5]]));
    assert_eq!(
        streams,
        Some(vinfra_console::API_MAX_STREAMS),
        "SETTINGS {body:?}"
    );
    c.shutdown().await;
}

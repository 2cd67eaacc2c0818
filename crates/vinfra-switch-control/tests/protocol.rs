//! Both ends of the control socket in one process: the real [`SwitchClient`] against the real
//! server loop ([`server::serve`]) over a Unix socket in a temporary directory, with a small
//! model switch as the handler.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vinfra_switch_control::{
    server, Attachment, ClientError, ConnTupleSpec, ConnectionSpec, CountersView, LocationSpec,
    NetworkSpec, PortCountersView, PortSpec, Request, Response, SideSpec, SwitchClient,
    TcpStateSpec, UPLINK_PORT,
};

/// A switch that keeps what it is told: networks must be new, ports need their network.
#[derive(Default)]
struct Model {
    config: Vec<Request>,
    /// Connections given to each port (`import_connections`), read back by
    /// `export_connections`.
    connections: std::collections::BTreeMap<u32, Vec<ConnectionSpec>>,
}

impl Model {
    fn handle(&mut self, request: Request) -> Response {
        let has_port = |config: &[Request], id: u32| {
            config
                .iter()
                .any(|r| matches!(r, Request::AddPort(p) if p.id == id))
        };
        let has_network = |config: &[Request], id: u32| {
            config
                .iter()
                .any(|r| matches!(r, Request::AddNetwork { id: n, .. } if *n == id))
        };
        match request {
            Request::Ping => Response::Pong,
            Request::GetConfig => Response::Config {
                requests: self.config.clone(),
            },
            Request::GetCounters => Response::Counters(CountersView {
                ports: self
                    .config
                    .iter()
                    .filter_map(|r| match r {
                        Request::AddPort(p) => Some(PortCountersView {
                            id: p.id,
                            mtu: Some(p.mtu),
                            ..Default::default()
                        }),
                        _ => None,
                    })
                    .collect(),
                ..Default::default()
            }),
            Request::ExportConnections { port } | Request::ImportConnections { port, .. }
                if !has_port(&self.config, port) =>
            {
                Response::Error {
                    message: format!("port {port} does not exist"),
                }
            }
            Request::ExportConnections { port } => Response::Connections {
                entries: self.connections.get(&port).cloned().unwrap_or_default(),
            },
            Request::ImportConnections { port, entries } => {
                self.connections.entry(port).or_default().extend(entries);
                Response::Ok
            }
            Request::AddNetwork { id, .. } if has_network(&self.config, id) => Response::Error {
                message: format!("network {id} already exists"),
            },
            Request::AddPort(PortSpec {
                attach: Attachment::Vm { network, .. },
                ..
            }) if !has_network(&self.config, network) => Response::Error {
                message: format!("network {network} does not exist"),
            },
            other => {
                self.config.push(other);
                Response::Ok
            }
        }
    }
}

/// Starts a server at `<dir>/control.sock` whose requests go to `handler`.
fn start(dir: &Path, handler: impl Fn(Request) -> Response + Send + Sync + 'static) -> PathBuf {
    let path = dir.join("control.sock");
    let listener = server::bind(&path).unwrap();
    std::thread::spawn(move || server::serve(listener, handler));
    path
}

fn model_switch(dir: &Path) -> (PathBuf, Arc<Mutex<Model>>) {
    let model = Arc::new(Mutex::new(Model::default()));
    let m = model.clone();
    let path = start(dir, move |r| m.lock().unwrap().handle(r));
    (path, model)
}

fn network(id: u32) -> Request {
    Request::AddNetwork {
        id,
        kind: NetworkSpec::Overlay { vni: 5000 + id },
    }
}

fn vm_port(id: u32, network: u32) -> Request {
    Request::AddPort(PortSpec {
        id,
        mtu: 1450,
        attach: Attachment::Vm {
            network,
            socket: format!("/run/vm/nic{id}.switch.sock").into(),
            peer: format!("/run/vm/nic{id}.sock").into(),
            owner: None,
        },
    })
}

#[test]
fn requests_are_applied_in_order_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (path, model) = model_switch(dir.path());
    let mut client = SwitchClient::connect(&path).unwrap();
    client.ping().unwrap();
    let requests = vec![
        network(1),
        Request::AddPort(PortSpec {
            id: UPLINK_PORT,
            mtu: 1500,
            attach: Attachment::VxlanUplink {
                local_ip: Ipv4Addr::new(10, 0, 0, 1),
            },
        }),
        vm_port(3, 1),
        Request::AddMacEntry {
            network: 1,
            mac: "52:54:00:00:00:03".parse().unwrap(),
            location: LocationSpec::Port(3),
        },
    ];
    client.apply(&requests).unwrap();
    assert_eq!(client.config().unwrap(), requests);
    assert_eq!(model.lock().unwrap().config, requests);
    let counters = client.counters().unwrap();
    assert_eq!(counters.port(3).and_then(|p| p.mtu), Some(1450));
    assert_eq!(counters.port(UPLINK_PORT).and_then(|p| p.mtu), Some(1500));
    // A second client sees the same switch.
    let mut other = SwitchClient::connect(&path).unwrap();
    assert_eq!(other.config().unwrap().len(), 4);
}

#[test]
fn connections_are_exported_and_imported_as_actions() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _model) = model_switch(dir.path());
    let mut client = SwitchClient::connect(&path).unwrap();
    client.apply(&[network(1), vm_port(3, 1)]).unwrap();
    assert_eq!(client.export_connections(3).unwrap(), vec![]);
    let entry = ConnectionSpec {
        original: ConnTupleSpec {
            src: Ipv4Addr::new(10, 0, 0, 7),
            dst: Ipv4Addr::new(10, 0, 0, 3),
            protocol: 6,
            src_port: 51000,
            dst_port: 8080,
        },
        origin: SideSpec::ToVm,
        tcp_state: Some(TcpStateSpec::Established),
        replied: true,
        remaining_ms: 60_000,
    };
    client
        .apply(&[Request::ImportConnections {
            port: 3,
            entries: vec![entry],
        }])
        .unwrap();
    assert_eq!(client.export_connections(3).unwrap(), vec![entry]);
    // Neither is configuration.
    assert_eq!(client.config().unwrap().len(), 2);
    // A port the switch does not have is refused, named.
    match client.export_connections(9) {
        Err(ClientError::Refused {
            request, message, ..
        }) => {
            assert_eq!(*request, Request::ExportConnections { port: 9 });
            assert!(message.contains("port 9"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refusal_names_its_request_and_stops_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (path, model) = model_switch(dir.path());
    let mut client = SwitchClient::connect(&path).unwrap();
    let e = client
        .apply(&[network(1), vm_port(2, 9), network(3)])
        .unwrap_err();
    match &e {
        ClientError::Refused {
            index,
            request,
            message,
        } => {
            assert_eq!(*index, 1);
            assert_eq!(**request, vm_port(2, 9));
            assert_eq!(message, "network 9 does not exist");
        }
        other => panic!("not a refusal: {other:?}"),
    }
    let text = e.to_string();
    assert!(
        text.contains("request 1") && text.contains("\"op\":\"add_port\""),
        "{text}"
    );
    // The request after the refused one was not sent; the connection still works.
    assert_eq!(model.lock().unwrap().config, vec![network(1)]);
    client.apply(&[network(3)]).unwrap();
    assert_eq!(client.config().unwrap(), vec![network(1), network(3)]);
}

#[test]
fn bad_lines_are_answered_and_long_lines_end_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _model) = model_switch(dir.path());
    let stream = UnixStream::connect(&path).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut answer = |line: &[u8]| {
        writer.write_all(line).unwrap();
        let mut text = String::new();
        reader.read_line(&mut text).unwrap();
        text
    };
    for bad in [
        &b"not json\n"[..],
        b"{\"op\":\"launch_missiles\"}\n",
        b"{\"op\":\"add_network\",\"id\":1}\n",
        b"{\"op\":\"add_mac_entry\",\"network\":1,\"mac\":\"52:54\",\"location\":{\"port\":1}}\n",
    ] {
        let r: Response = serde_json::from_str(&answer(bad)).unwrap();
        assert!(
            matches!(&r, Response::Error { message } if message.starts_with("bad request")),
            "{r:?}"
        );
    }
    // Blank lines are skipped; the connection still answers.
    let r: Response = serde_json::from_str(&answer(b"\n\n{\"op\":\"ping\"}\n")).unwrap();
    assert_eq!(r, Response::Pong);
    // A line beyond the control socket's default 1 MiB (a large firewall) is taken.
    let mut big = b"{\"op\":\"ping\"".to_vec();
    big.extend(std::iter::repeat_n(b' ', 2 << 20));
    big.extend_from_slice(b"}\n");
    let r: Response = serde_json::from_str(&answer(&big)).unwrap();
    assert_eq!(r, Response::Pong);
    let mut long = vec![b' '; server::MAX_LINE as usize + 10];
    long.push(b'\n');
    let r: Response = serde_json::from_str(&answer(&long)).unwrap();
    assert_eq!(
        r,
        Response::Error {
            message: "request line too long".into()
        }
    );
    // Closed: an end of stream, or a reset when the server closed with the
    // rest of the long line still unread in its receive queue (Linux then
    // resets a Unix stream socket's peer instead of ending it).
    let mut rest = String::new();
    match reader.read_line(&mut rest) {
        Ok(n) => assert_eq!(n, 0, "connection closed, got {rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn connect_within_waits_for_a_starting_switch_and_gives_up_on_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let e = SwitchClient::connect(&path).unwrap_err();
    assert!(
        matches!(&e, ClientError::Connect { path: p, .. } if *p == path),
        "{e:?}"
    );
    let started = Instant::now();
    assert!(SwitchClient::connect_within(&path, Duration::from_millis(100)).is_err());
    assert!(started.elapsed() >= Duration::from_millis(100));

    let late = dir.path().to_path_buf();
    let server = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        let model = Mutex::new(Model::default());
        start(&late, move |r| model.lock().unwrap().handle(r))
    });
    let mut client = SwitchClient::connect_within(&path, Duration::from_secs(5)).unwrap();
    assert_eq!(server.join().unwrap(), path);
    client.ping().unwrap();
}

#[test]
fn wrong_answers_closed_connections_and_timeouts_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A switch that answers everything with `pong`.
    let pong = start(&dir.path().join("pong"), |_| Response::Pong);
    let mut client = SwitchClient::connect(&pong).unwrap();
    let e = client.counters().unwrap_err();
    assert!(
        matches!(&e, ClientError::Unexpected(r) if **r == Response::Pong),
        "{e:?}"
    );
    assert!(matches!(
        client.apply(&[network(1)]),
        Err(ClientError::Unexpected(_))
    ));

    // A switch that hangs up without answering.
    let hangup = dir.path().join("hangup.sock");
    let listener = server::bind(&hangup).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    let mut client = SwitchClient::connect(&hangup).unwrap();
    let e = client.ping().unwrap_err();
    assert!(
        matches!(e, ClientError::Closed | ClientError::Io(_)),
        "{e:?}"
    );

    // A switch that answers too late.
    let slow = start(&dir.path().join("slow"), |_| {
        std::thread::sleep(Duration::from_millis(500));
        Response::Pong
    });
    let mut client = SwitchClient::connect(&slow).unwrap();
    client.set_timeout(Some(Duration::from_millis(50))).unwrap();
    assert!(matches!(client.ping(), Err(ClientError::Io(_))));
}

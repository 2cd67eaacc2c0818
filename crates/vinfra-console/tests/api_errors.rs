//! The REST API alone, in process, against a stub console: replies render with their status,
//! every error kind as problem+json with its status and whole chain, and so do the transport's
//! own refusals.

mod api_common;

use std::sync::Arc;

use api_common::stub::{check_problem, runtime, send, Stub, TOKEN};
use vinfra_console::api::MAX_BODY;
use vinfra_console::error::Object;
use vinfra_console::interface::{Error, ErrorKind, Reply};
use vinfra_placement::fit::{MemoryShort, Shortfall};
use vinfra_placement::{FitError, NoHost, Quoted, Unfit, VmRequest};
use vinfra_types::api::JoinTokenResponse;
use vinfra_types::ha::FenceOutcome;

#[test]
fn replies_render_with_their_status() {
    let rt = runtime();
    let stub = Arc::new(Stub::default());
    let auth = format!("Bearer {TOKEN}");
    let token = JoinTokenResponse {
        token: "t".into(),
        expires_in_s: 5,
    };
    for (method, path, reply, status) in [
        (
            "POST",
            "/api/v1/join-tokens",
            Reply::JoinToken(token.clone()),
            201,
        ),
        ("GET", "/api/v1/events", Reply::Events(vec![]), 200),
        (
            "GET",
            "/api/v1/flows",
            Reply::Flows(vinfra_types::flows::FlowReport {
                minutes: 5,
                by: Default::default(),
                rows: vec![],
                untracked_packets: 0,
            }),
            200,
        ),
        (
            "GET",
            "/api/v1/drs/recommendations",
            Reply::Recommendations(vec![]),
            200,
        ),
        ("DELETE", "/api/v1/rules/r", Reply::Done, 204),
        (
            "POST",
            "/api/v1/hosts/h2/fence",
            Reply::Fenced(FenceOutcome {
                host: "h2".into(),
                fenced: true,
                exit_code: Some(0),
                timed_out: false,
                duration_ms: 12,
                output_tail: "off\n".into(),
            }),
            200,
        ),
    ] {
        *stub.reply.lock().unwrap() = Some(reply);
        let a = rt
            .block_on(send(&stub, method, path, vec![], Some(&auth)))
            .unwrap();
        assert_eq!(a.status, status, "{method} {path}");
        if status == 204 {
            assert!(a.body.is_empty());
        } else {
            assert_eq!(a.content_type, "application/json");
        }
        stub.take_calls();
    }
    *stub.reply.lock().unwrap() = Some(Reply::JoinToken(token.clone()));
    let a = rt
        .block_on(send(
            &stub,
            "POST",
            "/api/v1/join-tokens",
            vec![],
            Some(&auth),
        ))
        .unwrap();
    let back: JoinTokenResponse = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(back, token);
}

/// Host h1 cannot take VM web, for `unfit`.
fn unfit_web(unfit: Unfit) -> Error {
    Error::Fit(FitError::HostUnfit {
        host: "h1".into(),
        vm: "web".into(),
        vcpus: 1,
        memory_mib: 512,
        unfit,
    })
}

/// An error of each kind.
fn sample(kind: ErrorKind) -> Error {
    use vinfra_console::agents::RequestError;
    match kind {
        ErrorKind::InvalidRequest => Error::OutOfRange {
            field: "bytes",
            min: 1,
            max: 10,
            got: 0,
        },
        ErrorKind::NotFound => Error::not_found(Object::Vm, "web"),
        ErrorKind::Conflict => Error::VmBusy { vm: "web".into() },
        ErrorKind::InsufficientCapacity => {
            let short = Shortfall {
                memory: Some(MemoryShort {
                    short_mib: 1,
                    allocated_mib: 1024,
                    allocatable_mib: 1024,
                    physical_mib: 1024,
                    ratio: 1.0,
                    reserved_mib: 0,
                }),
                vcpus: None,
            };
            let web = VmRequest {
                vm: "web".into(),
                vcpus: 1,
                memory_mib: 512,
            };
            Error::Fit(FitError::NoHost(NoHost::new(
                &web,
                [("h1".to_string(), Unfit::Capacity(Box::new(short)))],
            )))
        }
        ErrorKind::HostUnavailable => unfit_web(Unfit::NoTrunk {
            networks: Quoted::of(["v100"]),
        }),
        ErrorKind::RuleConflict => unfit_web(Unfit::MustRule {
            rules: Quoted::of(["r"]),
        }),
        ErrorKind::InvalidRule => Error::RuleUnknownHost {
            rule: "r".into(),
            host: "h9".into(),
        },
        ErrorKind::InvalidStartAfter => Error::StartAfterCycle {
            vm: "a".into(),
            start_after: "b".into(),
            cycle: vec!["a".into(), "b".into(), "a".into()],
        },
        ErrorKind::FenceFailed => Error::FenceFailed {
            outcome: Box::new(FenceOutcome {
                host: "h2".into(),
                fenced: false,
                exit_code: Some(1),
                timed_out: false,
                duration_ms: 5,
                output_tail: "no route to the BMC\nretrying\n".into(),
            }),
        },
        ErrorKind::HaReserve => Error::HaReserve(Box::new(vinfra_ha::Refusal {
            vm: "web".into(),
            host: "h1".into(),
            tolerate: 1,
            scenario: vinfra_ha::ScenarioReport {
                failed: vec!["h2".into()],
                ha_vms: 1,
                demand: vinfra_ha::Amount {
                    vcpus: 2,
                    memory_mib: 4096,
                },
                restarts: Vec::new(),
                unplaced: vec!["db".into()],
                shortfall: vinfra_ha::Amount {
                    vcpus: 2,
                    memory_mib: 4096,
                },
                why: None,
            },
            already: false,
        })),
        ErrorKind::AgentError => Error::Agent(RequestError::Agent {
            host: "h1".into(),
            source: vinfra_proto::CommandError::Host {
                detail: "the datastore is busy".into(),
            },
        }),
        ErrorKind::AgentConnectionLost => {
            Error::Agent(RequestError::ConnectionLost { host: "h1".into() })
        }
        ErrorKind::HostDisconnected => {
            Error::Agent(RequestError::NotConnected { host: "h1".into() })
        }
        ErrorKind::AgentTimeout => Error::Agent(RequestError::Timeout {
            host: "h1".into(),
            secs: 30,
        }),
        ErrorKind::Internal => Error::CorruptNetwork {
            network: "blue".into(),
            field: "subnet",
        },
    }
}

#[test]
fn every_error_kind_renders_as_its_problem() {
    let rt = runtime();
    let stub = Arc::new(Stub::default());
    let auth = format!("Bearer {TOKEN}");
    // The table of docs/design.md, "REST API".
    let status = |k: ErrorKind| match k {
        ErrorKind::InvalidRequest => 400,
        ErrorKind::NotFound => 404,
        ErrorKind::Conflict
        | ErrorKind::InsufficientCapacity
        | ErrorKind::HostUnavailable
        | ErrorKind::RuleConflict
        | ErrorKind::HaReserve => 409,
        ErrorKind::InvalidRule | ErrorKind::InvalidStartAfter => 422,
        ErrorKind::AgentError | ErrorKind::AgentConnectionLost | ErrorKind::FenceFailed => 502,
        ErrorKind::HostDisconnected => 503,
        ErrorKind::AgentTimeout => 504,
        ErrorKind::Internal => 500,
    };
    for kind in ErrorKind::ALL {
        let e = sample(kind);
        assert_eq!(e.kind(), kind);
        let detail = vinfra_types::error::chain(&e);
        *stub.fail.lock().unwrap() = Some(e);
        let a = rt
            .block_on(send(&stub, "GET", "/api/v1/vms", vec![], Some(&auth)))
            .unwrap();
        assert_eq!(a.status, status(kind), "{kind:?}");
        let p = check_problem(&a).unwrap();
        assert_eq!(p["type"], format!("/problems/{}", kind.as_str()));
        assert_eq!(p["detail"], detail, "the detail is the whole chain");
        stub.take_calls();
    }
    // The agent's own words are in the detail, once.
    *stub.fail.lock().unwrap() = Some(sample(ErrorKind::AgentError));
    let a = rt
        .block_on(send(&stub, "GET", "/api/v1/vms", vec![], Some(&auth)))
        .unwrap();
    let p = check_problem(&a).unwrap();
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.starts_with("host 'h1': "), "{detail}");
    assert_eq!(
        detail.matches("the datastore is busy").count(),
        1,
        "{detail}"
    );
    stub.take_calls();

    // The transport's own refusals.
    type Refusal<'a> = (&'a str, &'a str, Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: [Refusal; 6] = [
        ("GET", "/api/v1/vms", vec![], None, 401, "unauthorized"),
        (
            "GET",
            "/api/v1/vms",
            vec![],
            Some("Bearer nope"),
            401,
            "unauthorized",
        ),
        (
            "GET",
            "/api/v1/nothing",
            vec![],
            Some(&auth),
            404,
            "no-such-endpoint",
        ),
        (
            "PUT",
            "/api/v1/vms",
            vec![],
            Some(&auth),
            405,
            "method-not-allowed",
        ),
        (
            "POST",
            "/api/v1/vms",
            b"{".to_vec(),
            Some(&auth),
            400,
            "invalid-request",
        ),
        (
            "POST",
            "/api/v1/vms",
            vec![b' '; MAX_BODY + 1],
            Some(&auth),
            413,
            "too-large",
        ),
    ];
    for (method, path, body, auth, status, kind) in cases {
        let a = rt.block_on(send(&stub, method, path, body, auth)).unwrap();
        assert_eq!(a.status, status, "{method} {path}");
        let p = check_problem(&a).unwrap();
        assert_eq!(p["type"], format!("/problems/{kind}"));
        if status == 401 {
            assert_eq!(a.www_authenticate.as_deref(), Some("Bearer"));
        }
    }
    assert!(stub.take_calls().is_empty());
}

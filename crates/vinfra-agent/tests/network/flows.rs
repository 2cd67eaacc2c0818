//! The host's flows with no console: the agent's flows task (one for the agent's life) takes
//! the switch's flows and exports them to the IPFIX collector whether a console session is
//! connected or not, and a session gets them only while it lasts. Needs root and `ip` (a
//! network namespace for the switch), not QEMU.

use std::net::UdpSocket;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_reach_the_ipfix_collector_with_no_console_session() {
    if !netns_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ds = datastore(tmp.path());
    let host = Netns::new("f");
    let sw = Switch::start(&host, tmp.path());
    let m = manager(
        &tmp.path().join("agent"),
        &ds,
        Some(SwitchAttachment {
            control: sw.control.clone(),
            underlay_ip: None,
            underlay_mtu: 1500,
            trunk_interface: None,
            // QEMU runs in the test's network namespace, the switch in another.
            vm_nic_ports: VmNicPorts::Dgram,
        }),
    )
    .await;
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    m.set_flow_collector(Some(collector.local_addr().unwrap()));
    let task = tokio::spawn(vinfra_agent::flows::send_flows(
        m.switch().unwrap().clone(),
        m.flow_export().clone(),
        "h1".into(),
        m.flow_sink().clone(),
        Duration::from_millis(100),
    ));
    assert!(m.flow_sink().current().is_none(), "no session");
    let got = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 2048];
        collector.recv(&mut buf).map(|n| buf[..n].to_vec())
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| {
        panic!(
            "no IPFIX message without a console session: {e}\n{}",
            sw.log_text()
        )
    });
    assert_eq!(&got[..2], &10u16.to_be_bytes(), "IPFIX version 10");
    assert!(!task.is_finished(), "the task runs on");

    // A session gets the flows while it lasts; a newer one keeps them when an older ends.
    let (old, _old_rx) = tokio::sync::mpsc::channel(4);
    let (new, _new_rx) = tokio::sync::mpsc::channel(4);
    let old_hold = m.flow_sink().attach(old.clone());
    assert!(m.flow_sink().current().unwrap().same_channel(&old));
    let new_hold = m.flow_sink().attach(new.clone());
    drop(old_hold);
    assert!(m.flow_sink().current().unwrap().same_channel(&new));
    drop(new_hold);
    assert!(m.flow_sink().current().is_none());
    task.abort();
}

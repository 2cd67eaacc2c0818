//! The console gives every agent the cluster's HA settings after each Hello (`SetHa`), so that
//! its guard acts on them while the console is unreachable; hosts without a guard show none.

mod common;

use std::time::{Duration, Instant};

use common::*;
use vinfra_types::HostCapacity;

const HOST: HostCapacity = HostCapacity {
    cores: 8,
    memory_mib: 16 * 1024,
};

fn set_ha_count(agent: &FakeAgent) -> usize {
    let state = agent.state.lock().unwrap();
    state.commands.iter().filter(|c| *c == "SetHa").count()
}

async fn wait_set_ha(agent: &FakeAgent, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while set_ha_count(agent) < count {
        assert!(
            Instant::now() < deadline,
            "SetHa #{count} never came: {:?}",
            agent.state.lock().unwrap().commands
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_hello_brings_the_agent_the_ha_settings() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let mut agent = FakeAgent::join_and_connect(&c, "h1", HOST).await;
    wait_set_ha(&agent, 1).await;
    let r = c.call("GET", "/api/v1/hosts/h1", None).await;
    assert_eq!(r.status, 200);
    assert!(r.body["guard"].is_null(), "{}", r.body);

    agent.disconnect();
    c.wait_host_status("h1", "disconnected").await;
    agent.connect(c.running.agent_addr).await;
    c.wait_host_status("h1", "connected").await;
    wait_set_ha(&agent, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(set_ha_count(&agent), 2, "one per Hello");
    c.shutdown().await;
}

//! Networks and VMs with NICs over the REST API, for the network tests (`networks*.rs`): a
//! network created, a VM with NICs (on a host of its own choosing), a NIC's address and MAC.

use serde_json::Value;

use super::{vm_json, Resp, TestConsole};

pub async fn create_net(c: &TestConsole, body: Value) -> Resp {
    c.call("POST", "/api/v1/networks", Some(&body.to_string()))
        .await
}

/// A VM with NICs (`[{network, ip?, mac?}]`).
pub fn vm_with_nics(name: &str, nics: Value) -> String {
    let mut v: Value = serde_json::from_str(&vm_json(name, 1, 128)).unwrap();
    v["nics"] = nics;
    v.to_string()
}

pub async fn create_vm(c: &TestConsole, name: &str, nics: Value) -> Resp {
    c.call("POST", "/api/v1/vms", Some(&vm_with_nics(name, nics)))
        .await
}

pub fn nic(r: &Resp, i: usize) -> (String, String) {
    let n = &r.body["spec"]["nics"][i];
    (
        n["ip"].as_str().unwrap().to_string(),
        n["mac"].as_str().unwrap().to_string(),
    )
}

pub fn on_host(name: &str, host: &str, nics: Value) -> String {
    vm_with_nics(name, nics).replace(
        &format!("\"name\":\"{name}\""),
        &format!("\"name\":\"{name}\",\"host\":\"{host}\""),
    )
}

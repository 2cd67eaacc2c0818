//! Memory over-allocation in the lab: a 16 GiB host with a cluster memory ratio of 2.5 takes four
//! running 10 GiB guests (QEMU allocates guest memory lazily) and refuses the fifth with a 409
//! that names the host, the request and the shortfall, leaving nothing of it behind.

mod common;

use std::time::Duration;

use common::{
    api, can_run_labs, dir_entries, qemus_with, start_lab_with, vm_names, wait_for, BOOT_TIMEOUT,
};
use vinfra_client::RestError;
use vinfra_lab::Lab;
use vinfra_types::{PowerState, VmSummary};

const BIG_MIB: u64 = 10240;

#[test]
fn over_allocation_fills_the_host_and_refuses_the_fifth_vm() {
    if !can_run_labs() {
        return;
    }
    let lab = start_lab_with("cap", 1, |c| c.host_memory_mib = Some(16384));
    let client = api(&lab);

    // Cluster memory ratio 2.5 (the CPU ratio stays as it is).
    let mut settings = client.settings().expect("settings");
    settings.ratios.memory = 2.5;
    client.put_settings(&settings).expect("PUT settings");
    let host = client.host("h1").expect("host h1");
    assert_eq!(host.capacity.memory_mib, 16384, "lab host memory");
    assert_eq!(
        host.allocatable_memory_mib, 40960,
        "16384 MiB × 2.5 allocatable"
    );

    let mut created: Vec<VmSummary> = Vec::new();
    for i in 1..=4 {
        let name = format!("big-{i}");
        let req = Lab::guest_vm_request(&name, BIG_MIB, None);
        let vm = client
            .create_vm(&req)
            .unwrap_or_else(|e| panic!("create {name} ({BIG_MIB} MiB) should fit: {e}"));
        assert_eq!(vm.host, "h1");
        created.push(vm);
    }
    // They really run: one QEMU each, the guest boots, the API says running.
    for vm in &created {
        assert_eq!(
            qemus_with(&vm.id.to_string()).len(),
            1,
            "one QEMU for {}",
            vm.name
        );
        lab.wait_console(&vm.name, "VINFRA-GUEST BOOTED", BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{} did not boot: {e}", vm.name));
        wait_for(
            &format!("{} to be reported running", vm.name),
            Duration::from_secs(30),
            || {
                let v = client.vm(&vm.name).ok()?;
                (v.state == PowerState::Running).then_some(())
            },
        );
    }
    let host = client.host("h1").expect("host h1");
    assert_eq!(host.allocated_memory_mib, 4 * BIG_MIB, "allocated memory");
    assert!(
        host.allocated_memory_mib > host.capacity.memory_mib,
        "memory is over-allocated: {} of {} MiB physical",
        host.allocated_memory_mib,
        host.capacity.memory_mib
    );

    let names_before = vm_names(&lab);
    let ds_before = dir_entries(&lab.datastore().join("vms"));
    let agent_vms = lab.host_data_dir("h1").expect("h1").join("vms");
    let agent_before = dir_entries(&agent_vms);
    assert_eq!(agent_before.len(), 4, "agent VM dirs: {agent_before:?}");

    // The fifth does not fit: 409 problem+json naming the host, the request and the shortfall.
    let req = Lab::guest_vm_request("big-5", BIG_MIB, None);
    let err = client
        .create_vm(&req)
        .expect_err("the fifth 10 GiB VM must not fit");
    let RestError::Problem { status, problem } = &err else {
        panic!("expected a problem+json answer, got: {err}");
    };
    assert_eq!(*status, 409, "status of {problem:?}");
    assert_eq!(problem.status, 409, "problem status");
    let detail = &problem.detail;
    assert!(detail.contains("h1"), "detail names the host: {detail}");
    assert!(
        detail.contains("big-5") && detail.contains("10240 MiB"),
        "detail names the request: {detail}"
    );
    assert!(
        detail.contains("short by 10240 MiB"),
        "detail names the shortfall: {detail}"
    );

    // Nothing is left of the fifth.
    assert_eq!(vm_names(&lab), names_before, "VM list after the refusal");
    let err = client.vm("big-5").expect_err("big-5 must not exist");
    assert_eq!(err.status(), Some(404), "GET big-5: {err}");
    assert!(
        vinfra_lab::qemu_pids_mentioning("big-5").is_empty(),
        "a QEMU for big-5 runs"
    );
    assert_eq!(
        dir_entries(&lab.datastore().join("vms")),
        ds_before,
        "datastore VM directories"
    );
    assert_eq!(
        dir_entries(&agent_vms),
        agent_before,
        "agent VM directories"
    );

    // Delete the four: their QEMUs go.
    for vm in &created {
        client
            .delete_vm(&vm.name, true)
            .unwrap_or_else(|e| panic!("delete {}: {e}", vm.name));
    }
    for vm in &created {
        let id = vm.id.to_string();
        wait_for(
            &format!("the QEMU of {} to exit", vm.name),
            Duration::from_secs(30),
            || qemus_with(&id).is_empty().then_some(()),
        );
    }
    assert!(vm_names(&lab).is_empty(), "VMs left: {:?}", vm_names(&lab));
    assert!(
        dir_entries(&agent_vms).is_empty(),
        "agent VM directories left: {:?}",
        dir_entries(&agent_vms)
    );
}

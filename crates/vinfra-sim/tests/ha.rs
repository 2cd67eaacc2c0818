//! Host failures in the simulator: the HA library decides, the run records what it decided.

use vinfra_ha::restart::{self, RestartVm};
use vinfra_ha::{HaPolicy, Priority};
use vinfra_placement::{
    ClusterModel, Eligibility, FitTable, HostModel, RulePlacer, VmModel, VmNeeds, VmRequest,
};
use vinfra_sim::{simulate, BalancerKind, BalancerRun, Report, Scenario};
use vinfra_types::{AllocationRatios, HostCapacity};

/// Level 1 moves only for hard violations: the VMs stay where the file puts them.
const HEAD: &str = r#"
steps = 4
step_minutes = 10

[balancer]
level = 1
"#;

fn host(name: &str, gib: u32, extra: &str) -> String {
    format!("\n[[hosts]]\nname = \"{name}\"\ncores = 16\nmemory_gib = {gib}\ncpu_ratio = 1.0\n{extra}\n")
}

fn vm(name: &str, host: &str, gib: u32, extra: &str) -> String {
    format!(
        "\n[[vms]]\nname = \"{name}\"\nhost = \"{host}\"\nvcpus = 1\nmemory_gib = {gib}\n{extra}\n\
         demand = {{ kind = \"constant\", cpu = 0.1, mem = 0.1 }}\n"
    )
}

fn run(text: &str) -> BalancerRun {
    let s = Scenario::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    simulate(&s, BalancerKind::Vinfra).unwrap_or_else(|e| panic!("{e}"))
}

fn model_host(name: &str, gib: u64, eligible: Eligibility) -> HostModel {
    HostModel {
        name: name.into(),
        capacity: HostCapacity {
            cores: 16,
            memory_mib: gib * 1024,
        },
        ratios: AllocationRatios {
            cpu: 1.0,
            memory: 1.0,
        },
        eligible,
    }
}

fn model_vm(name: &str, host: &str, gib: u64) -> VmModel {
    VmModel {
        name: name.into(),
        host: host.into(),
        vcpus: 1,
        memory_mib: gib * 1024,
        cpu_demand: 0.0,
        memory_demand_mib: 0,
    }
}

fn restart_vm(name: &str, gib: u64, priority: Priority, after: Option<&str>) -> RestartVm {
    RestartVm {
        id: uuid::Uuid::nil(),
        request: VmRequest {
            vm: name.into(),
            vcpus: 1,
            memory_mib: gib * 1024,
        },
        needs: VmNeeds::default(),
        policy: HaPolicy {
            priority,
            start_after: after.map(str::to_owned),
        },
    }
}

#[test]
fn failure_restarts_are_the_ha_librarys_plan() {
    // h1 fails at step 1 with five HA VMs of mixed priorities and sizes, one start-after, and
    // two VMs without HA; h2..h4 have different room left.
    let mut text = HEAD.to_string();
    text += &host("h1", 64, "failures = [{ fail = 1 }]");
    text += &host("h2", 32, "");
    text += &host("h3", 24, "");
    text += &host("h4", 16, "");
    text += &vm("x2", "h2", 8, "");
    text += &vm("x3", "h3", 4, "");
    text += &vm("db", "h1", 12, "ha = true\nha_priority = \"highest\"");
    text += &vm(
        "app",
        "h1",
        8,
        "ha = true\nha_priority = \"high\"\nha_start_after = \"db\"",
    );
    text += &vm("w1", "h1", 6, "ha = true");
    text += &vm("w2", "h1", 6, "ha = true");
    text += &vm("cold", "h1", 20, "ha = true\nha_priority = \"low\"");
    text += &vm("scratch1", "h1", 2, "");
    text += &vm("scratch2", "h1", 2, "");
    let r = run(&text);
    assert!(r.moves.is_empty(), "the balancer moved VMs: {:?}", r.moves);
    assert_eq!(r.ha.failovers.len(), 1);
    let f = &r.ha.failovers[0];
    assert_eq!((f.step, f.host.as_str()), (1, "h1"));

    // The same plan, made directly: the cluster at step 1, h1 failed, its HA VMs taken out.
    let model = ClusterModel {
        hosts: vec![
            model_host("h1", 64, Eligibility::Disconnected),
            model_host("h2", 32, Eligibility::Ok),
            model_host("h3", 24, Eligibility::Ok),
            model_host("h4", 16, Eligibility::Ok),
        ],
        vms: vec![
            model_vm("x2", "h2", 8),
            model_vm("x3", "h3", 4),
            model_vm("scratch1", "h1", 2),
            model_vm("scratch2", "h1", 2),
        ],
        ..ClusterModel::default()
    };
    let mut placer = RulePlacer::new(&model, &FitTable::default()).expect("placer");
    let want = restart::plan(
        &mut placer,
        &[
            restart_vm("db", 12, Priority::Highest, None),
            restart_vm("app", 8, Priority::High, Some("db")),
            restart_vm("w1", 6, Priority::Medium, None),
            restart_vm("w2", 6, Priority::Medium, None),
            restart_vm("cold", 20, Priority::Low, None),
        ],
    )
    .expect("plan");
    let got: Vec<(&str, &str, usize)> = f
        .restarts
        .iter()
        .map(|r| (r.vm.as_str(), r.host.as_str(), r.wave))
        .collect();
    let expected: Vec<(&str, &str, usize)> = want
        .waves
        .iter()
        .enumerate()
        .flat_map(|(w, wave)| {
            wave.iter()
                .map(move |r| (r.vm.as_str(), r.host.as_str(), w))
        })
        .collect();
    assert_eq!(got, expected);
    let unplaced: Vec<&str> = f.unplaced.iter().map(|u| u.vm.as_str()).collect();
    let want_unplaced: Vec<&str> = want.unplaced.iter().map(|u| u.why.vm.as_str()).collect();
    assert_eq!(unplaced, want_unplaced);
    // Not a trivial plan: several hosts, the start-after wave, someone left out.
    assert!(f.restarts.iter().any(|r| r.wave == 1));
    assert!(!f.unplaced.is_empty(), "{f:?}");
    assert_eq!(f.stopped, vec!["scratch1", "scratch2"]);

    // The run's state follows the plan: placed VMs run on their new hosts, the rest do not.
    let s1 = &r.steps[1];
    assert_eq!(s1.host_failures, 1);
    assert_eq!(s1.ha_restarted, f.restarts.len());
    assert_eq!(s1.ha_down, f.unplaced.len());
    assert_eq!(s1.vms_stopped, 2);
    assert_eq!(s1.vms, 2 + f.restarts.len());
    assert_eq!(r.summary.host_failures, 1);
    assert_eq!(r.summary.ha_down_end, f.unplaced.len());
}

#[test]
fn an_unplaceable_vm_is_reported_with_the_librarys_reason_and_restarts_when_room_returns() {
    let mut text = HEAD.to_string();
    text += &host("h1", 64, "failures = [{ fail = 1, return = 3 }]");
    text += &host("h2", 16, "");
    text += &vm("big", "h1", 40, "ha = true");
    let r = run(&text);
    let f = &r.ha.failovers[0];
    assert!(f.restarts.is_empty());
    let u = &f.unplaced[0];
    assert_eq!((u.vm.as_str(), u.memory_mib), ("big", 40 * 1024));
    assert!(u.why.starts_with("no host can take VM 'big'"), "{}", u.why);
    let reasons: Vec<(&str, usize)> = u
        .hosts_by_reason
        .iter()
        .map(|g| (g.reason.as_str(), g.hosts))
        .collect();
    assert!(
        reasons.contains(&("its agent is disconnected", 1)),
        "{reasons:?}"
    );
    assert!(
        u.hosts_by_reason
            .iter()
            .any(|g| g.examples == ["h2"] && g.reason.contains("memory short")),
        "{reasons:?}"
    );
    assert_eq!(r.steps[2].ha_down, 1);
    // h1 returns at step 3, empty: the VM restarts there.
    assert_eq!(r.ha.retries.len(), 1);
    assert_eq!(r.ha.retries[0].step, 3);
    assert_eq!(r.ha.retries[0].restarts[0].host, "h1");
    assert_eq!(r.summary.ha_down_end, 0);
    assert_eq!(r.summary.ha_restarted, 1);
}

#[test]
fn must_anti_affinity_holds_through_a_failover() {
    // a runs on h1 (fails), b on h2, which has by far the most room: without the rule, a would
    // restart next to b.
    let rule = "\n[[rules]]\nname = \"apart\"\nkind = \"anti-affinity\"\nstrength = \"must\"\nvms = [\"a\", \"b\"]\n";
    let mut text = HEAD.to_string();
    text += &host("h1", 64, "failures = [{ fail = 1 }]");
    text += &host("h2", 128, "");
    text += &host("h3", 16, "");
    text += &vm("a", "h1", 4, "ha = true");
    text += &vm("b", "h2", 4, "ha = true");
    let free = run(&text);
    assert_eq!(free.ha.failovers[0].restarts[0].host, "h2");
    let kept = run(&(text + rule));
    let f = &kept.ha.failovers[0];
    assert_eq!(f.restarts[0].vm, "a");
    assert_eq!(f.restarts[0].host, "h3");
    assert!(kept.steps.iter().all(|s| s.must_violations == 0));
}

#[test]
fn admission_refuses_an_ha_arrival_that_breaks_the_reserve() {
    // Two 32 GiB hosts with 14 GiB of HA VMs each: either's failure fits on the other. A third
    // 8 GiB HA VM arriving at step 2 leaves one failure without room: refused, and the run goes
    // on without it. The same VM without HA while no HA VM runs is not checked.
    let mut text = HEAD.replace("steps = 4", "steps = 5");
    text += &host("h1", 32, "");
    text += &host("h2", 32, "");
    text += &vm("a", "h1", 14, "ha = true");
    text += &vm("b", "h2", 14, "ha = true");
    text += &vm("late", "place", 8, "ha = true\narrive = 2");
    let r = run(&text);
    assert_eq!(r.ha.refused.len(), 1, "{:?}", r.ha.refused);
    let refused = &r.ha.refused[0];
    assert_eq!((refused.step, refused.vm.as_str()), (2, "late"));
    assert!(
        refused
            .reason
            .contains("would break the HA reserve (tolerate 1 host failure)"),
        "{}",
        refused.reason
    );
    assert_eq!(r.steps[2].admission_refused, 1);
    assert_eq!(r.summary.admission_refused, 1);
    assert!(r.steps.iter().all(|s| s.vms == 2));
    // The verdicts: holds at the start and at the end.
    let whens: Vec<(&str, bool)> = r.ha.verdicts.iter().map(|v| (v.when, v.holds)).collect();
    assert_eq!(whens, vec![("start", true), ("end", true)]);
    assert_eq!(r.summary.reserve_holds_end, Some(true));

    // tolerate_host_failures = 0: nothing is checked.
    let r = run(&format!("{text}\n[ha]\ntolerate_host_failures = 0\n"));
    assert!(r.ha.refused.is_empty());
    assert!(r.ha.verdicts.is_empty());
    assert_eq!(r.steps[2].vms, 3);

    // No HA VM at all: a plain arrival is not checked, whatever the room.
    let mut text = HEAD.to_string();
    text += &host("h1", 32, "");
    text += &host("h2", 32, "");
    text += &vm("a", "h1", 24, "");
    text += &vm("b", "h2", 24, "");
    text += &vm("late", "place", 8, "arrive = 2");
    let r = run(&text);
    assert!(r.ha.refused.is_empty());
    assert_eq!(r.summary.reserve_holds_end, None);
}

#[test]
fn a_broken_reserve_is_reported_before_the_failure_it_predicts() {
    let mut text = HEAD.to_string();
    text += &host("h1", 32, "failures = [{ fail = 2 }]");
    text += &host("h2", 16, "");
    text += &vm("a", "h1", 12, "ha = true");
    text += &vm("b", "h1", 12, "ha = true");
    let r = run(&text);
    let before =
        r.ha.verdicts
            .iter()
            .find(|v| v.when == "before-failure")
            .expect("a verdict before the failure");
    assert!(!before.holds);
    assert_eq!(before.failing_scenarios[0].failed, vec!["h1"]);
    assert_eq!(before.failing_scenarios[0].shortfall_memory_mib, 12 * 1024);
    let f = &r.ha.failovers[0];
    let p = f.predicted.as_ref().expect("a prediction");
    assert!(!p.holds);
    // The reserve's prediction is what happened.
    let unplaced: Vec<String> = f.unplaced.iter().map(|u| u.vm.clone()).collect();
    assert_eq!(p.unplaced, unplaced);
}

#[test]
fn an_arrival_on_a_failed_host_is_refused() {
    let mut text = HEAD.to_string();
    text += &host("h1", 32, "failures = [{ fail = 1 }]");
    text += &host("h2", 32, "");
    text += &vm("pinned", "h1", 4, "arrive = 2");
    let r = run(&text);
    assert_eq!(r.ha.refused.len(), 1);
    assert_eq!(r.ha.refused[0].reason, "host h1 has failed");
}

#[test]
fn failover_json_lists_every_failure_per_balancer() {
    let mut text = HEAD.to_string();
    text += &host("h1", 32, "failures = [{ fail = 1 }]");
    text += &host("h2", 32, "");
    text += &vm("a", "h1", 4, "ha = true");
    text += &vm("s", "h1", 4, "");
    let s = Scenario::parse(&text, "t.toml").expect("valid");
    let r = Report::run(&s, &[BalancerKind::Vinfra, BalancerKind::Greedy]).expect("runs");
    let doc: serde_json::Value = serde_json::from_str(&r.failover_json()).expect("JSON");
    assert_eq!(doc[0]["balancer"], "vinfra");
    assert_eq!(doc[1]["balancer"], "greedy");
    for run in doc.as_array().expect("array") {
        let f = &run["failures"][0];
        assert_eq!(f["host"], "h1");
        assert_eq!(f["restarts"][0]["vm"], "a");
        assert_eq!(f["restarts"][0]["host"], "h2");
        assert_eq!(f["stopped"][0], "s");
        assert!(f["planning_ms"].as_f64().is_some());
    }
    assert!(r.summary_table().contains("host failures"));
    assert_eq!(r.failure_steps(), vec![1]);
    assert!(r.plot_svg().contains("host failure"));
}

#[test]
fn a_thousand_hosts_ten_thousand_vms_and_a_rack_failure() {
    // The full-size scenario (scenarios/ha-10k.toml) at a tenth, bounded for a debug build.
    let text = r#"
steps = 3
step_minutes = 10

[[hosts]]
name = "rack"
count = 20
cores = 32
memory_gib = 256
failures = [{ fail = 1 }]

[[hosts]]
name = "h"
count = 980
cores = 32
memory_gib = 256

[[vms]]
name = "db"
count = 1000
host = "place"
vcpus = 4
memory_gib = 32
ha = true
ha_priority = "highest"
demand = { kind = "constant", cpu = 1.5, mem = 0.6 }

[[vms]]
name = "app"
count = 2000
host = "place"
vcpus = 4
memory_gib = 16
ha = true
demand = { kind = "constant", cpu = 1.0, mem = 0.5 }

[[vms]]
name = "web"
count = 7000
host = "place"
vcpus = 2
memory_gib = 16
demand = { kind = "constant", cpu = 0.5, mem = 0.5 }

[[vms]]
name = "late"
count = 10
host = "place"
vcpus = 4
memory_gib = 8
arrive = 2
ha = true
demand = { kind = "constant", cpu = 1.0, mem = 0.5 }
"#;
    let started = std::time::Instant::now();
    let r = run(text);
    assert_eq!(r.ha.failovers.len(), 20);
    let restarted: usize = r.ha.failovers.iter().map(|f| f.restarts.len()).sum();
    let stopped: usize = r.ha.failovers.iter().map(|f| f.stopped.len()).sum();
    // Placement spreads the VMs: about ten per host, three of them HA.
    assert!((40..=80).contains(&restarted), "{restarted}");
    assert!(stopped > restarted, "{stopped}");
    assert_eq!(r.summary.ha_restarted, restarted);
    assert_eq!(r.summary.ha_down_end, 0);
    assert!(r
        .ha
        .failovers
        .iter()
        .flat_map(|f| &f.restarts)
        .all(|x| x.host.starts_with("h-")));
    let whens: Vec<(&str, bool)> = r.ha.verdicts.iter().map(|v| (v.when, v.holds)).collect();
    assert_eq!(
        whens,
        vec![("start", true), ("before-failure", true), ("end", true)]
    );
    assert_eq!(r.steps[2].vms, 10_010 - stopped);
    eprintln!("1,000 hosts, 10,010 VMs, 3 steps: {:?}", started.elapsed());
}

//! Bad scenario files are refused with one clear line naming the file and the field.

use vinfra_placement::{ModelError, RuleError};
use vinfra_sim::{Scenario, SimError};
use vinfra_types::error::chain;

const HEAD: &str = r#"
steps = 4
step_minutes = 10
"#;

const HOST: &str = r#"
[[hosts]]
name = "h1"
cores = 8
memory_gib = 32

[[hosts]]
name = "h2"
cores = 8
memory_gib = 32
"#;

const VMS: &str = r#"
[[vms]]
name = "a"
host = "h1"
vcpus = 2
memory_gib = 4
demand = { kind = "constant", cpu = 1.0, mem = 0.5 }

[[vms]]
name = "b"
host = "place"
vcpus = 2
memory_gib = 4
demand = { kind = "constant", cpu = 1.0, mem = 0.5 }
"#;

fn err(text: &str) -> SimError {
    match Scenario::parse(text, "bad.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

fn message(text: &str) -> String {
    let m = chain(&err(text));
    assert!(m.starts_with("bad.toml: "), "{m}");
    assert!(!m.contains('\n'), "{m}");
    m
}

#[test]
fn a_good_file_parses() {
    let s = Scenario::parse(&format!("{HEAD}{HOST}{VMS}"), "good.toml").expect("valid");
    assert_eq!(s.name, "good");
    assert_eq!(s.hosts.len(), 2);
    assert_eq!(s.vms[1].host, None);
    assert_eq!(s.vms[0].memory_mib, 4096);
}

#[test]
fn contradictory_rules_get_the_library_error() {
    let text = format!(
        r#"{HEAD}{HOST}{VMS}
[[rules]]
name = "together"
kind = "affinity"
strength = "must"
vms = ["a", "b"]

[[rules]]
name = "apart"
kind = "anti-affinity"
strength = "must"
vms = ["a", "b"]
"#
    );
    let e = err(&text);
    match &e {
        SimError::Model { source, .. } => match source.as_ref() {
            ModelError::Rule(RuleError::TogetherAndApart { anti_affinity, .. }) => {
                assert_eq!(anti_affinity, "apart")
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(e.to_string(), "bad.toml: the cluster is refused");
    let m = chain(&e);
    assert!(
        m.starts_with("bad.toml: the cluster is refused: rules contradict each other"),
        "{m}"
    );
    assert!(m.contains("'together'") && m.contains("'apart'"), "{m}");
}

#[test]
fn a_must_anti_affinity_larger_than_the_cluster_is_refused() {
    let text = format!(
        r#"{HEAD}{HOST}{VMS}
[[vms]]
name = "c"
host = "h2"
vcpus = 1
memory_gib = 1
demand = {{ kind = "constant", cpu = 0.1, mem = 0.1 }}

[[rules]]
name = "spread"
kind = "anti-affinity"
strength = "must"
vms = ["a", "b", "c"]
"#
    );
    let m = message(&text);
    assert!(
        m.contains("needs 3 different hosts, the cluster has 2"),
        "{m}"
    );
}

#[test]
fn missing_fields_are_named_with_their_line() {
    let text = format!("{HEAD}\n[[hosts]]\nname = \"h1\"\nmemory_gib = 32\n{VMS}");
    let m = message(&text);
    assert!(m.contains("missing field `cores`"), "{m}");
    assert!(m.contains("line 5"), "{m}");
    let m = message(&format!("step_minutes = 10\n{HOST}{VMS}"));
    assert!(m.contains("missing field `steps`"), "{m}");
}

#[test]
fn negative_and_zero_sizes_are_refused() {
    let m = message(&format!(
        "{HEAD}{}{VMS}",
        HOST.replace("cores = 8", "cores = -8")
    ));
    assert!(m.contains("hosts[0].cores must be 1 to"), "{m}");
    let m = message(&format!(
        "{HEAD}{HOST}{}",
        VMS.replacen("memory_gib = 4", "memory_gib = -4", 1)
    ));
    assert!(
        m.contains("vms[0].memory_gib must be a finite number > 0, got -4"),
        "{m}"
    );
    let m = message(&format!(
        "{HEAD}{HOST}{}",
        VMS.replacen("vcpus = 2", "vcpus = 0", 1)
    ));
    assert!(m.contains("vms[0].vcpus"), "{m}");
    let m = message(&format!(
        "{HEAD}{HOST}{}",
        VMS.replacen("cpu = 1.0", "cpu = -1.0", 1)
    ));
    assert!(
        m.contains("vms[0].demand.cpu must be a finite number ≥ 0"),
        "{m}"
    );
    let m = message(&format!(
        "{HEAD}{HOST}{}",
        VMS.replacen("mem = 0.5", "mem = 1.5", 1)
    ));
    assert!(m.contains("vms[0].demand.mem is a fraction"), "{m}");
    let m = message(&format!("steps = -3\nstep_minutes = 10\n{HOST}{VMS}"));
    assert!(m.contains("steps must be 1 to"), "{m}");
}

#[test]
fn unknown_names_are_refused() {
    let m = message(&format!(
        "{HEAD}{HOST}{}",
        VMS.replacen("host = \"h1\"", "host = \"h9\"", 1)
    ));
    assert!(
        m.contains("vms[0].host host 'h9' is not in the scenario"),
        "{m}"
    );
    let rule = format!(
        "{HEAD}{HOST}{VMS}\n[[rules]]\nname = \"r\"\nkind = \"run-on\"\nstrength = \"must\"\nvms = [\"a\"]\nhosts = [\"h7\"]\n"
    );
    assert!(message(&rule).contains("rules[0].hosts host 'h7' is not in the scenario"));
    let rule = rule.replace("[\"a\"]", "[\"zz\"]").replace("h7", "h1");
    assert!(message(&rule).contains("rules[0].vms VM 'zz' is not in the scenario"));
    let flow =
        format!("{HEAD}{HOST}{VMS}\n[[traffic]]\na = \"a\"\nb = \"nope\"\nbytes_per_s = 10\n");
    assert!(message(&flow).contains("traffic[0].b VM 'nope'"));
    let kind = format!(
        "{HEAD}{HOST}{}",
        VMS.replacen("kind = \"constant\"", "kind = \"wave\"", 1)
    );
    assert!(message(&kind).contains("vms[0].demand.kind must be"));
    let strength = format!(
        "{HEAD}{HOST}{VMS}\n[[rules]]\nname = \"r\"\nkind = \"affinity\"\nstrength = \"maybe\"\nvms = [\"a\", \"b\"]\n"
    );
    assert!(message(&strength).contains("rules[0].strength must be \"must\" or \"should\""));
}

#[test]
fn typos_and_misplaced_fields_are_refused() {
    let m = message(&format!(
        "{HEAD}{}{VMS}",
        HOST.replacen("cores", "coers", 1)
    ));
    assert!(m.contains("unknown field `coers`"), "{m}");
    let m = message(&format!(
        "{HEAD}{HOST}{}",
        VMS.replacen("mem = 0.5 }", "mem = 0.5, period = 3 }", 1)
    ));
    assert!(
        m.contains("vms[0].demand.period is not used by kind \"constant\""),
        "{m}"
    );
    let m = message(&format!("{HEAD}{HOST}{VMS}{VMS}"));
    assert!(m.contains("vms 'a' is listed twice"), "{m}");
}

#[test]
fn bad_toml_gives_the_line() {
    let m = message(&format!("{HEAD}{HOST}\n[[vms]\nname = 1\n"));
    assert!(m.contains("line 15, column 7"), "{m}");
    let m = message("steps = 4\nstep_minutes = \"ten\"\n");
    assert!(m.contains("line 2"), "{m}");
}

#[test]
fn a_missing_file_names_it() {
    let e = Scenario::load(std::path::Path::new("/nonexistent/x.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/x.toml"));
    assert!(!e.is_input());
}

#[test]
fn arrivals_that_fit_nowhere_stop_the_run_with_the_step_and_vm() {
    let text = format!(
        "{HEAD}{HOST}{VMS}\n[[vms]]\nname = \"big\"\nhost = \"place\"\nvcpus = 2\nmemory_gib = 40\narrive = 2\ndemand = {{ kind = \"constant\", cpu = 1.0, mem = 0.5 }}\n"
    );
    let s = Scenario::parse(&text, "big.toml").expect("valid");
    let e = vinfra_sim::simulate(&s, vinfra_sim::BalancerKind::Vinfra).unwrap_err();
    assert_eq!(e.to_string(), "step 2: VM 'big' cannot be placed");
    let m = chain(&e);
    assert!(
        m.starts_with(
            "step 2: VM 'big' cannot be placed: no host can take VM 'big' (2 vCPU, 40960 MiB): \
             h1, h2: short of capacity (closest, h1: memory short by 12288 MiB"
        ),
        "{m}"
    );
}

/// Two hosts (h1 fails at step 2) and VMs with HA; `extra` goes into VM `a`'s entry.
fn ha_file(host_failures: &str, a_extra: &str, tail: &str) -> String {
    format!(
        "{HEAD}\n[[hosts]]\nname = \"h1\"\ncores = 8\nmemory_gib = 32\nfailures = {host_failures}\n\
         \n[[hosts]]\nname = \"h2\"\ncores = 8\nmemory_gib = 32\n\
         \n[[vms]]\nname = \"a\"\nhost = \"h1\"\nvcpus = 2\nmemory_gib = 4\n{a_extra}\n\
         demand = {{ kind = \"constant\", cpu = 1.0, mem = 0.5 }}\n\
         \n[[vms]]\nname = \"b\"\ncount = 2\nhost = \"place\"\nvcpus = 2\nmemory_gib = 4\nha = true\n\
         demand = {{ kind = \"constant\", cpu = 1.0, mem = 0.5 }}\n{tail}"
    )
}

#[test]
fn ha_fields_and_host_failures_parse() {
    let s = Scenario::parse(
        &ha_file(
            "[{ fail = 1, return = 2 }, { fail = 3 }]",
            "ha = true\nha_priority = \"highest\"\nha_start_after = \"b-1\"",
            "\n[ha]\ntolerate_host_failures = 2\n",
        ),
        "ha.toml",
    )
    .expect("valid");
    assert_eq!(s.hosts[0].failures, vec![(1, Some(2)), (3, None)]);
    assert!(s.hosts[0].failed_at(1) && !s.hosts[0].failed_at(2) && s.hosts[0].failed_at(3));
    let a = s.vms[0].ha.as_ref().expect("HA on");
    assert_eq!(a.priority, vinfra_ha::Priority::Highest);
    assert_eq!(a.start_after.as_deref(), Some("b-1"));
    assert_eq!(
        s.vms[1].ha.as_ref().map(|p| p.priority),
        Some(vinfra_ha::Priority::Medium)
    );
    assert_eq!(s.ha.tolerate_host_failures, 2);
    // Default: one host failure tolerated.
    let s = Scenario::parse(&ha_file("[]", "", ""), "ha.toml").expect("valid");
    assert_eq!(s.ha.tolerate_host_failures, 1);
    assert_eq!(s.vms[0].ha, None);
}

#[test]
fn bad_ha_fields_and_host_failures_are_refused_naming_the_field() {
    let cases: [(String, &str); 11] = [
        (
            ha_file("[]", "ha = true\nha_start_after = \"nobody\"", ""),
            "vms[0].ha_start_after VM 'nobody' is not in the scenario",
        ),
        (
            ha_file("[]", "ha = true\nha_start_after = \"a\"", ""),
            "vms[0].ha_start_after VM 'a' cannot start after itself",
        ),
        (
            ha_file("[]", "ha = true\nha_priority = \"urgent\"", ""),
            "vms[0].ha_priority must be \"highest\", \"high\", \"medium\" or \"low\", got \"urgent\"",
        ),
        (
            ha_file("[]", "ha_priority = \"high\"", ""),
            "vms[0].ha_priority is set but HA is off for the VM",
        ),
        (
            ha_file("[]", "ha = false\nha_start_after = \"b-1\"", ""),
            "vms[0].ha_start_after is set but HA is off",
        ),
        (
            ha_file("[{ fail = 4 }]", "", ""),
            "hosts[0].failures[0].fail must be a step of the run after the first, 1 to 3, got 4",
        ),
        (
            ha_file("[{ fail = 0 }]", "", ""),
            "hosts[0].failures[0].fail must be a step of the run after the first",
        ),
        (
            ha_file("[{ fail = 1 }, { fail = 3 }]", "", ""),
            "hosts[0].failures[1].fail the host fails twice: it failed at step 1 and never returns",
        ),
        (
            ha_file("[{ fail = 1, return = 3 }, { fail = 2 }]", "", ""),
            "hosts[0].failures[1].fail the host fails twice: at step 2 it is failed since step 1",
        ),
        (
            ha_file("[{ fail = 2, return = 2 }]", "", ""),
            "hosts[0].failures[0].return must be after fail (2), got 2",
        ),
        (
            ha_file("[]", "", "\n[ha]\ntolerate_host_failures = 40\n"),
            "ha.tolerate_host_failures must be 0 to 32, got 40",
        ),
    ];
    for (text, want) in cases {
        let m = message(&text);
        assert!(m.contains(want), "{m}\nwanted: {want}");
    }
    // Start-afters in a circle (b-1 → a → b-1), as the API refuses them.
    let m = message(
        &ha_file("[]", "ha = true\nha_start_after = \"b-1\"", "").replace(
            "ha = true\ndemand",
            "ha = true\nha_start_after = \"a\"\ndemand",
        ),
    );
    assert!(m.contains("start-afters form a circle"), "{m}");
    assert!(
        m.contains("a → b-1 → a") || m.contains("b-1 → a → b-1"),
        "{m}"
    );
    // Typos in the new places are refused too.
    let m = message(&ha_file("[{ fail = 1, retrun = 2 }]", "", ""));
    assert!(m.contains("unknown field `retrun`"), "{m}");
    let m = message(&ha_file("[]", "", "\n[ha]\ntolerate = 1\n"));
    assert!(m.contains("unknown field `tolerate`"), "{m}");
}

//! Pieces of the error messages: a desired power state, a fence command's output, lists of the
//! VMs, NICs and groups that hold something.

use vinfra_types::ha::FenceOutcome;
use vinfra_types::PowerState;

/// The desired power state in a message.
pub(super) fn state_word(s: &PowerState) -> &'static str {
    s.as_str()
}

/// `: <the output's tail on one line>`, or nothing when the command wrote nothing.
pub(super) fn fence_tail(o: &FenceOutcome) -> String {
    let tail = o.tail_line();
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

/// `VMs a, b` or `VM a`, at most the names given, and how many more.
pub(super) fn vm_list(users: &[String], more: &usize) -> String {
    let total = users.len() + more;
    let mut s = format!(
        "VM{} {}",
        if total == 1 { "" } else { "s" },
        users.join(", ")
    );
    if *more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

/// `NICs vm nic 0, … and N more; rules of groups a, b`.
pub(super) fn sg_users(nics: &[String], more: &usize, groups: &[String]) -> String {
    let mut parts = Vec::new();
    if !nics.is_empty() {
        let total = nics.len() + more;
        let mut s = format!(
            "NIC{} {}",
            if total == 1 { "" } else { "s" },
            nics.join(", ")
        );
        if *more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        parts.push(s);
    }
    if !groups.is_empty() {
        parts.push(format!(
            "the rules of group{} {}",
            if groups.len() == 1 { "" } else { "s" },
            groups.join(", ")
        ));
    }
    parts.join(" and ")
}

/// `2 of 100 VMs were not created: web-3 (why); web-9 (why); the other 98 were` (the first
/// ten named, then how many more).
pub(super) fn not_created<E: std::error::Error>(count: u32, failed: &[(String, E)]) -> String {
    const NAMED: usize = 10;
    let mut s = format!(
        "{} of {count} VMs {} not created: ",
        failed.len(),
        if failed.len() == 1 { "was" } else { "were" }
    );
    let named: Vec<String> = failed
        .iter()
        .take(NAMED)
        .map(|(vm, e)| format!("{vm} ({})", vinfra_types::error::Chain(e)))
        .collect();
    s.push_str(&named.join("; "));
    if failed.len() > NAMED {
        s.push_str(&format!(" and {} more", failed.len() - NAMED));
    }
    let created = (count as usize).saturating_sub(failed.len());
    s.push_str(&format!(
        "; the other {created} {}",
        if created == 1 { "was" } else { "were" }
    ));
    s
}

//! The creates `placement_api` measures: one per request or with a count, each followed to
//! its task's end by a pool of clients ([`create_all`], [`create_many_all`]), and what they
//! cost ([`measure`], [`print_measured`]).

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vinfra_types::api::CreateVmRequest;
use vinfra_types::task::{Task, TaskState};

use super::common::{self, ms, ok, Api, FleetProcess};
use super::{console_cpu_between, is_ha, long_poll, many_base, request, RULE_EVERY, TARGET_PER_S};

/// One create as the client saw it.
pub struct Done {
    pub name: String,
    pub start: Instant,
    pub end: Instant,
    pub status: u16,
    pub body: Vec<u8>,
}

/// One create as a client makes it: `POST /api/v1/vms` with `Prefer: wait=4` (none with
/// `--long-poll`), then its task, unless it had ended, followed with long polls (`GET
/// /api/v1/tasks/{id}?wait_s=30`) to its end. 201 and the VM when the task succeeded;
/// otherwise the status and body of what failed (the task's problem when it failed).
pub async fn create_one(api: &Api, req: &CreateVmRequest) -> (u16, Vec<u8>) {
    let prefer = (!long_poll()).then_some("wait=4");
    let (status, body) = api.post_preferring("/api/v1/vms", req, prefer).await;
    if status != 202 {
        return (status, body);
    }
    let mut task: Task = ok(serde_json::from_slice(&body), "the create's task");
    while !task.state.is_final() {
        let (status, body) = api
            .get(&format!("/api/v1/tasks/{}?wait_s=30", task.id))
            .await;
        if status != 200 {
            return (status, body);
        }
        task = ok(serde_json::from_slice(&body), "the create's task");
    }
    match (task.state, task.result, task.error) {
        (TaskState::Succeeded, Some(vm), _) => (201, vm.to_string().into_bytes()),
        (_, _, Some(problem)) => (problem.status, ok(serde_json::to_vec(&problem), "problem")),
        (state, ..) => (500, format!("task ended {state:?}").into_bytes()),
    }
}

/// Runs `jobs` on `concurrency` clients, each taking the next job when its last is done
/// (`run` makes one job's requests and returns its creates); every create and the wall time.
async fn pool<J, F, Fut>(jobs: Vec<J>, concurrency: usize, run: F) -> (Vec<Done>, Duration)
where
    J: Send + 'static,
    F: Fn(J) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Vec<Done>> + Send,
{
    let queue = Arc::new(Mutex::new(jobs.into_iter().rev().collect::<Vec<_>>()));
    let done = Arc::new(Mutex::new(Vec::new()));
    let t = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (run, queue, done) = (run.clone(), queue.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(job) = next else { break };
                let created = run(job).await;
                done.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(created);
            }
        }));
    }
    for c in clients {
        ok(c.await, "client");
    }
    let wall = t.elapsed();
    let done = std::mem::take(&mut *done.lock().unwrap_or_else(|p| p.into_inner()));
    (done, wall)
}

/// `names` created one per request by `concurrency` clients; every create and the wall time.
pub async fn create_all(
    api: &Api,
    names: Vec<String>,
    concurrency: usize,
) -> (Vec<Done>, Duration) {
    let api = api.clone();
    pool(names, concurrency, move |name: String| {
        let api = api.clone();
        async move {
            let start = Instant::now();
            let (status, body) = create_one(&api, &request(&name)).await;
            let end = Instant::now();
            vec![Done {
                name,
                start,
                end,
                status,
                body,
            }]
        }
    })
    .await
}

/// `creates` VMs created with `count` per request (`POST /api/v1/vms` with `count`, its task
/// followed to its end) by `concurrency` clients; every VM as one [`Done`] with its request's
/// times (201 when the task listed it), and the wall time.
pub async fn create_many_all(
    api: &Api,
    creates: usize,
    count: usize,
    concurrency: usize,
) -> (Vec<Done>, Duration) {
    let api = api.clone();
    pool(
        (0..creates.div_ceil(count)).collect(),
        concurrency,
        move |b: usize| {
            let api = api.clone();
            async move {
                let n = count.min(creates - b * count);
                let base = many_base(b);
                let mut req = request(&base);
                req.spec.ha.enabled = is_ha(b * count);
                req.count = Some(n as u32);
                let start = Instant::now();
                let (status, body) = create_one(&api, &req).await;
                let end = Instant::now();
                let listed: HashSet<String> = if status == 201 {
                    let c: vinfra_types::api::CreatedVms =
                        ok(serde_json::from_slice(&body), "the created VMs");
                    c.vms.into_iter().map(|v| v.name).collect()
                } else {
                    HashSet::new()
                };
                (1..=n)
                    .map(|i| {
                        let name = format!("{base}-{i}");
                        let created = listed.contains(&name);
                        Done {
                            status: if status == 201 && !created {
                                500
                            } else {
                                status
                            },
                            body: if created { Vec::new() } else { body.clone() },
                            name,
                            start,
                            end,
                        }
                    })
                    .collect()
            }
        },
    )
    .await
}

/// p50 / p99 of `v`, ms.
fn p50_p99(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.sort_unstable();
    format!(
        "p50 {:7.2} ms  p99 {:7.2} ms",
        ms(common::pct(&v, 50)),
        ms(common::pct(&v, 99))
    )
}

/// One set of creates as measured.
pub struct Measured {
    pub done: Vec<Done>,
    pub wall: Duration,
    /// The console's CPU seconds over them, and the agents' and clients'.
    console_cpu: f64,
    agents_cpu: f64,
    reports: u64,
    pushes: u64,
    load: (String, String),
}

impl Measured {
    pub fn created(&self) -> usize {
        self.done.iter().filter(|d| d.status == 201).count()
    }

    pub fn rate(&self) -> f64 {
        self.created() as f64 / self.wall.as_secs_f64()
    }
}

/// Runs `creates` and measures them. The clients run in this process on threads named
/// `agents-*`; the fleet in its own.
pub fn measure(
    fleet: &mut FleetProcess,
    creates: impl FnOnce() -> (Vec<Done>, Duration),
) -> Measured {
    let load0 = common::loadavg();
    let count0 = fleet.counters();
    let (fleet_cpu0, cpu0) = (fleet.cpu_s(), common::cpu_by_thread());
    let (done, wall) = creates();
    let (fleet_cpu1, cpu1) = (fleet.cpu_s(), common::cpu_by_thread());
    let count1 = fleet.counters();
    Measured {
        done,
        wall,
        console_cpu: console_cpu_between(&cpu0, &cpu1),
        agents_cpu: common::cpu_between(&cpu0, &cpu1, "agents") + fleet_cpu1 - fleet_cpu0,
        reports: count1.reports - count0.reports,
        pushes: count1.switch_pushes - count0.switch_pushes,
        load: (load0, common::loadavg()),
    }
}

/// Prints one set of creates (`label`); whether it met the target with every create done.
pub fn print_measured(
    label: &str,
    m: &Measured,
    creates: usize,
    broken: usize,
    stamps: &common::CreateTimes,
    ruled: &dyn Fn(&str) -> bool,
    idle_cpu: f64,
) -> bool {
    let created = m.created();
    let rate = m.rate();
    let failed: Vec<&Done> = m.done.iter().filter(|d| d.status != 201).collect();
    // Where each create's time went, from the agent's stamps.
    let (mut before, mut agent, mut after) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lat_rules, mut lat_free) = (Vec::new(), Vec::new());
    for d in m.done.iter().filter(|d| d.status == 201) {
        let lat = d.end - d.start;
        if ruled(&d.name) {
            lat_rules.push(lat);
        } else {
            lat_free.push(lat);
        }
        if let Some((recv, answered)) = stamps.get(&d.name) {
            before.push(recv.saturating_duration_since(d.start));
            agent.push(answered.saturating_duration_since(recv));
            after.push(d.end.saturating_duration_since(answered));
        }
    }
    let all: Vec<Duration> = m.done.iter().map(|d| d.end - d.start).collect();
    println!(
        "  {label}: created {created}/{creates} in {:.2} s: {rate:.0} placements/s (load average \
         {} -> {}); every {RULE_EVERY}th named in a must rule (of those sampled, {broken} failed \
         or broke it)",
        m.wall.as_secs_f64(),
        m.load.0,
        m.load.1
    );
    for f in failed.iter().take(3) {
        println!(
            "  failed: {} {} {}",
            f.name,
            f.status,
            String::from_utf8_lossy(&f.body)
        );
    }
    println!("  latency (of its request), all creates: {}", p50_p99(all));
    println!("  latency, named in no rule:   {}", p50_p99(lat_free));
    println!("  latency, named in a rule:    {}", p50_p99(lat_rules));
    println!(
        "  split by the agent's stamps: console before CreateVm {}; agent round trip {}; console after the answer {}",
        p50_p99(before),
        p50_p99(agent),
        p50_p99(after)
    );
    println!(
        "  console CPU with no request in flight (reports, resyncs): {idle_cpu:.2} s per s; \
         during the creates {:.2} s per s",
        m.console_cpu / m.wall.as_secs_f64()
    );
    println!(
        "  CPU during the creates: console {:.2} s ({:.3} ms per placement), agents + clients {:.2} s; {} agent reports; {} switch configurations pushed ({:.1} per create)",
        m.console_cpu,
        m.console_cpu * 1000.0 / created.max(1) as f64,
        m.agents_cpu,
        m.reports,
        m.pushes,
        m.pushes as f64 / created.max(1) as f64
    );
    rate >= TARGET_PER_S && failed.is_empty()
}

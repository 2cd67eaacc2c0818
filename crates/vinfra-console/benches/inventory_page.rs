//! The web console's inventory page (`GET /`, rendered on the server) with 1,000 VMs on 10 hosts,
//! loaded in headless Chromium, side by side with the same view's data fetched as JSON by the
//! same browser on the same page (`GET /api/v1/vms?limit=200`, the page's 200 VMs, and
//! `GET /api/v1/hosts`, at once, with `fetch`, then parsed): its weight (the page's HTML and assets against the two JSON bodies)
//! and its time (the page's `domInteractive` and `loadEventEnd` from Navigation Timing against
//! the two answers fetched and parsed). Targets (see docs/benchmarks.md): the page weighs no
//! more than the JSON, and is interactive within twice the time the JSON takes to arrive and be
//! parsed (a page built in the browser from that JSON would still have its DOM to make).
//!
//! The console runs in-process (real store, real HTTPS with the cluster CA) with 10 fake agents
//! reporting their 100 VMs each as running every 2 s, as in the `api_list` benchmark. The browser
//! accepts the console's certificate by its key alone (`vinfra_browser::pin`), logs in with the
//! API token through the login form (a session cookie), and keeps its connection to the console
//! between loads; the API's requests carry the token as a bearer, on the same origin and TLS.
//!
//! `cargo bench -p vinfra-console --bench inventory_page` (needs `chromium` and `chromedriver`:
//! without them it prints a `SKIPPED:` line).

mod common;

use std::time::{Duration, Instant};

use common::{ok, Bench, Fleet, SeedVm};
use serde::Deserialize;
use serde_json::json;
use vinfra_browser::{Chromium, ChromiumOptions};
use vinfra_types::HostCapacity;

const VMS: usize = 1_000;
/// VMs on one page of the inventory (`web::views::INVENTORY_PAGE`), and asked of the API.
const PAGE: usize = 200;
const HOSTS: usize = 10;
/// Loads of each kind measured (after one of each not counted).
const LOADS: usize = 20;
/// Target: the page's bytes (HTML + style sheet + script) against the JSON bodies'.
const TARGET_BYTES_RATIO: f64 = 1.0;
/// Target: the page's `domInteractive` against the JSON fetched and parsed, at the median.
const TARGET_TIME_RATIO: f64 = 2.0;

/// What one load of the page measured (milliseconds from the navigation's start; bytes).
#[derive(Debug, Deserialize)]
struct PageLoad {
    response_end: f64,
    dom_interactive: f64,
    load_event_end: f64,
    html_bytes: u64,
    asset_bytes: u64,
    rows: usize,
}

/// What one fetch of the JSON measured (milliseconds from its start; bytes).
#[derive(Debug, Deserialize)]
struct JsonLoad {
    fetched: f64,
    parsed: f64,
    built: f64,
    vms_bytes: u64,
    hosts_bytes: u64,
    vms: usize,
    hosts: usize,
}

/// Navigation Timing and Resource Timing of the page just loaded.
const PAGE_TIMING: &str = r#"
const n = performance.getEntriesByType('navigation')[0];
const assets = performance.getEntriesByType('resource')
    .filter(r => r.name.includes('/assets/'))
    .reduce((sum, r) => sum + r.decodedBodySize, 0);
return {
    response_end: n.responseEnd - n.startTime,
    dom_interactive: n.domInteractive - n.startTime,
    load_event_end: n.loadEventEnd - n.startTime,
    html_bytes: n.decodedBodySize,
    asset_bytes: assets,
    rows: document.querySelectorAll('table.vms tbody tr').length,
};
"#;

/// The inventory's data as JSON, from the page: both lists at once, read and parsed.
const JSON_FETCH: &str = r#"
return (async (token) => {
const get = { headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' } };
const t0 = performance.now();
const answers = await Promise.all([fetch('/api/v1/vms?limit=200', get), fetch('/api/v1/hosts', get)]);
for (const a of answers) { if (!a.ok) { throw new Error(a.url + ': ' + a.status); } }
const bodies = await Promise.all(answers.map(a => a.text()));
const fetched = performance.now() - t0;
const vms = JSON.parse(bodies[0]);
const hosts = JSON.parse(bodies[1]);
const parsed = performance.now() - t0;
// What a page built in the browser from the JSON would still do: the VMs' table, laid out.
const table = document.createElement('table');
const body = table.createTBody();
for (const v of vms) {
    const row = body.insertRow();
    const link = document.createElement('a');
    link.href = '/vms/' + v.name;
    link.textContent = v.name;
    row.insertCell().append(link);
    for (const text of [v.state, v.host, String(v.vcpus), v.memory_mib + ' MiB',
                        String(v.usage.cpu_cores), v.usage.rss_mib + ' MiB']) {
        row.insertCell().textContent = text;
    }
}
document.body.append(table);
table.getBoundingClientRect();
const built = performance.now() - t0;
table.remove();
const bytes = s => new TextEncoder().encode(s).length;
return {
    fetched, parsed, built,
    vms_bytes: bytes(bodies[0]), hosts_bytes: bytes(bodies[1]),
    vms: vms.length, hosts: hosts.length,
};
})(arguments[0]);
"#;

fn seed() -> Vec<SeedVm> {
    (0..VMS)
        .map(|i| {
            let name = format!("vm-{i:04}");
            SeedVm {
                id: uuid::Uuid::new_v4(),
                spec: common::spec(&name, 1, 256),
                name,
                host: format!("h{}", i % HOSTS),
            }
        })
        .collect()
}

/// The median and the 90th percentile of `values`.
fn p50_p90(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |p: usize| values[((values.len() * p).div_ceil(100)).max(1) - 1];
    (at(50), at(90))
}

fn main() {
    if !vinfra_browser::needs().named("inventory_page").met() {
        return;
    }
    let dir = ok(tempfile::tempdir(), "tempdir");
    let vms = seed();
    common::seed_store(dir.path(), &vms, &[]);

    let console_rt = common::runtime("console", 2);
    let agents_rt = common::runtime("agents", 1);
    let bench = console_rt.block_on(Bench::start(dir.path()));
    let api = bench.api();
    let hosts = common::fleet_hosts(&vms, HOSTS);
    let capacity = HostCapacity {
        cores: 64,
        memory_mib: 256 * 1024,
    };
    let fleet = agents_rt.block_on(Fleet::join(
        &api,
        bench.agent_endpoint(),
        hosts,
        capacity,
        common::REPORT_INTERVAL,
        4,
        Instant::now() + Duration::from_secs(120),
    ));
    let connected =
        agents_rt.block_on(common::wait_connected(&api, HOSTS, Duration::from_secs(60)));
    assert_eq!(connected, HOSTS, "hosts connected");
    std::thread::sleep(common::REPORT_INTERVAL * 2);

    let spki = ok(
        vinfra_browser::server_spki_sha256(&bench.base, &bench.running.ca_pem),
        "the console's key",
    );
    let browser = ok(
        Chromium::launch(&ChromiumOptions {
            label: "inventory-page".into(),
            trusted_spki: vec![spki],
        }),
        "browser",
    );
    browser.goto(&format!("{}/login", bench.base));
    browser.fill("#token", &bench.token);
    browser.click_to_next_page("form.card button[type=submit]");
    assert_eq!(browser.path(), "/", "logged in");
    let agent = browser.execute("return navigator.userAgent;", vec![]);

    let load_page = || -> PageLoad {
        browser.goto(&format!("{}/", bench.base));
        let v = browser.execute(PAGE_TIMING, vec![]);
        let load: PageLoad = ok(serde_json::from_value(v), "page timing");
        assert_eq!(load.rows, PAGE, "the page lists its page of VMs");
        load
    };
    // The floor of any navigation (reference only): the login form, a page of a few elements
    // with the same style sheet and script, loaded the same way.
    let load_floor = || -> f64 {
        browser.goto(&format!("{}/login", bench.base));
        let v = browser.execute(PAGE_TIMING, vec![]);
        let load: PageLoad = ok(serde_json::from_value(v), "page timing");
        load.dom_interactive
    };
    let load_json = || -> JsonLoad {
        let v = browser.execute(JSON_FETCH, vec![json!(bench.token)]);
        let load: JsonLoad = ok(serde_json::from_value(v), "JSON timing");
        assert_eq!(
            (load.vms, load.hosts),
            (PAGE, HOSTS),
            "the JSON lists the page's VMs and every host"
        );
        load
    };
    // One of each not counted: the first load fetches the assets, the first fetch warms the
    // API's path.
    load_page();
    load_json();
    load_floor();
    browser.assert_no_errors("the inventory", &[]);
    let load0 = common::loadavg();
    let (mut pages, mut jsons, mut floors) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..LOADS {
        pages.push(load_page());
        jsons.push(load_json());
        floors.push(load_floor());
    }
    browser.assert_no_errors("the inventory", &[]);
    let load1 = common::loadavg();
    drop(browser);
    drop(fleet);
    console_rt.block_on(async { ok(bench.running.shutdown().await, "shutdown") });

    let page_bytes = pages[0].html_bytes + pages[0].asset_bytes;
    let json_bytes = jsons[0].vms_bytes + jsons[0].hosts_bytes;
    let (resp50, resp90) = p50_p90(pages.iter().map(|p| p.response_end).collect());
    let (inter50, inter90) = p50_p90(pages.iter().map(|p| p.dom_interactive).collect());
    let (loaded50, loaded90) = p50_p90(pages.iter().map(|p| p.load_event_end).collect());
    let (fetch50, fetch90) = p50_p90(jsons.iter().map(|j| j.fetched).collect());
    let (parsed50, parsed90) = p50_p90(jsons.iter().map(|j| j.parsed).collect());
    let (built50, built90) = p50_p90(jsons.iter().map(|j| j.built).collect());
    let (floor50, floor90) = p50_p90(floors);
    let kib = |b: u64| b as f64 / 1024.0;
    println!(
        "inventory page, {VMS} VMs on {HOSTS} hosts (fake agents reading their state every {} s), {LOADS} \
         loads of each in headless Chromium ({}), load average {load0} before, {load1} after",
        common::REPORT_INTERVAL.as_secs(),
        agent.as_str().unwrap_or("?")
    );
    println!(
        "  page: {:.1} KiB (HTML {:.1} KiB + style sheet and script {:.1} KiB); responseEnd p50 \
         {resp50:.1} ms p90 {resp90:.1} ms; domInteractive p50 {inter50:.1} ms p90 {inter90:.1} \
         ms; loadEventEnd p50 {loaded50:.1} ms p90 {loaded90:.1} ms",
        kib(page_bytes),
        kib(pages[0].html_bytes),
        kib(pages[0].asset_bytes)
    );
    println!(
        "  JSON: {:.1} KiB (/api/v1/vms?limit=200 {:.1} KiB + /api/v1/hosts {:.1} KiB); fetched p50 \
         {fetch50:.1} ms p90 {fetch90:.1} ms; fetched and parsed p50 {parsed50:.1} ms p90 \
         {parsed90:.1} ms",
        kib(json_bytes),
        kib(jsons[0].vms_bytes),
        kib(jsons[0].hosts_bytes)
    );
    println!(
        "  JSON and the VMs' table built from it by a script, laid out (what a page rendered in \
         the browser would do; not a target): p50 {built50:.1} ms p90 {built90:.1} ms"
    );
    println!(
        "  the login form's domInteractive, the floor of a navigation (not a target): p50 \
         {floor50:.1} ms p90 {floor90:.1} ms; the inventory's above it p50 {:.1} ms",
        inter50 - floor50
    );
    let bytes_ratio = page_bytes as f64 / json_bytes as f64;
    let time_ratio = inter50 / parsed50;
    println!(
        "  ratio page/JSON: bytes {bytes_ratio:.2}x; domInteractive/parsed p50 {time_ratio:.2}x, \
         loadEventEnd/parsed p50 {:.2}x; domInteractive/built p50 {:.2}x",
        loaded50 / parsed50,
        inter50 / built50
    );
    let verdict = |pass: bool| if pass { "PASS" } else { "FAIL" };
    println!(
        "targets: page bytes / JSON bytes <= {TARGET_BYTES_RATIO:.1}; page domInteractive p50 / \
         JSON fetched and parsed p50 <= {TARGET_TIME_RATIO:.1}"
    );
    println!(
        "RESULT inventory_page_bytes {bytes_ratio:.2} {}",
        verdict(bytes_ratio <= TARGET_BYTES_RATIO)
    );
    println!(
        "RESULT inventory_page_interactive {time_ratio:.2} {}",
        verdict(time_ratio <= TARGET_TIME_RATIO)
    );
}

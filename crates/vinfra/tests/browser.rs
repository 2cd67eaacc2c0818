//! The web console in a real browser: a headless Chromium under chromedriver
//! (`crates/vinfra-browser`) against a lab of two hosts running real QEMU guests. A wrong token
//! is refused on the login page; the right one logs in; a VM is created through the form with
//! the lab's guest kernel and initramfs and is seen running on its page; a bad value on the form
//! shows the API's problem+json words and status; a cross-site form posted from a page on
//! another origin is refused without effect; the VM is stopped and seen stopped, then deleted
//! through its confirmation and seen gone from the inventory. The browser's log must have no
//! error on any page visited (an uncaught exception, a failed resource, a security-policy
//! violation), except a refused request's status where the step expects one.
//!
//! The browser accepts the console's certificate by its public key alone
//! (`--ignore-certificate-errors-spki-list`, the key read through a TLS handshake verified
//! against the lab's CA: see `vinfra_browser::pin`), not every certificate.
//!
//! A failed step leaves a screenshot and the page's source under
//! `<target>/browser-screenshots/` and prints their path.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{api, can_run_labs, start_lab, vm, vm_names, BOOT_TIMEOUT};
use vinfra_browser::{server_spki_sha256, Chromium, ChromiumOptions};
use vinfra_client::RestError;
use vinfra_lab::guest::{INITRD_IMAGE, KERNEL_IMAGE};
use vinfra_lab::Lab;
use vinfra_types::network::{CreateNetworkRequest, NetworkKind};
use vinfra_types::PowerState;

/// How long a task (create, stop, delete) may take to end in the browser.
const TASK_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a page may take to show a VM's new state.
const STATE_TIMEOUT: Duration = Duration::from_secs(90);

/// The VM the test creates.
const VM: &str = "web-1";

/// The lab guest's kernel command line (as `Lab::guest_vm_request` has it).
const CMDLINE: &str = "console=ttyS0 no_timer_check";

/// The browser on the lab's console.
struct Ui {
    browser: Chromium,
    base: String,
}

impl Ui {
    /// Opens `path` and checks the browser logged no error on it.
    #[track_caller]
    fn open(&self, path: &str) {
        self.browser.goto(&format!("{}{path}", self.base));
        self.browser.assert_no_errors(path, &[]);
    }

    /// Reloads `path` until the text of `css` satisfies `ok` (a server-rendered page shows a
    /// change only when loaded again); checks the log on every load.
    #[track_caller]
    fn wait_page(&self, path: &str, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STATE_TIMEOUT;
        loop {
            self.open(path);
            let text = self.browser.text(css);
            if let Some(t) = text.as_deref().filter(|t| ok(t)) {
                return t.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "waited {} s for {what} on {path}: '{css}' shows {text:?}",
                STATE_TIMEOUT.as_secs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// On a task's page (where a form's submit went): waits until the page's script shows the
    /// task ended, and asserts it succeeded.
    #[track_caller]
    fn task_succeeds(&self, what: &str) {
        let path = self.browser.path();
        assert!(
            path.starts_with("/tasks/"),
            "{what}: the form should go to its task's page, the browser is on {path}"
        );
        self.browser.assert_no_errors(&path, &[]);
        let state = self
            .browser
            .wait_text("#task .task-state", what, TASK_TIMEOUT, |s| {
                matches!(s, "succeeded" | "failed" | "cancelled")
            });
        let task = self.browser.text("#task").unwrap_or_default();
        assert_eq!(state, "succeeded", "{what}: the task's box says: {task}");
        self.browser.assert_no_errors(&path, &[]);
    }

    /// The response status of the page shown (Navigation Timing's `responseStatus`).
    #[track_caller]
    fn status(&self) -> u64 {
        let v = self.browser.execute(
            "return performance.getEntriesByType('navigation')[0].responseStatus;",
            vec![],
        );
        v.as_u64()
            .unwrap_or_else(|| panic!("no responseStatus in the navigation entry: {v}"))
    }
}

#[test]
fn web_console_in_a_browser() {
    if !can_run_labs() || !vinfra_browser::needs().met() {
        return;
    }
    let lab = start_lab("browser", 2);
    let access = lab.api_access().expect("the lab's API access");
    let ca = String::from_utf8(access.ca_pem.clone()).expect("the CA is PEM text");
    let spki = server_spki_sha256(&access.url, &ca)
        .unwrap_or_else(|e| panic!("the console's key: {}", vinfra_types::error::Chain(&e)));
    let browser = Chromium::launch(&ChromiumOptions {
        label: "web-console".into(),
        trusted_spki: vec![spki],
    })
    .unwrap_or_else(|e| panic!("browser: {}", vinfra_types::error::Chain(&e)));
    let ui = Ui {
        browser,
        base: access.url.clone(),
    };
    let b = &ui.browser;

    b.step("wrong-token", || wrong_token_refused(&ui));
    b.step("login", || log_in(&ui, &access.token));
    b.step("bad-form", || bad_values_show_the_apis_words(&ui, &lab));
    b.step("create", || create_through_the_form(&ui, &lab));
    b.step("serial-console", || serial_console(&ui));
    b.step("migrate", || migrate(&ui, &lab));
    b.step("every-page", || every_page(&ui, &lab));
    b.step("cross-site", || cross_site_post_refused(&ui, &lab));
    b.step("stop", || stop(&ui, &lab));
    b.step("delete", || delete(&ui, &lab));
}

/// Without a session the console sends the browser to the login page; a wrong token is refused
/// there (401, "token refused"), and the browser stays on it.
fn wrong_token_refused(ui: &Ui) {
    let b = &ui.browser;
    ui.open("/");
    assert_eq!(
        b.path(),
        "/login",
        "without a session / goes to the login page"
    );
    b.fill("#token", "vinfra-this-is-not-a-token");
    b.click_to_next_page("form.card button[type=submit]");
    assert_eq!(b.path(), "/login", "a wrong token stays on the login page");
    let alert = b.text("p.problem[role=alert]");
    assert_eq!(
        alert.as_deref(),
        Some("token refused"),
        "the refusal is shown"
    );
    assert_eq!(ui.status(), 401, "a wrong token is answered 401");
    b.assert_no_errors("/login (refused)", &["status of 401"]);
}

/// The right token opens the inventory, with both lab hosts connected.
fn log_in(ui: &Ui, token: &str) {
    let b = &ui.browser;
    b.fill("#token", token);
    b.click_to_next_page("form.card button[type=submit]");
    assert_eq!(b.path(), "/", "the login goes to the inventory");
    b.assert_no_errors("/", &[]);
    assert!(
        b.has("form.logout"),
        "a logged-in page offers to log out: {}",
        b.source()
    );
    ui.wait_page("/", "table.hosts", "both hosts connected", |t| {
        ["h1", "h2"].iter().all(|h| t.contains(h)) && t.matches("connected").count() >= 2
    });
}

/// Fills the create form with the lab's guest (kernel boot, no disk) on host h1.
fn fill_create_form(ui: &Ui, name: &str, memory_mib: &str) {
    let b = &ui.browser;
    ui.open("/new-vm");
    let hosts = b.options("#host");
    assert!(
        hosts.iter().any(|h| h == "h1") && hosts.iter().any(|h| h == "h2"),
        "the form offers the lab's hosts: {hosts:?}"
    );
    let boots = b.options("#boot");
    assert!(
        boots.iter().any(|o| o == "kernel"),
        "the form offers a kernel boot: {boots:?}"
    );
    b.fill("#name", name);
    b.fill("#vcpus", "1");
    b.fill("#memory_mib", memory_mib);
    b.select("#boot", "kernel");
    b.fill("#kernel", KERNEL_IMAGE);
    b.fill("#initrd", INITRD_IMAGE);
    b.fill("#cmdline", CMDLINE);
    b.fill("#image", "");
    b.fill("#disk_gib", "");
    b.select("#host", "h1");
}

/// What the API answers to the create request the form makes of these values: its problem's
/// status and detail.
fn api_refusal(lab: &Lab, name: &str, memory_mib: u64) -> (u16, String) {
    let mut req = Lab::guest_vm_request(name, memory_mib, Some("h1"));
    req.spec.name = name.to_string();
    match api(lab).create_vm(&req) {
        Err(RestError::Problem { status, problem }) => (status, problem.detail),
        other => panic!("the API should refuse VM {name:?} of {memory_mib} MiB: {other:?}"),
    }
}

/// A name with a space and a memory of 0 are each refused on the form: the form comes back
/// with the API's problem detail and status, and keeps what was typed.
fn bad_values_show_the_apis_words(ui: &Ui, lab: &Lab) {
    let b = &ui.browser;
    for (name, memory) in [("bad name", 128), ("web-bad", 0)] {
        let (status, detail) = api_refusal(lab, name, memory);
        fill_create_form(ui, name, &memory.to_string());
        b.click_to_next_page("form.card button[type=submit]");
        assert_eq!(b.path(), "/new-vm", "a refused form is shown again");
        let shown = b.text("p.problem[role=alert]");
        assert_eq!(
            shown.as_deref(),
            Some(detail.as_str()),
            "the form shows the API's words for name {name:?}, memory {memory}"
        );
        assert_eq!(
            ui.status(),
            u64::from(status),
            "the form's status is the API's"
        );
        let kept = b.execute("return document.getElementById('name').value;", vec![]);
        assert_eq!(kept, name, "the form keeps the name typed");
        b.assert_no_errors("/new-vm (refused)", &[&format!("status of {status}")]);
    }
    assert!(
        !vm_names(lab).iter().any(|n| n == "web-bad"),
        "nothing was created"
    );
}

/// The form creates and starts the VM (its task's page follows the task to its end); the VM's
/// page shows it running on h1, and the guest boots.
fn create_through_the_form(ui: &Ui, lab: &Lab) {
    let b = &ui.browser;
    fill_create_form(ui, VM, "128");
    b.click_to_next_page("form.card button[type=submit]");
    ui.task_succeeds("the create's task");
    assert!(
        b.has(&format!("#task a[href='/vms/{VM}']")),
        "the ended task links to its VM: {}",
        b.text("#task").unwrap_or_default()
    );
    b.click_to_next_page(&format!("#task a[href='/vms/{VM}']"));
    assert_eq!(b.path(), format!("/vms/{VM}"));
    b.assert_no_errors("the VM's page", &[]);
    ui.wait_page(&format!("/vms/{VM}"), "#vm-state", "the VM running", |s| {
        s == "running"
    });
    assert_eq!(b.text("#vm-host").as_deref(), Some("h1"), "placed as asked");
    lab.wait_console(VM, "VINFRA-GUEST BOOTED", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{VM} did not boot: {}", vinfra_types::error::Chain(&e)));
    ui.open("/");
    let listed = b.texts("table.vms td a");
    assert!(
        listed.iter().any(|n| n == VM),
        "the inventory lists {VM}: {listed:?}"
    );
}

/// The serial-console page shows the guest's console (element `serial-console`), which shows
/// the guest counting.
fn serial_console(ui: &Ui) {
    let b = &ui.browser;
    let path = format!("/vms/{VM}/console");
    ui.open(&path);
    let seen = b.wait_text(
        "#serial-console",
        "the guest's counter on the serial console",
        Duration::from_secs(60),
        |t| last_counter(t).is_some(),
    );
    let first = last_counter(&seen).unwrap_or(0);
    b.wait_text(
        "#serial-console",
        "the guest's counter to advance on the serial console",
        Duration::from_secs(30),
        |t| last_counter(t).is_some_and(|n| n >= first + 3),
    );
    // Typing: the keys go to xterm.js's input, through the WebSocket to the guest's serial
    // port, and the guest answers the line.
    b.wait_text(
        "#serial-console[data-input=true]",
        "the terminal to take input",
        Duration::from_secs(20),
        |_| true,
    );
    b.type_keys(
        "#serial-console .xterm-helper-textarea",
        "typed-in-browser\u{E007}",
    );
    b.wait_text(
        "#serial-console",
        "the guest's answer to the typed line",
        Duration::from_secs(30),
        |t| t.contains("VINFRA-TYPED typed-in-browser"),
    );
    b.assert_no_errors(&path, &[]);
}

/// Every page of the console's menu and each kind of object's page answers 200, with its
/// content in `<main>`, and without an error in the browser's log.
fn every_page(ui: &Ui, lab: &Lab) {
    api(lab)
        .create_network(&CreateNetworkRequest {
            name: "browsed".into(),
            kind: NetworkKind::Overlay,
            vni: None,
            vlan_id: None,
            subnet: "10.44.0.0/24".into(),
            gateway: None,
            mtu: None,
        })
        .unwrap_or_else(|e| panic!("create network: {}", vinfra_types::error::Chain(&e)));
    for path in [
        "/".to_string(),
        "/hosts/h1".into(),
        "/hosts/h2".into(),
        format!("/vms/{VM}"),
        "/new-vm".into(),
        "/networks".into(),
        "/networks/browsed".into(),
        "/rules".into(),
        "/balancer".into(),
        "/settings".into(),
        "/events".into(),
    ] {
        ui.open(&path);
        assert_eq!(ui.status(), 200, "{path}");
        assert!(ui.browser.has("main#main"), "{path} has no <main>");
    }
}

/// The highest `VINFRA-COUNTER <n>` in a terminal's text.
fn last_counter(text: &str) -> Option<u64> {
    text.split("VINFRA-COUNTER ")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .max()
}

/// The VM page's migrate form (`migrate-form`, target `migrate-to`) moves the VM from h1 to h2;
/// its progress (`migration-progress`) is shown, and the page then shows it running on h2.
fn migrate(ui: &Ui, lab: &Lab) {
    let b = &ui.browser;
    let path = format!("/vms/{VM}");
    ui.open(&path);
    assert_eq!(b.text("#vm-host").as_deref(), Some("h1"));
    b.select("#migrate-to", "h2");
    b.click_to_next_page("#migrate-form button[type=submit]");
    if b.path().starts_with("/tasks/") {
        // The migration's task page shows its progress as a bar, then the new host.
        assert!(
            b.has("#migration-progress"),
            "the migration's task page has no progress bar: {}",
            b.source()
        );
        ui.task_succeeds("the migration's task");
        b.wait_text(
            "#migration-host",
            "the task page to name the new host",
            Duration::from_secs(30),
            |h| h.trim() == "h2",
        );
        let done = b
            .execute(
                "return document.getElementById('migration-progress').value;",
                vec![],
            )
            .as_f64();
        assert_eq!(done, Some(100.0), "the progress bar at the end");
    } else {
        b.wait_text(
            "#migration-progress",
            "the migration's progress",
            Duration::from_secs(30),
            |t| !t.trim().is_empty(),
        );
        b.assert_no_errors(&path, &[]);
    }
    ui.wait_page(&path, "#vm-host", "the VM on h2", |h| h == "h2");
    ui.wait_page(&path, "#vm-state", "the VM running", |s| s == "running");
    assert_eq!(vm(lab, VM).host, "h2", "the API agrees");
}

/// A page on another origin that posts a form to `target` as soon as it loads, served on
/// 127.0.0.1 (plain HTTP, another port) until dropped.
struct CrossSitePage {
    url: String,
    stop: Arc<AtomicBool>,
    port: u16,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CrossSitePage {
    fn serve(target: &str) -> CrossSitePage {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let body = format!(
            "<!DOCTYPE html><html><head><title>elsewhere</title></head><body>\
             <form id=\"f\" method=\"post\" action=\"{target}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"forged\"></form>\
             <script>document.getElementById('f').submit();</script></body></html>"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, text) = if req.starts_with(b"GET / ") {
                    ("200 OK", body.as_str())
                } else {
                    ("404 Not Found", "")
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        CrossSitePage {
            url: format!("http://127.0.0.1:{port}/"),
            stop,
            port,
            thread: Some(thread),
        }
    }
}

impl Drop for CrossSitePage {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A page on another origin (another port, plain HTTP) posts the VM's stop form to the console
/// from the logged-in browser: the console refuses it (403, cross-site) and the VM keeps
/// running.
fn cross_site_post_refused(ui: &Ui, lab: &Lab) {
    let b = &ui.browser;
    let action = format!("/vms/{VM}/stop");
    let page = CrossSitePage::serve(&format!("{}{action}", ui.base));
    b.goto(&page.url);
    b.wait_path(
        "the cross-site form's answer",
        Duration::from_secs(30),
        |p| p == action,
    );
    let problem = b.wait_text(
        "p.problem",
        "the console's refusal",
        Duration::from_secs(10),
        |_| true,
    );
    assert!(
        problem.contains("cross-site request refused"),
        "the console refuses the cross-site post: {problem}"
    );
    assert_eq!(ui.status(), 403, "a cross-site post is answered 403");
    b.assert_no_errors("the cross-site post", &["status of 403"]);
    drop(page);
    let after = vm(lab, VM);
    assert_eq!(
        after.desired,
        PowerState::Running,
        "the refused post did not stop the VM: {after:?}"
    );
    ui.wait_page(&format!("/vms/{VM}"), "#vm-state", "the VM running", |s| {
        s == "running"
    });
}

/// The stop button stops the VM (its task succeeds) and its page shows it stopped.
fn stop(ui: &Ui, lab: &Lab) {
    let b = &ui.browser;
    ui.open(&format!("/vms/{VM}"));
    b.click_to_next_page(&format!(
        "form[action='/vms/{VM}/stop'] button[type=submit]"
    ));
    ui.task_succeeds("the stop's task");
    ui.wait_page(&format!("/vms/{VM}"), "#vm-state", "the VM stopped", |s| {
        s == "stopped"
    });
    assert_eq!(vm(lab, VM).desired, PowerState::Stopped, "the API agrees");
}

/// The delete link asks for confirmation; confirmed, the VM goes, and the inventory no longer
/// lists it.
fn delete(ui: &Ui, lab: &Lab) {
    let b = &ui.browser;
    ui.open(&format!("/vms/{VM}"));
    b.click_to_next_page(&format!("a[href='/vms/{VM}/delete']"));
    assert_eq!(b.path(), format!("/vms/{VM}/delete"), "the confirmation");
    b.assert_no_errors("the delete's confirmation", &[]);
    let heading = b.text("h1").unwrap_or_default();
    assert!(
        heading.contains(VM),
        "the confirmation names the VM: {heading}"
    );
    b.click_to_next_page("form.card button.danger");
    ui.task_succeeds("the delete's task");
    ui.wait_page("/", "main", "the VM gone from the inventory", |_| {
        !b.texts("table.vms td a").iter().any(|n| n == VM)
    });
    assert!(
        !vm_names(lab).iter().any(|n| n == VM),
        "the API no longer lists {VM}"
    );
}

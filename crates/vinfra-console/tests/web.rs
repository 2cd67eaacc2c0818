//! The web console over HTTPS against a real console and a fake agent, as a browser drives it
//! (a cookie kept by hand, redirects not followed): login and its cookie, a refused token,
//! pages without a session, the inventory, a VM's actions through its forms and their tasks,
//! cross-site and CSRF-less posts refused without effect, roles, a delete's confirmation, and
//! the create form showing the API's words for a bad value.

mod common;

use std::time::Duration;

use common::browser::{csrf, escaped, follow, Browser};
use common::{start_console, vm_json, FakeAgent, TestConsole};
use vinfra_types::HostCapacity;

const HOST16: HostCapacity = HostCapacity {
    cores: 16,
    memory_mib: 64 * 1024,
};

/// The VM's state as the API shows it.
async fn state(c: &TestConsole, vm: &str) -> String {
    let r = c.call("GET", &format!("/api/v1/vms/{vm}"), None).await;
    r.body["state"].as_str().unwrap_or_default().to_string()
}

async fn console_with_vm() -> (tempfile::TempDir, TestConsole, FakeAgent) {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("web-1", 2, 1024)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    (dir, c, agent)
}

#[tokio::test]
async fn login_sets_a_strict_cookie_and_a_wrong_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let mut b = Browser::new(&c);

    // No session: every page goes to the login form.
    for path in ["/", "/vms/web-1", "/new-vm", "/tasks/1"] {
        let page = b.get(path).await;
        assert_eq!(page.status, 303, "{path}: {}", page.body);
        assert_eq!(page.location, "/login", "{path}");
    }
    let form = b.get("/login").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains(r#"name="token""#), "{}", form.body);

    let wrong = b.login("vinfra_0000").await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.body.contains("token refused"), "{}", wrong.body);
    assert!(wrong.set_cookie.is_empty(), "{}", wrong.set_cookie);
    assert!(b.cookie.is_none());

    let good = b.login(&c.token).await;
    assert_eq!(good.status, 303, "{}", good.body);
    assert_eq!(good.location, "/");
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(
            good.set_cookie.contains(attribute),
            "{attribute} in {}",
            good.set_cookie
        );
    }
    assert!(
        !good.set_cookie.contains(&c.token),
        "the token is not the cookie"
    );
    let home = b.get("/").await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("bootstrap (admin)"), "{}", home.body);

    // A made-up session is no session.
    let mut forged = Browser::new(&c);
    forged.cookie = Some(format!("__Host-vinfra_session={}", "ab".repeat(32)));
    assert_eq!(forged.get("/").await.location, "/login");

    // Logout needs the CSRF token, then ends the session.
    let token = csrf(&home);
    assert_eq!(
        b.post("/logout", &[("csrf", "nope")], &[]).await.status,
        403
    );
    let out = b.post("/logout", &[("csrf", &token)], &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location, "/login");
    assert!(out.set_cookie.contains("Max-Age=0"), "{}", out.set_cookie);
    let mut old = Browser::new(&c);
    old.cookie = Some(good.set_cookie.split(';').next().unwrap().to_string());
    assert_eq!(old.get("/").await.location, "/login");
    c.shutdown().await;
}

#[tokio::test]
async fn the_inventory_lists_hosts_and_vms_and_the_forms_power_a_vm() {
    let (_dir, c, _agent) = console_with_vm().await;
    let mut b = Browser::new(&c);
    assert_eq!(b.login(&c.token).await.status, 303);

    let home = b.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("h1"), "{}", home.body);
    assert!(
        home.body.contains(r#"<a href="/vms/web-1">web-1</a>"#),
        "{}",
        home.body
    );
    assert!(home.body.contains("connected"), "{}", home.body);
    assert!(home.body.contains("<meter"), "{}", home.body);

    let vm = b.get("/vms/web-1").await;
    assert_eq!(vm.status, 200, "{}", vm.body);
    assert!(
        vm.body.contains(r#"action="/vms/web-1/stop""#),
        "{}",
        vm.body
    );
    assert!(vm.body.contains("<h2>Events</h2>"));
    assert!(
        vm.body.contains("token:bootstrap"),
        "the create's event: {}",
        vm.body
    );
    let token = csrf(&vm);
    assert_eq!(state(&c, "web-1").await, "running");

    // Cross-site posts and posts without this session's CSRF token change nothing.
    let evil = [("origin", "https://evil.example")];
    let r = b.post("/vms/web-1/stop", &[("csrf", &token)], &evil).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let cross = [("sec-fetch-site", "cross-site")];
    let r = b.post("/vms/web-1/stop", &[("csrf", &token)], &cross).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = b.post("/vms/web-1/stop", &[], &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = b
        .post("/vms/web-1/stop", &[("csrf", &"0".repeat(64))], &[])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = b.post("/vms/web-1/delete", &[("csrf", "")], &evil).await;
    assert_eq!(r.status, 403, "{}", r.body);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(state(&c, "web-1").await, "running");
    let tasks = c.call("GET", "/api/v1/tasks?target=web-1", None).await;
    assert_eq!(
        tasks.body.as_array().unwrap().len(),
        1,
        "only the create: {:?}",
        tasks.body
    );

    // The stop through its form (from the console's own page), followed to its end.
    let origin = format!("https://{}", c.base.trim_start_matches("https://"));
    let same = [
        ("origin", origin.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let r = b.post("/vms/web-1/stop", &[("csrf", &token)], &same).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location.starts_with("/tasks/"), "{}", r.location);
    let end = follow(&mut b, &r.location).await;
    assert!(end.contains("succeeded"), "{end}");
    assert!(end.contains("vm_stop"), "{end}");
    assert_eq!(state(&c, "web-1").await, "stopped");

    let r = b.post("/vms/web-1/start", &[("csrf", &token)], &same).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let end = follow(&mut b, &r.location).await;
    assert!(end.contains("succeeded"), "{end}");
    assert_eq!(state(&c, "web-1").await, "running");
    let vm = b.get("/vms/web-1").await;
    assert!(vm.body.contains("state-running"), "{}", vm.body);
    c.shutdown().await;
}

#[tokio::test]
async fn a_viewer_sees_but_cannot_act_and_a_delete_is_confirmed() {
    let (_dir, c, _agent) = console_with_vm().await;
    let r = c
        .call(
            "POST",
            "/api/v1/tokens",
            Some(r#"{"name":"audit","role":"viewer"}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut viewer = Browser::new(&c);
    assert_eq!(
        viewer.login(r.body["token"].as_str().unwrap()).await.status,
        303
    );
    let vm = viewer.get("/vms/web-1").await;
    assert_eq!(vm.status, 200, "{}", vm.body);
    assert!(
        !vm.body.contains(r#"action="/vms/web-1/stop""#),
        "{}",
        vm.body
    );
    let token = csrf(&vm);
    let r = viewer
        .post("/vms/web-1/stop", &[("csrf", &token)], &[])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("needs role operator"), "{}", r.body);
    assert_eq!(viewer.get("/vms/web-1/delete").await.status, 403);
    assert_eq!(state(&c, "web-1").await, "running");

    let mut admin = Browser::new(&c);
    admin.login(&c.token).await;
    let confirm = admin.get("/vms/web-1/delete").await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(
        confirm.body.contains("Delete VM web-1?"),
        "{}",
        confirm.body
    );
    // A VM set to run is deleted only with its confirmation's "power it off at once".
    let token = csrf(&confirm);
    let r = admin
        .post("/vms/web-1/delete", &[("csrf", &token)], &[])
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("stop it first"), "{}", r.body);
    let form = [("csrf", token.as_str()), ("force", "on")];
    let r = admin.post("/vms/web-1/delete", &form, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let end = follow(&mut admin, &r.location).await;
    assert!(end.contains("succeeded"), "{end}");
    assert_eq!(c.call("GET", "/api/v1/vms/web-1", None).await.status, 404);
    c.shutdown().await;
}

#[tokio::test]
async fn the_create_form_shows_the_apis_words_for_a_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let c = start_console(dir.path(), None, true).await;
    let _agent = FakeAgent::join_and_connect(&c, "h1", HOST16).await;
    let mut b = Browser::new(&c);
    b.login(&c.token).await;
    let form = b.get("/new-vm").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains(r#"<option value="h1""#), "{}", form.body);
    let token = csrf(&form);
    // The form's path is no VM's: a VM may be called `new` and has its page.
    let r = c
        .call("POST", "/api/v1/vms", Some(&vm_json("new", 1, 512)))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let page = b.get("/vms/new").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<h1>VM new <span"), "{}", page.body);

    // What the API says of 0 vCPUs.
    let api = c
        .call("POST", "/api/v1/vms", Some(&vm_json("bad-1", 0, 512)))
        .await;
    assert_eq!(api.status, 400, "{:?}", api.body);
    let detail = api.body["detail"].as_str().unwrap().to_string();

    let fields = |name: &'static str, vcpus: &'static str| {
        vec![
            ("name", name),
            ("vcpus", vcpus),
            ("memory_mib", "512"),
            ("boot", "kernel"),
            ("kernel", "vmlinuz"),
            ("initrd", "initrd.img"),
            ("cmdline", "console=ttyS0"),
            ("disk_gib", "1"),
            ("host", ""),
            ("start", "on"),
        ]
    };
    let mut bad = fields("bad-1", "0");
    bad.push(("csrf", &token));
    let page = b.post("/new-vm", &bad, &[]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body.contains(&escaped(&detail)),
        "the API's detail {detail:?} in {}",
        page.body
    );
    assert!(
        page.body.contains(r#"value="bad-1""#),
        "the form keeps its values"
    );
    assert_eq!(c.call("GET", "/api/v1/vms/bad-1", None).await.status, 404);

    // Without the CSRF token: refused, nothing created.
    let page = b.post("/new-vm", &fields("good-1", "1"), &[]).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert_eq!(c.call("GET", "/api/v1/vms/good-1", None).await.status, 404);

    let mut good = fields("good-1", "1");
    good.push(("csrf", &token));
    let r = b.post("/new-vm", &good, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let end = follow(&mut b, &r.location).await;
    assert!(end.contains("succeeded"), "{end}");
    assert!(end.contains(r#"href="/vms/good-1""#), "{end}");
    assert_eq!(state(&c, "good-1").await, "running");

    // Many alike: a count the API refuses is its words on the form; two are two VMs, one
    // task, linked to the first.
    let mut zero = fields("many", "1");
    zero.push(("count", "0"));
    zero.push(("csrf", &token));
    let page = b.post("/new-vm", &zero, &[]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body
            .contains("count must be between 1 and 1000, got 0"),
        "{}",
        page.body
    );
    let mut two = fields("many", "1");
    two.push(("count", "2"));
    two.push(("csrf", &token));
    let r = b.post("/new-vm", &two, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let end = follow(&mut b, &r.location).await;
    assert!(end.contains("succeeded"), "{end}");
    assert!(end.contains(r#"href="/vms/many-1""#), "{end}");
    for vm in ["many-1", "many-2"] {
        assert_eq!(state(&c, vm).await, "running");
    }
    c.shutdown().await;
}

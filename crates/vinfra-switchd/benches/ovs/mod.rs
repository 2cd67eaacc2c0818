//! A private Open vSwitch for the throughput benchmark: ovsdb-server and ovs-vswitchd with
//! their own database and sockets in a temporary directory, the datapath in a namespace.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{self, sh, Netns};

/// A private Open vSwitch (ovsdb-server + ovs-vswitchd) whose datapath lives in `ns`.
pub struct Ovs {
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Ovs {
    pub fn available() -> bool {
        ["ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ovsdb-tool"]
            .iter()
            .all(|b| common::try_sh(&["which", b]))
    }

    pub fn start(ns: &Netns) -> Ovs {
        let dir = tempfile::tempdir().expect("tempdir");
        let rundir = dir.path().to_path_buf();
        let p = |f: &str| rundir.join(f).to_string_lossy().into_owned();
        sh(&[
            "ovsdb-tool",
            "create",
            &p("conf.db"),
            "/usr/share/openvswitch/vswitch.ovsschema",
        ]);
        let mut ovs = Ovs {
            children: Vec::new(),
            dir,
        };
        let spawn = |args: Vec<String>, rundir: &Path| {
            Command::new("ip")
                .args(["netns", "exec", &ns.name])
                .args(args)
                .env("OVS_RUNDIR", rundir)
                .env("OVS_LOGDIR", rundir)
                .env("OVS_DBDIR", rundir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start an Open vSwitch daemon")
        };
        ovs.children.push(spawn(
            vec![
                "ovsdb-server".into(),
                p("conf.db"),
                format!("--remote=punix:{}", p("db.sock")),
                format!("--unixctl={}", p("ovsdb-server.ctl")),
                format!("--log-file={}", p("ovsdb-server.log")),
                "--no-chdir".into(),
            ],
            &rundir,
        ));
        assert!(
            common::wait_for(Duration::from_secs(10), || Path::new(&p("db.sock"))
                .exists()),
            "ovsdb-server did not start"
        );
        ovs.vsctl(&["--no-wait", "init"]);
        // Read by ovs-vswitchd at start only.
        ovs.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            "other_config:userspace-tso-enable=true",
        ]);
        ovs.children.push(spawn(
            vec![
                "ovs-vswitchd".into(),
                format!("unix:{}", p("db.sock")),
                format!("--unixctl={}", p("ovs-vswitchd.ctl")),
                format!("--log-file={}", p("ovs-vswitchd.log")),
                "--no-chdir".into(),
            ],
            &rundir,
        ));
        ovs
    }

    /// Adds bridge `name` on the userspace datapath (`datapath_type=netdev`).
    pub fn netdev_bridge(&self, name: &str) {
        self.vsctl(&[
            "add-br",
            name,
            "--",
            "set",
            "bridge",
            name,
            "datapath_type=netdev",
        ]);
    }

    pub fn vsctl(&self, args: &[&str]) {
        let db = format!("--db=unix:{}", self.dir.path().join("db.sock").display());
        let mut full = vec!["ovs-vsctl", &db, "--timeout=30"];
        full.extend_from_slice(args);
        sh(&full);
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        // ovs-vswitchd first (it was started last), then ovsdb-server.
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

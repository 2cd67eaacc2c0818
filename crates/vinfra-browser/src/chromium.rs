//! [`Chromium`]: a headless Chromium under `chromedriver`, driven from synchronous test code
//! (each call runs on the browser's own runtime), with what the web console's tests need: forms,
//! bounded waits for an element's text, the browser's log checked for errors, and a screenshot
//! with the page's source when a step fails.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::driver::{Chromedriver, DriverError};

/// The browser (Debian package `chromium`).
pub const CHROMIUM: &str = "chromium";

/// How long a page may take to load.
const PAGE_LOAD: Duration = Duration::from_secs(60);

/// How long closing the session may take when the browser is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the browser did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// `chromium` is not installed.
    #[error("{CHROMIUM} is not installed (Debian package chromium)")]
    NoChromium,
    /// Its runtime could not be made.
    #[error("cannot make the browser's runtime")]
    Runtime(#[source] std::io::Error),
    /// A directory of its own could not be made.
    #[error("cannot make {0}")]
    Dir(PathBuf, #[source] std::io::Error),
    /// `chromedriver` did not start.
    #[error("chromedriver did not start")]
    Driver(#[from] DriverError),
    /// The WebDriver session could not be opened.
    #[error("chromedriver could not open a Chromium session (its log: {log})")]
    Session {
        /// chromedriver's log.
        log: PathBuf,
        /// What went wrong.
        #[source]
        source: fantoccini::error::NewSessionError,
    },
}

/// How the browser is started.
#[derive(Debug, Clone, Default)]
pub struct ChromiumOptions {
    /// Names the browser's files (`<label>-chromedriver.log`, screenshots).
    pub label: String,
    /// Base64 SHA-256 hashes of the only public keys whose certificates are accepted without a
    /// trusted CA (`--ignore-certificate-errors-spki-list`; see [`crate::pin`]).
    pub trusted_spki: Vec<String>,
}

/// One entry of the browser's log (`goog:loggingPrefs` `browser: ALL`, read through
/// chromedriver's `POST /session/{id}/log`).
#[derive(Debug, Clone, Deserialize)]
pub struct BrowserLogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, …
    pub level: String,
    /// `javascript` (an uncaught exception), `console-api`, `network`, `security`, …
    #[serde(default)]
    pub source: String,
    /// What it says (the URL and position first).
    pub message: String,
}

impl BrowserLogEntry {
    /// Whether it is an error: a `SEVERE` entry, or anything from a script's uncaught exception
    /// or the page's security policy.
    pub fn is_error(&self) -> bool {
        self.level == "SEVERE" || self.source == "javascript" || self.source == "security"
    }
}

/// chromedriver's `POST /session/{id}/log` for the `browser` log (not in the W3C protocol).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// A headless Chromium and its chromedriver; both end when it is dropped (the session is closed
/// first, then chromedriver's process group is ended).
pub struct Chromium {
    client: Option<Client>,
    runtime: tokio::runtime::Runtime,
    driver: Option<Chromedriver>,
    label: String,
    log: PathBuf,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts chromedriver and a headless Chromium with a new profile in a temporary directory.
    pub fn launch(options: &ChromiumOptions) -> Result<Chromium, BrowserError> {
        let binary = vinfra_testenv::find_program(CHROMIUM).ok_or(BrowserError::NoChromium)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("browser")
            .enable_all()
            .build()
            .map_err(BrowserError::Runtime)?;
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).map_err(|e| BrowserError::Dir(dir.clone(), e))?;
        let log = dir.join(format!("{}-chromedriver.log", options.label));
        let profile = tempfile::Builder::new()
            .prefix("vinfra-chromium-")
            .tempdir()
            .map_err(|e| BrowserError::Dir(std::env::temp_dir(), e))?;
        let driver = Chromedriver::start(&log)?;
        let mut args = vec![
            "--headless=new".to_string(),
            format!("--user-data-dir={}", profile.path().display()),
            "--window-size=1280,1000".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-extensions".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--password-store=basic".into(),
        ];
        // Chromium's sandbox refuses to run as root.
        if nix::unistd::geteuid().is_root() {
            args.push("--no-sandbox".into());
        }
        if !options.trusted_spki.is_empty() {
            args.push(format!(
                "--ignore-certificate-errors-spki-list={}",
                options.trusted_spki.join(",")
            ));
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": binary, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
            "pageLoadStrategy": "normal",
            "timeouts": { "pageLoad": PAGE_LOAD.as_millis() as u64, "script": 30_000, "implicit": 0 },
        });
        let Value::Object(caps) = caps else {
            unreachable!("capabilities are a JSON object")
        };
        let url = driver.url();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = runtime
            .block_on(
                ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(&url),
            )
            .map_err(|source| BrowserError::Session {
                log: log.clone(),
                source,
            })?;
        Ok(Chromium {
            client: Some(client),
            runtime,
            driver: Some(driver),
            label: options.label.clone(),
            log,
            _profile: profile,
        })
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("session open until drop")
    }

    /// Runs a WebDriver call on the browser's runtime; panics naming `what` when it fails.
    #[track_caller]
    fn call<T, E: std::fmt::Display>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> T {
        match self.runtime.block_on(f) {
            Ok(v) => v,
            Err(e) => panic!("browser: {what}: {e}"),
        }
    }

    /// Opens `url` (returns when it has loaded).
    #[track_caller]
    pub fn goto(&self, url: &str) {
        self.call(&format!("open {url}"), self.client().goto(url));
    }

    /// The URL of the page shown.
    #[track_caller]
    pub fn url(&self) -> String {
        self.call("current URL", self.client().current_url())
            .to_string()
    }

    /// The path of the page shown (`/vms/x`).
    #[track_caller]
    pub fn path(&self) -> String {
        self.call("current URL", self.client().current_url())
            .path()
            .to_string()
    }

    /// The page's source.
    #[track_caller]
    pub fn source(&self) -> String {
        self.call("page source", self.client().source())
    }

    /// The rendered text of the first element `css` matches, `None` when none does.
    #[track_caller]
    pub fn text(&self, css: &str) -> Option<String> {
        let found = self
            .runtime
            .block_on(self.client().find_all(Locator::Css(css)));
        let first = self
            .call(&format!("find '{css}'"), async { found })
            .into_iter()
            .next()?;
        // The element may go between finding and reading it (a page's script swapped it).
        self.runtime.block_on(first.text()).ok()
    }

    /// The rendered texts of every element `css` matches.
    #[track_caller]
    pub fn texts(&self, css: &str) -> Vec<String> {
        let all = self.call(
            &format!("find '{css}'"),
            self.client().find_all(Locator::Css(css)),
        );
        all.iter()
            .filter_map(|e| self.runtime.block_on(e.text()).ok())
            .collect()
    }

    /// Whether an element matches `css`.
    #[track_caller]
    pub fn has(&self, css: &str) -> bool {
        !self
            .call(
                &format!("find '{css}'"),
                self.client().find_all(Locator::Css(css)),
            )
            .is_empty()
    }

    /// Replaces the value of the input `css` with `value`, as typed.
    #[track_caller]
    pub fn fill(&self, css: &str, value: &str) {
        let el = self.call(
            &format!("find input '{css}'"),
            self.client().find(Locator::Css(css)),
        );
        self.call(&format!("clear '{css}'"), el.clear());
        self.call(&format!("type into '{css}'"), el.send_keys(value));
    }

    /// Types `keys` into the element `css` (WebDriver key codes allowed: `\u{E007}` is Enter),
    /// without clearing it first: a terminal's input.
    #[track_caller]
    pub fn type_keys(&self, css: &str, keys: &str) {
        let el = self.call(
            &format!("find '{css}'"),
            self.client().find(Locator::Css(css)),
        );
        self.call(&format!("type into '{css}'"), el.send_keys(keys));
    }

    /// Picks the option of value `value` in the select `css`.
    #[track_caller]
    pub fn select(&self, css: &str, value: &str) {
        let el = self.call(
            &format!("find select '{css}'"),
            self.client().find(Locator::Css(css)),
        );
        self.call(
            &format!("select '{value}' in '{css}'"),
            el.select_by_value(value),
        );
    }

    /// The values of the options of the select `css`.
    #[track_caller]
    pub fn options(&self, css: &str) -> Vec<String> {
        let sel = format!("{css} option");
        let all = self.call(
            &format!("find '{sel}'"),
            self.client().find_all(Locator::Css(&sel)),
        );
        all.iter()
            .filter_map(|e| self.runtime.block_on(e.attr("value")).ok().flatten())
            .collect()
    }

    /// Clicks the element `css` (for a click that leads to another page, see
    /// [`Self::click_to_next_page`]).
    #[track_caller]
    pub fn click(&self, css: &str) {
        let el = self.call(
            &format!("find '{css}'"),
            self.client().find(Locator::Css(css)),
        );
        self.call(&format!("click '{css}'"), el.click());
    }

    /// Clicks the element `css` (a submit button, a link) and waits (at most the page-load
    /// timeout) until another document has replaced the page and has loaded, even one at the
    /// same URL: chromedriver's click may return before a form's navigation has begun.
    #[track_caller]
    pub fn click_to_next_page(&self, css: &str) {
        const MARK: &str = "window.__vinfraPreviousPage = true; return true;";
        const NEXT: &str = "return window.__vinfraPreviousPage === undefined \
                            && document.readyState === 'complete';";
        self.execute(MARK, vec![]);
        self.click(css);
        let deadline = Instant::now() + PAGE_LOAD;
        loop {
            // While the next page is on its way a script may find no document to run in.
            let next = self
                .runtime
                .block_on(self.client().execute(NEXT, vec![]))
                .ok();
            if next == Some(Value::Bool(true)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "browser: clicking '{css}' did not lead to another page within {} s (still on {})",
                PAGE_LOAD.as_secs(),
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `script` in the page (a returned promise is awaited); its value.
    #[track_caller]
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.call("run a script", self.client().execute(script, args))
    }

    /// Polls (every 200 ms, at most `timeout`) until the text of `css` satisfies `ok`; returns
    /// it, or panics saying what was awaited and what the element showed last.
    #[track_caller]
    pub fn wait_text(
        &self,
        css: &str,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text(css);
            if let Some(t) = text.as_deref().filter(|t| ok(t)) {
                return t.to_string();
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {} s for {what} (element '{css}' on {}): it shows {:?}",
                    timeout.as_secs(),
                    self.url(),
                    text
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls until the page's path is `path`; panics after `timeout`.
    #[track_caller]
    pub fn wait_path(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let path = self.path();
            if ok(&path) {
                return path;
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {} s for {what}: the browser is on {}",
                    timeout.as_secs(),
                    self.url()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Drains the browser's log (what it logged since the last call).
    #[track_caller]
    pub fn log(&self) -> Vec<BrowserLogEntry> {
        let value = self.call("read the browser log", self.client().issue_cmd(BrowserLog));
        match serde_json::from_value(value) {
            Ok(entries) => entries,
            Err(e) => panic!("browser: the browser log is not a list of entries: {e}"),
        }
    }

    /// Drains the browser's log and panics when it has an error (an uncaught exception, a
    /// `console.error`, a resource that failed to load, a security-policy violation) other than
    /// those whose message contains one of `expected` (a refused request's status, say).
    /// `page` names the page for the message.
    #[track_caller]
    pub fn assert_no_errors(&self, page: &str, expected: &[&str]) {
        let errors: Vec<String> = self
            .log()
            .into_iter()
            .filter(|e| e.is_error())
            .filter(|e| !expected.iter().any(|x| e.message.contains(x)))
            .map(|e| format!("{} {}: {}", e.level, e.source, e.message))
            .collect();
        assert!(
            errors.is_empty(),
            "the browser logged errors on {page}:\n  {}",
            errors.join("\n  ")
        );
    }

    /// Saves a screenshot and the page's source as `<artifacts>/<label>-<step>.png` and `.html`;
    /// returns the screenshot's path.
    pub fn save_failure(&self, step: &str) -> Result<PathBuf, String> {
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let stem: String = format!("{}-{step}", self.label)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let png = dir.join(format!("{stem}.png"));
        let html = dir.join(format!("{stem}.html"));
        if let Ok(source) = self.runtime.block_on(self.client().source()) {
            let _ = std::fs::write(&html, source);
        }
        let shot = self
            .runtime
            .block_on(self.client().screenshot())
            .map_err(|e| format!("screenshot: {e}"))?;
        std::fs::write(&png, shot).map_err(|e| format!("{}: {e}", png.display()))?;
        Ok(png)
    }

    /// Runs `f` (a step of a test); when it panics, saves a screenshot and the page's source
    /// (see [`Self::save_failure`]), prints where, and panics on.
    pub fn step<T>(&self, step: &str, f: impl FnOnce() -> T) -> T {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(v) => v,
            Err(panic) => {
                match self.save_failure(step) {
                    Ok(png) => eprintln!(
                        "step '{step}' failed: screenshot {} (page source beside it, chromedriver log {})",
                        png.display(),
                        self.log.display()
                    ),
                    Err(e) => eprintln!("step '{step}' failed; no screenshot: {e}"),
                }
                resume_unwind(panic)
            }
        }
    }

    /// chromedriver's log file.
    pub fn driver_log(&self) -> &Path {
        &self.log
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(CLOSE_TIMEOUT, client.close()).await });
        }
        // Ends chromedriver's process group, whatever closing the session left.
        drop(self.driver.take());
    }
}

/// Where screenshots, page sources and chromedriver logs go: `browser-screenshots/` in the
/// workspace's target directory (`CARGO_TARGET_DIR` when set, else `<workspace>/target`).
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("browser-screenshots")
}

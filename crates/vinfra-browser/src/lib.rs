//! A headless Chromium driven over WebDriver, for the web console's browser test
//! (`crates/vinfra/tests/browser.rs`) and its page benchmark
//! (`crates/vinfra-console/benches/inventory_page.rs`).
//!
//! - [`driver`]: `chromedriver` on a free port, ended with the browser it started when dropped;
//! - [`pin`]: the console's certificate, accepted by its public key alone;
//! - [`chromium`]: the browser, from synchronous code: pages, forms, bounded waits, its log
//!   checked for errors, a screenshot and the page's source when a step fails.
//!
//! Both programs come from Debian (`chromium`, `chromium-driver`; `scripts/common.sh` installs
//! them). A test states them with [`needs`] first: missing, it is skipped outside CI and fails
//! under it.

pub mod chromium;
pub mod driver;
pub mod pin;

pub use chromium::{
    artifacts_dir, BrowserError, BrowserLogEntry, Chromium, ChromiumOptions, CHROMIUM,
};
pub use driver::{Chromedriver, CHROMEDRIVER};
pub use pin::server_spki_sha256;

/// What a browser test needs of its machine: `chromium` and `chromedriver`.
pub fn needs() -> vinfra_testenv::Needs {
    vinfra_testenv::Needs::new()
        .program(CHROMIUM)
        .program(CHROMEDRIVER)
}

//! The web console's sessions: a random id in a cookie, mapped here to the API token it was
//! opened with. Nothing about a session is on disk: a console restart logs everyone out.
//!
//! The token's secret stays in memory, never goes back to the browser, and is checked again
//! ([`ConsoleApi::authenticate`]) at every request, so that a revoked or expired token ends its
//! sessions at once and a changed role takes effect at once. A session ends after
//! [`IDLE`] without a request, after [`LIFETIME`] whatever its use, and at logout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::interface::{ConsoleApi, TokenHolder};

/// The cookie's name. `__Host-`: browsers take it only with `Secure`, `Path=/` and no
/// `Domain`, so no other host or path can set or shadow it.
pub const COOKIE: &str = "__Host-vinfra_session";

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);

/// A session ends this long after its login, however busy.
pub const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most sessions kept at once; the oldest idle one goes first past it.
pub const MAX_SESSIONS: usize = 4096;

/// Most sessions of one token (browsers logged in with it); its own oldest goes first past it.
pub const MAX_PER_TOKEN: usize = 16;

/// One logged-in browser.
#[derive(Clone)]
pub struct Session {
    /// The API token it was opened with (its secret).
    token: String,
    /// The per-session token every state-changing form carries (hex).
    pub csrf: String,
    /// When it was opened.
    opened: Instant,
    /// Its last request.
    used: Instant,
}

/// The sessions by the SHA-256 of their id (so that the table holds nothing a cookie can be
/// rebuilt from).
#[derive(Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes, hex.
fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Session {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.used) < IDLE && now.duration_since(self.opened) < LIFETIME
    }
}

impl Sessions {
    /// Opens a session for `token` (already checked); returns its id (the cookie's value).
    pub fn open(&self, token: &str) -> String {
        let id = random_hex();
        let now = Instant::now();
        let mut map = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.live(now));
        // A token's own oldest session makes room for its new one: logging in again and again
        // with one token cannot push other users' sessions out.
        let own: Vec<(String, Instant)> = map
            .iter()
            .filter(|(_, s)| same_secret(&s.token, token))
            .map(|(k, s)| (k.clone(), s.used))
            .collect();
        if own.len() >= MAX_PER_TOKEN {
            if let Some((k, _)) = own.iter().min_by_key(|(_, used)| *used) {
                map.remove(k);
            }
        }
        if map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        map.insert(
            hash(&id),
            Session {
                token: token.to_string(),
                csrf: random_hex(),
                opened: now,
                used: now,
            },
        );
        id
    }

    /// The live session with id `id`, its last use now; `None` for an unknown or ended one
    /// (which is forgotten).
    pub fn touch(&self, id: &str) -> Option<Session> {
        self.find(id, true)
    }

    /// Like [`Sessions::touch`], but its last use stays: what a page's script does by itself
    /// (a refresh, a stream's check) does not keep an unattended session alive.
    pub fn peek(&self, id: &str) -> Option<Session> {
        self.find(id, false)
    }

    fn find(&self, id: &str, used: bool) -> Option<Session> {
        let now = Instant::now();
        let key = hash(id);
        let mut map = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        let live = map.get(&key).is_some_and(|s| s.live(now));
        if !live {
            map.remove(&key);
            return None;
        }
        let s = map.get_mut(&key)?;
        if used {
            s.used = now;
        }
        Some(s.clone())
    }

    /// Ends session `id`.
    pub fn close(&self, id: &str) {
        let mut map = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&hash(id));
    }

    /// Who session `id` acts for: its token checked again now. A refused token ends it. With
    /// `used`, the session counts as used now (a request of the user's); without, not (a check
    /// the page's script or a stream makes by itself).
    pub fn holder<A: ConsoleApi>(
        &self,
        console: &A,
        id: &str,
        used: bool,
    ) -> Option<(TokenHolder, Session)> {
        let session = self.find(id, used)?;
        match console.authenticate(&session.token) {
            Ok(holder) => Some((holder, session)),
            Err(_) => {
                self.close(id);
                None
            }
        }
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `Set-Cookie` that hands a browser session `id`.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` that removes it.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_only_until_closed() {
        let s = Sessions::default();
        let id = s.open("vinfra_secret");
        assert_eq!(id.len(), 64);
        let got = s.touch(&id).expect("open");
        assert_eq!(got.token, "vinfra_secret");
        assert_eq!(got.csrf.len(), 64);
        assert!(s.touch("nope").is_none());
        s.close(&id);
        assert!(s.touch(&id).is_none());
    }

    #[test]
    fn logging_in_again_and_again_ends_only_the_same_token_s_oldest_sessions() {
        let s = Sessions::default();
        let other = s.open("vinfra_other");
        let first = s.open("vinfra_loop");
        let mut last = String::new();
        for _ in 0..MAX_PER_TOKEN + 4 {
            last = s.open("vinfra_loop");
        }
        assert!(s.peek(&other).is_some(), "another token's session stays");
        assert!(s.peek(&first).is_none(), "the token's oldest went");
        assert!(s.peek(&last).is_some());
        let n = s
            .by_hash
            .lock()
            .unwrap()
            .values()
            .filter(|x| x.token == "vinfra_loop")
            .count();
        assert_eq!(n, MAX_PER_TOKEN);
    }

    #[test]
    fn a_peek_does_not_count_as_use() {
        let s = Sessions::default();
        let id = s.open("vinfra_secret");
        let opened = s.peek(&id).unwrap().used;
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(s.peek(&id).unwrap().used, opened);
        assert!(s.touch(&id).unwrap().used > opened);
    }

    #[test]
    fn cookies_and_secrets() {
        assert_eq!(cookie_value("a=1; b=2", "b"), Some("2"));
        assert_eq!(cookie_value("a=1; ab=2", "b"), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(set_cookie("x").contains("HttpOnly; SameSite=Strict"));
    }
}

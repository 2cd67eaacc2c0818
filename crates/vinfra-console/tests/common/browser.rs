//! A browser for the web console's tests: one session cookie kept by hand, no redirect
//! followed; a form's CSRF token; a task's page followed to its end as its script does.

use vinfra_proto::pki;

use super::TestConsole;

/// A browser: one session cookie, no redirect followed.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
}

pub struct Page {
    pub status: u16,
    pub location: String,
    pub set_cookie: String,
    pub body: String,
}

impl Browser {
    pub fn new(c: &TestConsole) -> Browser {
        let tls = pki::client_config(&c.running.ca_pem, None).unwrap();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            client,
            base: c.base.clone(),
            cookie: None,
        }
    }

    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = match &self.cookie {
            Some(c) => req.header("cookie", c),
            None => req,
        };
        let resp = req.send().await.unwrap();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let (location, set_cookie) = (header("location"), header("set-cookie"));
        if let Some(pair) = set_cookie.split(';').next().filter(|p| !p.is_empty()) {
            self.cookie = Some(pair.to_string()).filter(|p| !p.ends_with('='));
        }
        Page {
            status: resp.status().as_u16(),
            location,
            set_cookie,
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// A form post with `headers` (`Origin`, `Sec-Fetch-Site`).
    pub async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    pub async fn login(&mut self, token: &str) -> Page {
        self.post("/login", &[("token", token)], &[]).await
    }
}

pub fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The CSRF token of the first form of a page.
pub fn csrf(page: &Page) -> String {
    let at = page
        .body
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no CSRF field in {}", page.body));
    let rest = &page.body[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Text as the templates escape it.
pub fn escaped(text: &str) -> String {
    text.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Follows a task's page to its end through its box, as the page's script does; its last box.
pub async fn follow(b: &mut Browser, task_page: &str) -> String {
    let id = task_page.strip_prefix("/tasks/").expect("a task's page");
    let page = b.get(task_page).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"src="/assets/app.js""#));
    for _ in 0..20 {
        let frag = b.get(&format!("/ui/tasks/{id}?wait_s=5")).await;
        assert_eq!(frag.status, 200, "{}", frag.body);
        if frag.body.contains(r#"data-final="true""#) {
            return frag.body;
        }
    }
    panic!("task {id} never ended");
}

/// A browser logged in with the console's bootstrap (admin) token.
pub async fn admin(c: &TestConsole) -> Browser {
    let mut b = Browser::new(c);
    assert_eq!(b.login(&c.token).await.status, 303);
    b
}

/// A browser logged in with a new viewer token named `name`.
pub async fn viewer(c: &TestConsole, name: &str) -> Browser {
    let body = format!(r#"{{"name":"{name}","role":"viewer"}}"#);
    let r = c.call("POST", "/api/v1/tokens", Some(&body)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut b = Browser::new(c);
    assert_eq!(b.login(r.body["token"].as_str().unwrap()).await.status, 303);
    b
}

//! The console seen as a browser sees it, without one: pages fetched with a session cookie,
//! forms posted with the headers a browser adds, redirects not followed (`Console`).

use std::time::Duration;

use super::{Credentials, TestApp};

/// What a console request answered: status, the headers a test reads, and the page.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this is the redirect to the sign-in page that every signed-out URL gets.
    pub fn is_sign_in_redirect(&self) -> bool {
        self.status == 303 && self.location.as_deref() == Some("/console/sign-in")
    }
}

/// One browser's view of one server's console: its base URL and its session cookie.
pub struct Console {
    pub base_url: String,
    pub cookie: Option<String>,
    agent: ureq::Agent,
}

impl Console {
    pub fn of(app: &TestApp) -> Console {
        Console::at(&app.base_url)
    }

    pub fn at(base_url: &str) -> Console {
        Console {
            base_url: base_url.to_owned(),
            cookie: None,
            agent: ureq::AgentBuilder::new()
                .redirects(0)
                .timeout(Duration::from_secs(60))
                .build(),
        }
    }

    /// The origin a page of this console is served from, as a browser's `Origin` says it.
    pub fn origin(&self) -> String {
        self.base_url.clone()
    }

    pub fn get(&self, path: &str) -> Page {
        let mut request = self.agent.get(&format!("{}{path}", self.base_url));
        if let Some(cookie) = &self.cookie {
            request = request.set("Cookie", &format!("bindery_console={cookie}"));
        }
        answer(request.call())
    }

    /// Posts a form with `headers` (a browser's `Origin`, `Sec-Fetch-Site`) and the cookie.
    pub fn post(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let mut request = self.agent.post(&format!("{}{path}", self.base_url));
        if let Some(cookie) = &self.cookie {
            request = request.set("Cookie", &format!("bindery_console={cookie}"));
        }
        for (name, value) in headers {
            request = request.set(name, value);
        }
        answer(request.send_form(form))
    }

    /// Signs in as `credentials` from this console's own page; keeps the session's cookie.
    pub fn sign_in(&mut self, credentials: &Credentials) -> Page {
        let origin = self.origin();
        let page = self.post(
            "/console/sign-in",
            &[
                ("username", &credentials.user),
                ("password", &credentials.password),
            ],
            &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")],
        );
        if let Some(cookie) = &page.set_cookie {
            let value = cookie
                .split(';')
                .next()
                .and_then(|pair| pair.strip_prefix("bindery_console="))
                .expect("the session cookie");
            self.cookie = Some(value.to_owned());
        }
        page
    }

    /// The form token of the signed-in session's pages (the sign-out form carries it).
    pub fn form_token(&self) -> String {
        let page = self.get("/console/services");
        assert_eq!(page.status, 200, "signed in: {}", page.body);
        let marker = r#"name="csrf" value=""#;
        let start = page.body.find(marker).expect("a form token") + marker.len();
        page.body[start..start + page.body[start..].find('"').unwrap()].to_owned()
    }
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> Page {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("console request failed: {e}"),
    };
    let headers = response
        .headers_names()
        .into_iter()
        .map(|name| {
            let value = response.header(&name).unwrap_or("").to_owned();
            (name, value)
        })
        .collect();
    Page {
        status: response.status(),
        location: response.header("location").map(str::to_owned),
        set_cookie: response.header("set-cookie").map(str::to_owned),
        headers,
        body: response.into_string().unwrap_or_default(),
    }
}

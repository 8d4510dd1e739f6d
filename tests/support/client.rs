//! Requests to a running server, signed as an account, and their answers: the verb-named
//! helpers (`create_service`, `register_binding`, `list_user_bindings`…) and the general ones
//! under them (`send_as`, `post`, `get_raw`…).

use std::time::Duration;

use serde_json::Value;

use super::{form, sid, user_bindings_path, Credentials, TestApp};

/// How long a request may take before the test fails: a guard against a server that hangs,
/// not a measurement.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The `Authorization` header for `c`.
pub fn basic(c: &Credentials) -> String {
    use base64::Engine;
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
    format!("Basic {token}")
}

impl TestApp {
    /// A GET signed with `credentials` (or unsigned), answering (status, JSON body).
    pub fn get(&self, path: &str, credentials: Option<&Credentials>) -> (u16, Value) {
        let mut request = ureq::get(&self.url(path)).timeout(REQUEST_TIMEOUT);
        if let Some(c) = credentials {
            request = request.set("Authorization", &basic(c));
        }
        respond(request.call())
    }

    pub fn post_form(
        &self,
        path: &str,
        credentials: &Credentials,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        respond(
            ureq::post(&self.url(path))
                .timeout(REQUEST_TIMEOUT)
                .set("Authorization", &basic(credentials))
                .send_form(form),
        )
    }
}

fn respond(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let text = response.into_string().expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON body")
    };
    (status, body)
}

/// An answer: status, headers, the raw text and its JSON (`Null` when the body is empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub text: String,
    pub body: Value,
    headers: Vec<(String, String)>,
}

impl Reply {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a successful JSON answer with this status and returns its body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        self.body
    }
}

fn reply(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|name| {
            let value = response.header(&name)?.to_owned();
            Some((name, value))
        })
        .collect();
    let text = response.into_string().expect("a text body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("status {status}: the body is not JSON ({e}): {text:?}"))
    };
    Reply {
        status,
        text,
        body,
        headers,
    }
}

impl TestApp {
    /// Any request signed as `credentials`; `body` is sent as given, with the headers given.
    pub fn send_as(
        &self,
        credentials: &Credentials,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let mut request = ureq::request(method, &self.url(path))
            .timeout(REQUEST_TIMEOUT)
            .set("Authorization", &basic(credentials));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        reply(match body {
            Some(bytes) => request.send_bytes(bytes),
            None => request.call(),
        })
    }

    /// A request signed as the first account.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        self.send_as(&self.account, method, path, headers, body)
    }

    /// A GET as the first account, answered in full.
    pub fn get_raw(&self, path: &str) -> Reply {
        self.send("GET", path, &[], None)
    }

    /// A DELETE as the first account, with no `Accept` header, as the helper library sends it.
    pub fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, &[], None)
    }

    /// A POST as the first account with this content type (none when `None`) and body.
    pub fn post_raw(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
        let headers: Vec<(&str, &str)> = content_type
            .map(|t| ("Content-Type", t))
            .into_iter()
            .collect();
        self.send("POST", path, &headers, Some(body))
    }

    /// A form POST as `credentials`.
    pub fn post_as(&self, credentials: &Credentials, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        self.send_as(
            credentials,
            "POST",
            path,
            &headers,
            Some(form(pairs).as_bytes()),
        )
    }

    /// A form POST as the first account.
    pub fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        self.post_as(&self.account, path, pairs)
    }

    /// Follows a URL this server gave out (absolute, on its own origin).
    #[track_caller]
    pub fn follow(&self, url: &Value) -> Reply {
        let url = url.as_str().unwrap_or_else(|| panic!("not a URL: {url}"));
        let path = url
            .strip_prefix(&self.base_url)
            .unwrap_or_else(|| panic!("{url} is not on {}", self.base_url));
        self.get_raw(path)
    }

    /// Every item of a list, following `next_page_url` from `path` to the end.
    pub fn walk(&self, path: &str, key: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut page = self.get_raw(path).expect(200);
        loop {
            items.extend(page[key].as_array().expect("a list").iter().cloned());
            let next = page["meta"]["next_page_url"].clone();
            if next.is_null() {
                return items;
            }
            page = self.follow(&next).expect(200);
        }
    }

    /// Creates a service; it must answer 201.
    #[track_caller]
    pub fn create_service(&self, friendly_name: &str) -> Value {
        self.post("/v2/Services", &[("FriendlyName", friendly_name)])
            .expect(201)
    }

    /// Creates a user by identity; it must answer 201.
    #[track_caller]
    pub fn create_user(&self, service: &str, identity: &str) -> Value {
        self.post(
            &format!("/v2/Services/{service}/Users"),
            &[("Identity", identity)],
        )
        .expect(201)
    }

    /// Creates a push credential; it must answer 201.
    #[track_caller]
    pub fn create_credential(&self, pairs: &[(&str, &str)]) -> Value {
        self.post("/v2/Credentials", pairs).expect(201)
    }

    /// Registers a device for `user` (SID or identity) [EXT].
    pub fn register_binding(&self, service: &str, user: &str, pairs: &[(&str, &str)]) -> Reply {
        self.post(&user_bindings_path(service, user), pairs)
    }

    /// The first page of a user's bindings, with `query` (e.g. `BindingType=apn`) appended.
    pub fn list_user_bindings(&self, service: &str, user: &str, query: &str) -> Reply {
        let path = user_bindings_path(service, user);
        if query.is_empty() {
            self.get_raw(&path)
        } else {
            self.get_raw(&format!("{path}?{query}"))
        }
    }

    /// The SIDs of every binding `user` holds, all pages.
    pub fn user_binding_sids(&self, service: &str, user: &str) -> Vec<String> {
        self.walk(&user_bindings_path(service, user), "bindings")
            .iter()
            .map(sid)
            .collect()
    }

    /// A request with exactly this `Authorization` header value (none when `None`).
    pub fn send_authorization(
        &self,
        authorization: Option<&str>,
        method: &str,
        path: &str,
    ) -> Reply {
        let mut request = ureq::request(method, &self.url(path)).timeout(REQUEST_TIMEOUT);
        if let Some(value) = authorization {
            request = request.set("Authorization", value);
        }
        reply(request.call())
    }
}

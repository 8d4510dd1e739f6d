//! Twilio's list envelope and keyset paging: `PageSize`, `Page`, and an opaque `PageToken`
//! (`PA<last sid>` forward, `PB<first sid>` back), with absolute page URLs that keep filters.

use std::num::IntErrorKind;

use actix_web::HttpRequest;
use bindery_daemon::queries::{Cursor, Page, PageRequest};
use serde::ser::SerializeMap;
use serde::Serialize;

use crate::error::ApiError;
use crate::form::Params;

pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest `Page` number: the largest signed 64-bit integer, so that every client (and
/// every language's integer) reads a page number exactly.
pub const MAX_PAGE: u64 = i64::MAX as u64;
/// The largest log position a history page token may name (positions are SQL integers).
const MAX_POSITION: u64 = i64::MAX as u64;

/// The paging a list request asked for.
pub struct Paging {
    pub request: PageRequest,
    pub page: u64,
    token: Option<String>,
}

impl Paging {
    /// Reads `PageSize` (clamped to `max`), `Page` (at most [`MAX_PAGE`]) and `PageToken`.
    pub fn parse(params: &Params, max: usize) -> Result<Paging, ApiError> {
        let size = match params.one("PageSize")? {
            None => DEFAULT_PAGE_SIZE.min(max),
            // Any positive integer is a size: one past what a machine word holds is clamped
            // like any other size over the max.
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= 1 => n.min(max),
                Err(e) if *e.kind() == IntErrorKind::PosOverflow => max,
                _ => {
                    return Err(ApiError::bad_parameter(format!(
                        "PageSize must be a positive integer, not {v:?}"
                    )))
                }
            },
        };
        let page = match params.one("Page")? {
            None => 0,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n <= MAX_PAGE => n,
                _ => {
                    return Err(ApiError::bad_parameter(format!(
                        "Page must be an integer from 0 to {MAX_PAGE}, not {v:?}"
                    )))
                }
            },
        };
        let token = params.string("PageToken")?;
        let cursor = match token.as_deref() {
            None => Cursor::Start,
            Some(t) if t.len() > 2 && t.starts_with("PA") => Cursor::After(t[2..].to_owned()),
            Some(t) if t.len() > 2 && t.starts_with("PB") => Cursor::Before(t[2..].to_owned()),
            Some(t) => return Err(not_a_token(t)),
        };
        Ok(Paging {
            request: PageRequest { cursor, size },
            page,
            token,
        })
    }

    /// As [`Paging::parse`], for lists keyed by log position (history), where a page token
    /// names a position: a non-negative 64-bit signed integer.
    pub fn parse_positions(params: &Params, max: usize) -> Result<Paging, ApiError> {
        let paging = Self::parse(params, max)?;
        if let Cursor::After(key) | Cursor::Before(key) = &paging.request.cursor {
            if key.parse::<u64>().map_or(true, |p| p > MAX_POSITION) {
                return Err(not_a_token(paging.token.as_deref().unwrap_or_default()));
            }
        }
        Ok(paging)
    }

    /// The number of the page after this one. The number is a label (the token says where
    /// a page starts), so past [`MAX_PAGE`] it stays there rather than name a page that
    /// `Page` refuses.
    fn next(&self) -> u64 {
        self.page.saturating_add(1).min(MAX_PAGE)
    }
}

fn not_a_token(token: &str) -> ApiError {
    ApiError::bad_parameter(format!("PageToken {token:?} is not a page token"))
}

/// The origin of Bindery's own URLs: `public_url`, else the request's scheme and Host.
pub fn origin(request: &HttpRequest, public_url: Option<&str>) -> String {
    match public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let info = request.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    }
}

/// A list body: `{"meta": {...}, key: [items]}`.
pub struct List<B> {
    meta: Meta,
    key: &'static str,
    items: Vec<B>,
}

#[derive(Serialize)]
struct Meta {
    page: u64,
    page_size: usize,
    first_page_url: String,
    previous_page_url: Option<String>,
    url: String,
    next_page_url: Option<String>,
    key: &'static str,
}

impl<B: Serialize> Serialize for List<B> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("meta", &self.meta)?;
        map.serialize_entry(self.key, &self.items)?;
        map.end()
    }
}

/// Builds the list body. `filters` are the query parameters that every page URL keeps.
pub fn envelope<'p, T, B>(
    base_url: &str,
    key: &'static str,
    filters: &[(&str, String)],
    paging: &Paging,
    page: &'p Page<T>,
    cursor: impl Fn(&T) -> String,
    render: impl Fn(&'p T) -> B,
) -> List<B> {
    let url = |page_number: u64, token: Option<String>| {
        let mut query: Vec<(&str, String)> = filters.to_vec();
        query.push(("PageSize", paging.request.size.to_string()));
        query.push(("Page", page_number.to_string()));
        if let Some(token) = token {
            query.push(("PageToken", token));
        }
        let encoded = serde_html_form::to_string(&query).expect("pairs of strings encode");
        format!("{base_url}?{encoded}")
    };
    let next_page_url = match page.items.last() {
        Some(last) if page.more => Some(url(paging.next(), Some(format!("PA{}", cursor(last))))),
        _ => None,
    };
    let previous_page_url = match (page.items.first(), paging.page.checked_sub(1)) {
        (Some(first), Some(previous)) => Some(url(previous, Some(format!("PB{}", cursor(first))))),
        _ => None,
    };
    List {
        meta: Meta {
            page: paging.page,
            page_size: paging.request.size,
            first_page_url: url(0, None),
            previous_page_url,
            url: url(paging.page, paging.token.clone()),
            next_page_url,
            key,
        },
        key,
        items: page.items.iter().map(render).collect(),
    }
}

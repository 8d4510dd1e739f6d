//! The page shell every console page shares, and the small pieces pages repeat: dates (UTC on
//! the server, the viewer's local time once the script ran, and how long ago either way),
//! paging links, SIDs shown short.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use bindery_domain::Timestamp;
use maud::{html, Markup, DOCTYPE};

/// Who is signed in, for the header: the account, what it signed in with, and the form token
/// its sign-out form carries.
pub struct Nav<'a> {
    pub account: &'a str,
    pub principal: &'a str,
    pub csrf_token: &'a str,
}

/// A whole page.
pub fn page(title: &str, nav: Option<&Nav>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Bindery console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/console" { "Bindery console" }
                    @if let Some(nav) = nav {
                        nav aria-label="Main" {
                            a href="/console/services" { "Services" }
                            a href="/console/credentials" { "Credentials" }
                        }
                        form.sign-out method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(nav.csrf_token);
                            span.who title=(format!("account {}", nav.account)) {
                                "Signed in as " code { (short_sid(nav.principal)) }
                            }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page as an answer: HTML, never cached (it shows a signed-in account's data).
pub fn respond(status: StatusCode, page: &Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(page.0.clone())
}

/// A SID (or a token) shown by its kind and last digits: its first digits are its time of
/// creation, alike for SIDs made together. The whole one is in the title, and in the links.
pub fn short_sid(sid: &str) -> String {
    match (sid.get(..2), sid.get(sid.len().saturating_sub(8)..)) {
        (Some(kind), Some(last)) if sid.len() > 12 && sid.is_ascii() => format!("{kind}…{last}"),
        _ => sid.to_owned(),
    }
}

/// A SID shown short, with the whole one a tap or a hover away.
pub fn sid(sid: &str) -> Markup {
    html! { code.sid title=(sid) { (short_sid(sid)) } }
}

/// A date: in UTC in the page (the script shows it in the viewer's time zone), with how long
/// ago it was, or how long until it comes.
pub fn when(at: Timestamp, now: Timestamp) -> Markup {
    let iso = at.to_string();
    let shown = format!("{} {} UTC", &iso[..10], &iso[11..16]);
    html! {
        time datetime=(iso) title=(iso) { (shown) }
        " " span.ago { "(" (ago(at, now)) ")" }
    }
}

/// "3 hours ago", "in 12 days", "just now".
pub fn ago(at: Timestamp, now: Timestamp) -> String {
    let seconds = now.unix() - at.unix();
    let (amount, future) = (seconds.unsigned_abs(), seconds < 0);
    let (count, unit) = match amount {
        0..=59 => return "just now".into(),
        60..=3599 => (amount / 60, "minute"),
        3600..=86_399 => (amount / 3600, "hour"),
        _ => (amount / 86_400, "day"),
    };
    let plural = if count == 1 { "" } else { "s" };
    if future {
        format!("in {count} {unit}{plural}")
    } else {
        format!("{count} {unit}{plural} ago")
    }
}

/// A link to the next page, when there is one, and back to the first when not on it.
pub fn paging(base: &str, first_page: bool, next: Option<String>) -> Markup {
    let join = if base.contains('?') { '&' } else { '?' };
    html! {
        @if !first_page || next.is_some() {
            nav.paging aria-label="Pages" {
                @if !first_page { a href=(base) { "First page" } }
                @if let Some(after) = next {
                    a href=(format!("{base}{join}after={}", encode(&after))) rel="next" { "Next page" }
                }
            }
        }
    }
}

/// Percent-encodes one path segment or query value.
pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// An empty marker, for pages that say nothing is there.
pub fn none(text: &str) -> Markup {
    html! { p.none { (text) } }
}

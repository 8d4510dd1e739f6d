//! The route table as a client sees it: the OpenAPI document, and wrong methods.

use crate::support::{basic, TestApp};

#[test]
fn openapi_json_describes_the_twilio_routes_and_the_extensions() {
    let app = TestApp::spawn();
    let (status, document) = app.get("/openapi.json", None);
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.0.1");
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v2/Services", "get"),
        ("/v2/Credentials/{Sid}", "delete"),
        ("/v2/Services/{ServiceSid}/Users/{Sid}", "post"),
        ("/v2/Services/{ServiceSid}/Bindings", "get"),
        (
            "/v2/Services/{ServiceSid}/Users/{UserSid}/Bindings/{Sid}",
            "delete",
        ),
        ("/v2/Services/{ServiceSid}/Users/{UserSid}/Bindings", "post"),
    ] {
        assert!(paths[path].get(method).is_some(), "{method} {path}");
    }
    let schemas = document["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("chat.v2.service.user.user_binding"));
    assert!(schemas.contains_key("bindery.error"));
}

#[test]
fn a_wrong_method_on_a_served_path_answers_405_naming_the_allowed_ones() {
    let app = TestApp::spawn();
    let response = ureq::request("PUT", &app.url("/v2/Services"))
        .set("Authorization", &basic(&app.account))
        .call();
    let Err(ureq::Error::Status(405, response)) = response else {
        panic!("expected 405")
    };
    assert_eq!(response.header("Allow"), Some("GET, POST"));
    let body: serde_json::Value = response.into_json().unwrap();
    assert_eq!(
        (body["code"].as_u64(), body["status"].as_u64()),
        (Some(20004), Some(405))
    );
}

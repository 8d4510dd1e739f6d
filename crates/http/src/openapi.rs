//! `GET /openapi.json`: Bindery's own OpenAPI 3 document, built from the routes the server
//! actually registers. Each served route takes its description from Twilio's spec for chat v2
//! (`openapi/twilio_chat_v2.json`, the Twilio routes) or from `openapi/extensions.json`
//! (Bindery's own); a served route with neither fails the test that builds the document, so
//! the document cannot drift from the code. Both files live in this crate, which embeds them.
//!
//! Where both describe the same operation or component (an [EXT] field of a Twilio route, such
//! as a credential's `Topic` and `auth`), the extension is merged into Twilio's: objects key by
//! key, anything else replaced. So the extensions file holds only what Bindery adds.

use serde_json::{json, Map, Value};

const TWILIO: &str = include_str!("../openapi/twilio_chat_v2.json");
const EXTENSIONS: &str = include_str!("../openapi/extensions.json");

/// The document for `served`, the (method, path template) pairs of [`crate::served_routes`].
pub fn document(served: &[(String, String)]) -> Result<Value, String> {
    let twilio: Value = serde_json::from_str(TWILIO).map_err(|e| e.to_string())?;
    let extensions: Value = serde_json::from_str(EXTENSIONS).map_err(|e| e.to_string())?;
    let mut paths = Map::new();
    for (method, path) in served {
        let method = method.to_ascii_lowercase();
        let [added, twilios] =
            [&extensions, &twilio].map(|doc| doc["paths"][path.as_str()].get(&method));
        let operation = match (twilios, added) {
            (Some(twilios), Some(added)) => {
                let mut operation = twilios.clone();
                merge(&mut operation, added);
                operation
            }
            (Some(only), None) | (None, Some(only)) => only.clone(),
            (None, None) => {
                return Err(format!(
                    "{} {path} is served but not described",
                    method.to_uppercase()
                ))
            }
        };
        let item = paths.entry(path.clone()).or_insert_with(|| json!({}));
        item[&method] = operation;
    }
    let mut components = twilio["components"].clone();
    for (section, entries) in extensions["components"].as_object().into_iter().flatten() {
        let target = components
            .as_object_mut()
            .ok_or("Twilio's components are not an object")?
            .entry(section.clone())
            .or_insert_with(|| json!({}));
        for (name, value) in entries.as_object().into_iter().flatten() {
            match target.get_mut(name) {
                Some(twilios) => merge(twilios, value),
                None => target[name] = value.clone(),
            }
        }
    }
    Ok(json!({
        "openapi": "3.0.1",
        "info": {
            "title": "Bindery",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A self-hosted push-binding registry serving the binding part of the \
                Twilio Programmable Chat v2 API, plus extensions marked [EXT]. Route descriptions \
                and schemas of the Twilio routes are Twilio's (MIT licensed).",
        },
        "servers": [{"url": "/"}],
        "security": twilio["security"],
        "paths": paths,
        "components": components,
    }))
}

/// `added` merged into `target`: objects key by key, anything else (arrays included) replaced.
fn merge(target: &mut Value, added: &Value) {
    match (target, added) {
        (Value::Object(target), Value::Object(added)) => {
            for (key, value) in added {
                match target.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, added) => *target = added.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extension_of_a_twilio_operation_adds_to_it() {
        let mut twilios = json!({"summary": "Twilio's", "parameters": [1],
            "requestBody": {"schema": {"properties": {"Type": {"type": "string"}}}}});
        merge(
            &mut twilios,
            &json!({"parameters": [2],
                "requestBody": {"schema": {"properties": {"Topic": {"maxLength": 255}}}}}),
        );
        assert_eq!(
            twilios,
            json!({"summary": "Twilio's", "parameters": [2],
                "requestBody": {"schema": {"properties": {
                    "Type": {"type": "string"}, "Topic": {"maxLength": 255}}}}})
        );
    }
}

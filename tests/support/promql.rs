//! PromQL, read just enough to say which metrics an expression reads (for the dashboard in
//! `config/`, which must read only what Bindery serves).

use std::collections::BTreeSet;

/// The metric names a PromQL expression reads: identifiers that are not functions,
/// aggregation keywords, label names or Grafana variables.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    // Quoted strings and Grafana variables are no names.
    let mut text = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
                text.push_str(" \"\" ");
            }
            '$' => {
                while chars.peek().is_some_and(|d| {
                    d.is_ascii_alphanumeric() || *d == '_' || *d == '{' || *d == '}'
                }) {
                    chars.next();
                }
                text.push(' ');
            }
            c => text.push(c),
        }
    }
    // Label matchers `{…}`, ranges `[…]` and grouping lists `by (…)` hold no metric names.
    let mut stripped = String::new();
    let mut depth = 0;
    for c in text.chars() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            c if depth == 0 => stripped.push(c),
            _ => {}
        }
    }
    let grouping = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Aggregations may put their grouping first (`sum by (a) (…)`), so they are not always
    // followed by a parenthesis.
    let keywords = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let tokens: Vec<(String, char)> = {
        let mut out = Vec::new();
        let mut current = String::new();
        let chars: Vec<char> = stripped.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                current.push(c);
            } else if !current.is_empty() {
                let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
                out.push((std::mem::take(&mut current), next.unwrap_or(' ')));
            }
            i += 1;
        }
        if !current.is_empty() {
            out.push((current, ' '));
        }
        out
    };
    let mut names = BTreeSet::new();
    let mut skip_list = false;
    for (token, next) in tokens {
        if skip_list {
            // Inside `by (a, b)`: label names until the list closes; the tokenizer loses the
            // parenthesis, so a list ends at the first token not followed by `,`.
            skip_list = next == ',';
            continue;
        }
        let lower = token.to_ascii_lowercase();
        if grouping.contains(&lower.as_str()) {
            skip_list = next == '(';
            continue;
        }
        if next == '('
            || keywords.contains(&lower.as_str())
            || token.starts_with(|c: char| c.is_ascii_digit())
        {
            continue;
        }
        names.insert(token);
    }
    names
}

#[test]
fn promql_names_are_read_out_of_expressions() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le, route) (rate(bindery_http_request_duration_seconds_bucket{job=~\"$job\"}[$__rate_interval])))"
        ),
        BTreeSet::from(["bindery_http_request_duration_seconds_bucket".to_owned()])
    );
    assert_eq!(
        metric_names("bindery_log_position - on (instance) bindery_projection_position"),
        BTreeSet::from([
            "bindery_log_position".to_owned(),
            "bindery_projection_position".to_owned()
        ])
    );
    assert_eq!(
        metric_names("sum without (status, method) (rate(x_total[5m])) / 2"),
        BTreeSet::from(["x_total".to_owned()])
    );
}

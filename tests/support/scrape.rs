//! `/metrics` as a test reads it: one sample by name and labels.

use std::time::Duration;

use super::TestApp;

impl TestApp {
    /// The value of the `/metrics` sample named `name` whose labels include `labels`; 0 when
    /// that series has not been touched yet (Prometheus leaves it out until then).
    #[track_caller]
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = ureq::get(&self.url("/metrics"))
            .timeout(Duration::from_secs(10))
            .call()
            .expect("GET /metrics")
            .into_string()
            .expect("a text body");
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (found, labels_text) = match series.split_once('{') {
                    Some((found, rest)) => (found, rest.strip_suffix('}').unwrap_or(rest)),
                    None => (series, ""),
                };
                let have: Vec<&str> = labels_text.split(',').collect();
                let wanted = found == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str()));
                wanted.then(|| value.parse::<f64>().expect("a sample value"))
            })
            .unwrap_or(0.0)
    }
}

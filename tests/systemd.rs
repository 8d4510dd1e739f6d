//! The systemd unit shipped in `config/`: how it starts the server and how long it lets it
//! stop.

use std::path::PathBuf;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The unit stops the server no sooner than the server's own 10 s shutdown timeout.
#[test]
fn the_systemd_unit_waits_longer_than_the_shutdown_timeout() {
    let unit = std::fs::read_to_string(repository().join("config/bindery.service"))
        .expect("config/bindery.service");
    let setting = |key: &str| {
        unit.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
            .to_owned()
    };
    assert_eq!(
        setting("ExecStart"),
        "/usr/local/bin/bindery serve --config /etc/bindery/bindery.toml"
    );
    let timeout = setting("TimeoutStopSec");
    let seconds: u64 = timeout
        .trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("TimeoutStopSec={timeout} in plain seconds"));
    assert!(seconds > 10, "TimeoutStopSec={timeout}");
    assert_eq!(setting("StateDirectory"), "bindery");
    assert_eq!(setting("KillSignal"), "SIGTERM");
}

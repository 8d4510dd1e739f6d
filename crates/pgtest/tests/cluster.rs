//! bindery-pgtest against the real PostgreSQL it starts: databases on one server, and a
//! synchronous standby that takes over from a killed primary.

use std::net::TcpStream;

use bindery_pgtest::Cluster;

#[test]
fn one_server_holds_separate_databases() {
    let pg = Cluster::start();
    assert_eq!(
        pg.url("x"),
        format!("host=127.0.0.1 port={} user=postgres dbname=x", pg.port())
    );
    assert_eq!(pg.psql("postgres", "show fsync"), "off");
    let max: u32 = pg.psql("postgres", "show max_connections").parse().unwrap();
    assert!(max >= 200, "max_connections = {max}");

    let a = pg.create_database();
    let b = pg.create_database();
    assert_ne!(a, b);
    pg.psql(&a, "create table t (v text); insert into t values ('in a')");
    pg.psql(
        &b,
        "create table t (v text); insert into t values ('in b'), ('and b')",
    );
    assert_eq!(pg.psql(&a, "select v from t"), "in a");
    assert_eq!(pg.psql(&b, "select v from t order by v"), "and b\nin b");
    assert_eq!(pg.psql(&b, "select count(*), min(v) from t"), "2|and b");
}

#[test]
#[should_panic(expected = "does not exist")]
fn a_failing_statement_panics_with_psqls_error() {
    let pg = Cluster::start();
    pg.psql(
        "postgres",
        "select 1; select * from no_such_table; select 2",
    );
}

#[test]
fn a_synchronous_standby_takes_over_from_a_killed_primary() {
    let mut primary = Cluster::start_with(&[("synchronous_standby_names", "'FIRST 1 (b)'")]);
    let standby = primary.standby("b");
    primary.wait_sync("b");
    let url = primary.create_database();
    let dbname = url.rsplit_once("dbname=").unwrap().1;
    primary.psql(
        &url,
        "create table t (v text); insert into t values ('committed')",
    );

    // Streaming: once replayed, the standby serves the row and refuses writes.
    standby.wait_replay(&primary);
    assert_eq!(standby.psql(dbname, "select v from t"), "committed");
    assert_eq!(standby.psql("postgres", "select pg_is_in_recovery()"), "t");

    let primary_port = primary.port();
    primary.kill();
    assert!(
        TcpStream::connect(("127.0.0.1", primary_port)).is_err(),
        "the killed primary still listens"
    );

    standby.promote();
    assert_eq!(standby.psql(dbname, "select v from t"), "committed");
    standby.psql(dbname, "insert into t values ('after')");
    assert_eq!(
        standby.psql(dbname, "select v from t order by v"),
        "after\ncommitted"
    );
}

#[test]
fn a_killed_server_restarts_with_what_it_had_committed() {
    let mut pg = Cluster::start();
    let url = pg.create_database();
    pg.psql(
        &url,
        "create table t (v int); insert into t select generate_series(1, 1000)",
    );
    let port = pg.port();
    pg.kill();
    pg.restart();
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql(&url, "select sum(v) from t"), "500500");
    pg.stop();
    pg.restart();
    assert_eq!(pg.psql(&url, "select count(*) from t"), "1000");
}

#[test]
fn a_frozen_server_accepts_connections_but_answers_nothing_until_thawed() {
    let pg = Cluster::start();
    pg.freeze();
    assert!(
        TcpStream::connect(("127.0.0.1", pg.port())).is_ok(),
        "the kernel still accepts"
    );
    // libpq's connect_timeout bounds the whole connection, its start-up exchange included.
    let bounded = format!("{} connect_timeout=1", pg.url("postgres"));
    let refused = std::panic::catch_unwind(|| pg.psql(&bounded, "select 1"));
    assert!(refused.is_err(), "a frozen server answered");
    pg.thaw();
    assert_eq!(pg.psql("postgres", "select 1"), "1");
    pg.freeze();
    // Dropped frozen, it stops as usual.
}

#[test]
fn dropping_a_cluster_stops_its_server() {
    let pg = Cluster::start();
    let port = pg.port();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(pg);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still listens"
    );
}

#[test]
fn two_clusters_at_once_are_independent() {
    let one = Cluster::start();
    let two = Cluster::start();
    assert_ne!(one.port(), two.port());
    one.psql("postgres", "create table only_in_one (v int)");
    assert_eq!(
        two.psql(
            "postgres",
            "select count(*) from pg_tables where tablename = 'only_in_one'"
        ),
        "0"
    );
}

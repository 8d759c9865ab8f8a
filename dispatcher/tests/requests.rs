//! `publish --job` leaves its request in Redis for the leading dispatcher; the list of requests
//! is bounded (issue 12: it had no TTL), so requests that no leader takes do not pile up.

use std::process::Command;

const REDIS_URL: &str = "redis://127.0.0.1:6379/";

#[test]
fn the_requests_list_expires_a_day_after_the_last_request() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let jobs = dir.path().join("jobs.d");
    std::fs::create_dir(&jobs).unwrap();
    std::fs::write(
        jobs.join("j.toml"),
        "[[job]]\nid = \"j1\"\nnode = \"web1\"\n\n[[job.action]]\nkind = \"noop\"\n",
    )
    .unwrap();
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).unwrap();
    let prefix = format!("t-requests-{}:", hex::encode(suffix));
    let config = dir.path().join("dispatcher.toml");
    std::fs::write(
        &config,
        format!(
            "[dispatcher]\nkey_prefix = {prefix:?}\njobs_dir = {:?}\n",
            jobs.display().to_string()
        ),
    )
    .unwrap();
    for _ in 0..3 {
        let out = Command::new(env!("CARGO_BIN_EXE_freezer-dispatcher"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--redis-url",
                REDIS_URL,
            ])
            .args(["publish", "--job", "j1"])
            .output()
            .expect("run freezer-dispatcher");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut c = client.get_connection().unwrap();
    let key = format!("{prefix}dispatcher:requests");
    let len: i64 = redis::cmd("LLEN").arg(&key).query(&mut c).unwrap();
    let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut c).unwrap();
    let _: () = redis::cmd("DEL").arg(&key).query(&mut c).unwrap();
    assert_eq!(len, 3);
    assert!((1..=86_400).contains(&ttl), "TTL {ttl}");
}

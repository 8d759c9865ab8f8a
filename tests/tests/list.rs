//! `list` shows the backups truly: levels, kinds, parents, chains, sizes, codecs, encryption, filters;
//! and the `backup --json` summary and the manifest say the same as FORMAT.md.

use freezer_e2e::*;
use serde_json::Value;
use std::ffi::OsString;
use std::fs;
use std::path::Path;

fn list_all(container: &Path, filters: &[&str]) -> Vec<Value> {
    let mut args: Vec<OsString> = vec![
        "list".into(),
        "--container".into(),
        container.into(),
        "--json".into(),
    ];
    args.extend(filters.iter().map(OsString::from));
    let out = run_ok(args);
    let mut v = out
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{out}"))
        .clone();
    v.sort_by(|a, b| a["backup_id"].as_str().cmp(&b["backup_id"].as_str()));
    v
}

/// Checks one `list --json` item against the manifest in its directory.
fn check_item(item: &Value) {
    let dir = Path::new(
        item["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no path: {item}")),
    );
    let m = read_manifest(dir);
    for k in [
        "hostname",
        "backup_name",
        "backup_id",
        "chain_id",
        "parent_id",
        "level",
        "kind",
        "finished_at",
    ] {
        assert_eq!(
            item[k], m[k],
            "list field {k} differs from the manifest: {item}"
        );
    }
    assert_eq!(item["bytes_stored"], m["totals"]["bytes_stored"], "{item}");
    assert_eq!(item["files"], m["totals"]["files"], "{item}");
    let codec = &m["compression"]["codec"];
    assert!(
        item["compression"] == *codec || item["compression"]["codec"] == *codec,
        "compression {} vs manifest {codec}",
        item["compression"]
    );
    assert_eq!(
        item["encrypted"],
        Value::Bool(!m["encryption"].is_null()),
        "{item}"
    );
}

#[test]
fn list_shows_levels_kinds_parents_and_chains() {
    let fx = Fixture::new("alpha");
    fs::write(fx.src.join("a.txt"), b"1").unwrap();
    let mut a = Vec::new();
    for k in 0..3 {
        fs::write(fx.src.join("a.txt"), format!("version {k}")).unwrap();
        a.push(fx.backup(&["--max-level", "1", "--compression", "gzip"]));
    }
    // A second name in the same container, encrypted, differential.
    let mut fx2 = Fixture::new("beta");
    fx2.container = fx.container.clone();
    fs::write(fx2.src.join("b.txt"), b"b").unwrap();
    let mut bargs: Vec<OsString> = vec!["--always-level".into(), "1".into()];
    bargs.extend(fx2.enc());
    let mut b = Vec::new();
    for k in 0..3 {
        fs::write(fx2.src.join("b.txt"), format!("b version {k}")).unwrap();
        b.push(fx2.backup(&bargs));
    }
    // And a second host.
    let c = run_ok(
        fx.backup_args(&fx.src, &["--no-incremental"])
            .into_iter()
            .map(|x| {
                if x == HOST {
                    OsString::from("other-host")
                } else {
                    x
                }
            }),
    )
    .json();

    let id = |s: &Value| s["backup_id"].clone();
    let all = list_all(&fx.container, &[]);
    assert_eq!(
        all.len(),
        7,
        "every backup of every name and host: {all:#?}"
    );
    for item in &all {
        check_item(item);
    }

    let alpha = fx.list();
    assert_eq!(
        alpha.iter().map(id).collect::<Vec<_>>(),
        a.iter().map(id).collect::<Vec<_>>()
    );
    let want = [
        (0, "full", Value::Null, id(&a[0])),
        (1, "incremental", id(&a[0]), id(&a[0])),
        (0, "full", Value::Null, id(&a[2])),
    ];
    for (item, (level, kind, parent, chain)) in alpha.iter().zip(want) {
        assert_eq!(item["level"], level, "{item}");
        assert_eq!(item["kind"], kind, "{item}");
        assert_eq!(item["parent_id"], parent, "{item}");
        assert_eq!(item["chain_id"], chain, "{item}");
        assert_eq!(item["backup_name"], "alpha");
        assert_eq!(item["hostname"], HOST);
        assert_eq!(item["encrypted"], false);
    }

    let beta = list_all(
        &fx.container,
        &["--backup-name", "beta", "--hostname", HOST],
    );
    assert_eq!(
        beta.iter().map(id).collect::<Vec<_>>(),
        b.iter().map(id).collect::<Vec<_>>()
    );
    let want = [
        (0, "full", Value::Null),
        (1, "incremental", id(&b[0])),
        (1, "differential", id(&b[0])),
    ];
    for (item, (level, kind, parent)) in beta.iter().zip(want) {
        assert_eq!(item["level"], level, "{item}");
        assert_eq!(item["kind"], kind, "{item}");
        assert_eq!(item["parent_id"], parent, "{item}");
        assert_eq!(item["chain_id"], id(&b[0]), "{item}");
        assert_eq!(item["encrypted"], true, "{item}");
    }

    let other = list_all(&fx.container, &["--hostname", "other-host"]);
    assert_eq!(other.len(), 1, "{other:#?}");
    assert_eq!(other[0]["backup_id"], c["backup_id"]);
    assert_eq!(other[0]["hostname"], "other-host");

    // Human-readable output names every backup.
    let out = run_ok([
        OsString::from("list"),
        "--container".into(),
        fx.container.clone().into(),
    ]);
    for s in a.iter().chain(&b).chain([&c]) {
        assert!(
            out.stdout.contains(s["backup_id"].as_str().unwrap()),
            "human list misses {}:\n{out}",
            s["backup_id"]
        );
    }
}

#[test]
fn list_does_not_show_debris_without_manifest() {
    let fx = Fixture::new("debris");
    fs::write(fx.src.join("a.txt"), b"a").unwrap();
    let s = fx.backup(&[] as &[&str]);
    // A copy of the backup without its manifest, as an interrupted run would leave it.
    let dir = backup_dir(&s);
    let late = "29991231T235959.999999Z";
    for debris in [
        dir.parent().unwrap().join(format!("1_{late}")),
        dir.parent()
            .unwrap()
            .parent()
            .unwrap()
            .join(late)
            .join(format!("0_{late}")),
    ] {
        fs::create_dir_all(debris.join("data")).unwrap();
        for p in segment_paths(&dir) {
            fs::copy(&p, debris.join("data").join(p.file_name().unwrap())).unwrap();
        }
        fs::copy(dir.join("index"), debris.join("index")).unwrap();
    }
    let list = fx.list();
    assert_eq!(list.len(), 1, "debris is not listed: {list:#?}");
    assert_eq!(list[0]["backup_id"], s["backup_id"]);
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"a");
}

#[test]
fn backup_summary_and_manifest_follow_format_md() {
    let fx = Fixture::new("summary");
    fs::create_dir(fx.src.join("d")).unwrap();
    fs::write(fx.src.join("a.txt"), random_bytes(1, 1000)).unwrap();
    fs::write(fx.src.join("d/b.txt"), random_bytes(2, 20_000)).unwrap();
    fs::write(fx.src.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("a.txt", fx.src.join("l")).unwrap();
    let s = fx.backup(&["--compression", "zstd", "--compression-level", "5"]);
    let dir = backup_dir(&s);
    let m = read_manifest(&dir);
    for k in ["backup_id", "chain_id", "parent_id", "level", "kind"] {
        assert_eq!(s[k], m[k], "summary {k}: {s}");
    }
    for k in [
        "entries",
        "files",
        "bytes_read",
        "bytes_stored",
        "unreadable",
    ] {
        assert_eq!(s[k], m["totals"][k], "summary {k} vs totals: {s}");
    }
    assert!(
        s["duration_seconds"].as_f64().is_some_and(|d| d >= 0.0),
        "{s}"
    );
    assert_eq!(s["entries"], 6, "root, d, a.txt, d/b.txt, empty, l: {s}");
    assert_eq!(s["files"], 3, "{s}");
    assert_eq!(s["bytes_read"], 21_000, "{s}");
    assert_eq!(s["unreadable"], 0, "{s}");

    let id = m["backup_id"].as_str().unwrap();
    parse_backup_id(id);
    assert_eq!(m["chain_id"].as_str(), Some(id));
    assert_eq!(m["format_version"], 1);
    assert_eq!(m["hostname"], HOST);
    assert_eq!(m["backup_name"], "summary");
    assert_eq!(m["engine"], "tar");
    assert_eq!(m["mode"], "fs");
    assert_eq!(m["source"]["kind"], "dir");
    assert_eq!(
        m["source"]["path"].as_str().map(Path::new),
        Some(fx.src.as_path())
    );
    assert_eq!(
        m["compression"],
        serde_json::json!({"codec": "zstd", "level": 5})
    );
    assert!(m["encryption"].is_null());
    assert!(
        m["fencing_token"].is_null(),
        "a standalone worker has no fencing token: {m}"
    );
    assert!(
        m["tool_version"]
            .as_str()
            .unwrap_or("")
            .starts_with("freezer-worker "),
        "{m}"
    );
    let ts = |k: &str| {
        let t = m[k].as_str().unwrap_or_else(|| panic!("{k} missing: {m}"));
        let b = t.as_bytes();
        assert!(
            t.len() == 27 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && t.ends_with('Z'),
            "{k} is YYYY-MM-DDThh:mm:ss.ffffffZ: {t}"
        );
        t.to_string()
    };
    assert!(ts("started_at") <= ts("finished_at"));
    assert_eq!(
        dir,
        fx.container
            .join(format!("{HOST}_summary"))
            .join(id)
            .join(format!("0_{id}")),
        "layout <container>/<host>_<name>/<chain>/<level>_<id>"
    );
    assert!(m["manifest_tag"].is_string());
}

#[test]
fn list_of_missing_container_is_not_found() {
    let fx = Fixture::new("nocontainer");
    let out = run([
        OsString::from("list"),
        "--container".into(),
        fx.path("nope").into(),
        "--json".into(),
    ]);
    out.assert_no_panic().assert_code(10);
}

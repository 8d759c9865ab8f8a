//! Retention (ARCHITECTURE.md §3): `prune` never leaves a chain that cannot be restored, always keeps the newest
//! backup, deletes exactly what every given criterion lets go, agrees with its `--dry-run` (which writes
//! nothing), removes the debris of interrupted runs once it is old enough, acts per backup name, and
//! stays fast with 10,000 backups. The same properties over random histories and policies are in
//! `prune_property.rs`; the report readers and the expected decision are `freezer_e2e::prune`.

use freezer_e2e::prune::*;
use freezer_e2e::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------------
// 2. and 3. Explicit policies
// ---------------------------------------------------------------------------------------------------

/// `n` backups of a small tree changed before each, with `opts`; returns summaries and snapshots.
fn history(fx: &Fixture, opts: &[&str], n: usize) -> (Vec<Value>, Vec<Snapshot>) {
    fs::create_dir_all(fx.src.join("dir")).unwrap();
    fs::write(fx.src.join("dir/base.bin"), random_bytes(1, 50_000)).unwrap();
    let mut out = (Vec::new(), Vec::new());
    for k in 0..n {
        fs::write(
            fx.src.join(format!("file-{k}.txt")),
            format!("backup {k}\n"),
        )
        .unwrap();
        fs::write(fx.src.join("changing.txt"), format!("version {k}\n")).unwrap();
        if k == 2 {
            fs::remove_file(fx.src.join("file-0.txt")).unwrap();
        }
        out.1.push(snapshot(&fx.src));
        out.0.push(fx.backup(opts));
    }
    out
}

fn reasons(pairs: &[(&String, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(id, r)| ((*id).clone(), r.to_string()))
        .collect()
}

#[test]
fn remove_older_than_0_keeps_the_newest_backup_and_its_whole_chain() {
    // OpenStack Freezer's W5: a cutoff after every backup deleted everything.
    let fx = Fixture::new("w5");
    let (s, snaps) = history(&fx, &["--max-level", "2"], 5);
    let ids = backup_ids(&s);
    let levels: Vec<u64> = s.iter().map(|x| x["level"].as_u64().unwrap()).collect();
    assert_eq!(levels, [0, 1, 2, 0, 1]);
    let out = fx.prune(&["--remove-older-than", "0"]);
    out.assert_code(0);
    let nr = name_report(&out.json(), &format!("{HOST}_w5")).clone();
    assert_eq!(
        deleted_ids(&nr),
        [ids[2].as_str(), &ids[1], &ids[0]],
        "{out}"
    );
    assert_eq!(
        kept_reasons(&nr),
        reasons(&[(&ids[4], "newest"), (&ids[3], "ancestor")]),
        "{out}"
    );
    assert_eq!(fx.listed_ids(), &ids[3..]);
    assert_chains_whole(&fx.list(), "w5");
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_tree(&snaps[4], &target, Compare::full());
    // Run again: nothing more to delete, the chain stays.
    let out = fx.prune(&["--remove-older-than", "0"]);
    out.assert_code(0);
    assert!(deleted_ids(name_report(&out.json(), &format!("{HOST}_w5"))).is_empty());
    assert_eq!(fx.listed_ids(), &ids[3..]);
}

#[test]
fn remove_older_than_0_with_differentials_keeps_only_the_full_and_the_newest() {
    let fx = Fixture::new("w5diff");
    let (s, snaps) = history(&fx, &["--always-level", "1"], 4);
    let ids = backup_ids(&s);
    let parents: Vec<Value> = s.iter().map(|x| x["parent_id"].clone()).collect();
    assert_eq!(parents[3], Value::String(ids[0].clone()), "differential");
    let out = fx.prune(&["--remove-older-than", "0"]);
    out.assert_code(0);
    let nr = name_report(&out.json(), &format!("{HOST}_w5diff")).clone();
    assert_eq!(deleted_ids(&nr), [ids[2].as_str(), &ids[1]], "{out}");
    assert_eq!(
        kept_reasons(&nr),
        reasons(&[(&ids[3], "newest"), (&ids[0], "ancestor")])
    );
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_tree(&snaps[3], &target, Compare::full());
}

#[test]
fn keep_last_and_keep_daily_keep_the_chains_they_need() {
    let fx = Fixture::new("keep");
    let (s, _) = history(&fx, &["--max-level", "2"], 3);
    let ids = backup_ids(&s);
    // keep-last 2 keeps #2 and #1; #1 and #2 need #0: nothing goes.
    let out = fx.prune(&["--keep-last", "2"]);
    out.assert_code(0);
    let nr = name_report(&out.json(), &format!("{HOST}_keep")).clone();
    assert!(deleted_ids(&nr).is_empty(), "{out}");
    assert_eq!(
        kept_reasons(&nr),
        reasons(&[
            (&ids[2], "newest"),
            (&ids[1], "policy"),
            (&ids[0], "ancestor")
        ])
    );
    // keep-daily 1 selects the newest of today only; it needs the whole chain.
    let out = fx.prune(&["--keep-daily", "1"]);
    out.assert_code(0);
    let nr = name_report(&out.json(), &format!("{HOST}_keep")).clone();
    assert!(deleted_ids(&nr).is_empty(), "{out}");
    assert_eq!(kept_reasons(&nr)[&ids[2]], "newest");
    assert_eq!(fx.listed_ids(), ids);

    // A new chain: now keep-last 1 and keep-daily 1 let the old chain go.
    let (s2, snaps2) = {
        fs::write(fx.src.join("changing.txt"), b"new chain\n").unwrap();
        let snap = snapshot(&fx.src);
        (fx.backup(&["--max-level", "2"]), snap)
    };
    assert_eq!(s2["level"], 0);
    let new = s2["backup_id"].as_str().unwrap().to_string();
    let dry = fx.prune(&["--keep-daily", "1", "--dry-run"]);
    dry.assert_code(0);
    let nr = name_report(&dry.json(), &format!("{HOST}_keep")).clone();
    assert_eq!(
        deleted_ids(&nr),
        [ids[2].as_str(), &ids[1], &ids[0]],
        "{dry}"
    );
    assert_eq!(fx.listed_ids().len(), 4, "the dry run deleted nothing");
    let out = fx.prune(&["--keep-last", "1"]);
    out.assert_code(0);
    let nr = name_report(&out.json(), &format!("{HOST}_keep")).clone();
    assert_eq!(
        deleted_ids(&nr),
        [ids[2].as_str(), &ids[1], &ids[0]],
        "{out}"
    );
    assert_eq!(fx.listed_ids(), [new]);
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_tree(&snaps2, &target, Compare::full());
}

#[test]
fn prune_without_a_policy_is_a_usage_error() {
    let fx = Fixture::new("nopolicy");
    fs::write(fx.src.join("a"), b"a").unwrap();
    fx.backup(&[] as &[&str]);
    let out = fx.prune(&[] as &[&str]);
    out.assert_no_panic().assert_code(2);
    for bad in [
        &["--remove-older-than", "-1"][..],
        &["--remove-from-date", "yesterday"],
        &["--keep-last", "-3"],
    ] {
        let out = fx.prune(bad);
        out.assert_no_panic().assert_code(2);
    }
    assert_eq!(fx.list().len(), 1);
    let out = run([
        OsString::from("prune"),
        "--container".into(),
        fx.path("missing").into(),
        "--keep-last".into(),
        "1".into(),
    ]);
    out.assert_no_panic().assert_code(10);
}

// ---------------------------------------------------------------------------------------------------
// Synthetic backups: clones of one real backup with other ids, written as FORMAT.md says
// ---------------------------------------------------------------------------------------------------

/// A copy of the unencrypted backup at `template_dir` (manifest `template`) as backup `id` of level
/// `level` in chain `chain` with parent `parent`, under `<container>/<host>_<name>` = `hn_dir`. Objects
/// are hard links (same bytes, so the same tags); the manifest is rewritten and retagged.
fn clone_backup(
    template_dir: &Path,
    template: &Value,
    hn_dir: &Path,
    id: &str,
    chain: &str,
    level: u64,
    parent: Option<&str>,
) -> PathBuf {
    let dir = hn_dir.join(chain).join(format!("{level}_{id}"));
    fs::create_dir_all(dir.join("data")).unwrap();
    for seg in segment_paths(template_dir) {
        fs::hard_link(&seg, dir.join("data").join(seg.file_name().unwrap())).unwrap();
    }
    fs::hard_link(template_dir.join("index"), dir.join("index")).unwrap();
    let mut m = template.clone();
    let (secs, us) = parse_backup_id(id);
    m["backup_id"] = id.into();
    m["chain_id"] = chain.into();
    m["parent_id"] = parent.map_or(Value::Null, Value::from);
    m["level"] = level.into();
    m["kind"] = if level == 0 { "full" } else { "incremental" }.into();
    m["started_at"] = format_rfc3339_micros(secs, us).into();
    m["finished_at"] = format_rfc3339_micros(secs, us).into();
    retag_unencrypted_manifest(&mut m);
    fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    dir
}

/// One real (unencrypted, level 0) backup of a tiny tree: its summary, directory and manifest.
fn template_backup(fx: &Fixture) -> (Value, PathBuf, Value) {
    fs::write(fx.src.join("tiny.txt"), b"tiny\n").unwrap();
    let s = fx.backup(&["--no-incremental"]);
    let dir = backup_dir(&s);
    let m = read_manifest(&dir);
    (s, dir, m)
}

#[test]
fn calendar_keep_rules_select_like_restic_forget() {
    let fx = Fixture::new("calendar");
    let (s, dir, m) = template_backup(&fx);
    let newest = s["backup_id"].as_str().unwrap().to_string();
    let hn_dir = fx.container.join(format!("{HOST}_calendar"));
    // 300 backups over ~4 years, dense near now and sparse further back, in chains of up to 3
    // (level 0, 1, 2), so that calendar picks also keep ancestors.
    let now = parse_backup_id(&newest).0;
    let mut times: Vec<i64> = (1..=300i64).map(|i| now - i * i * 1400 - 7).collect();
    times.reverse();
    let mut chain = String::new();
    let mut parent: Option<String> = None;
    for (k, t) in times.iter().enumerate() {
        let id = format_backup_id(*t, (k as u32 * 7919) % 1_000_000);
        let level = (k % 3) as u64;
        if level == 0 {
            chain = id.clone();
            parent = None;
        }
        clone_backup(&dir, &m, &hn_dir, &id, &chain, level, parent.as_deref());
        parent = Some(id);
    }
    let pristine = fx.path("pristine");
    copy_tree(&fx.container, &pristine);
    let list = fx.list();
    assert_eq!(list.len(), 301);
    let parents = parents_of(&list);

    let p = Policy::default;
    let policies = [
        p().keep("daily", 7),
        p().keep("hourly", 30),
        p().keep("weekly", 5),
        p().keep("monthly", 12),
        p().keep("yearly", 10),
        p().keep("last", 3)
            .keep("daily", 3)
            .keep("weekly", 2)
            .keep("monthly", 6),
        p().keep("yearly", 2).keep("weekly", 3),
        p().keep("monthly", 3).age(
            &strs(&["--remove-older-than", "400"]),
            list.iter()
                .map(|b| b["backup_id"].as_str().unwrap().to_string())
                .filter(|id| parse_backup_id(id).0 < now - 400 * 86_400)
                .collect(),
        ),
    ];
    for policy in policies {
        fs::remove_dir_all(&fx.container).unwrap();
        copy_tree(&pristine, &fx.container);
        let expected = expected_keep(&parents, &policy);
        let out = fx.prune(&policy.args);
        out.assert_code(0);
        let nr = name_report(&out.json(), &format!("{HOST}_calendar")).clone();
        let want: BTreeMap<String, String> = expected
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        let got = kept_reasons(&nr);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "policy {:?}: kept ids",
            policy.args
        );
        assert_eq!(got, want, "policy {:?}: reasons", policy.args);
        assert_eq!(
            deleted_ids(&nr).len() + got.len(),
            301,
            "policy {:?}: every backup is kept or deleted",
            policy.args
        );
        let after = fx.list();
        assert_eq!(
            parents_of(&after).keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "policy {:?}: list after prune",
            policy.args
        );
        assert_chains_whole(&after, &format!("policy {:?}", policy.args));
    }
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_eq!(fs::read(target.join("tiny.txt")).unwrap(), b"tiny\n");
}

#[test]
fn remove_from_date_deletes_only_backups_taken_before_it() {
    let fx = Fixture::new("fromdate");
    let (s, dir, m) = template_backup(&fx);
    let newest = s["backup_id"].as_str().unwrap().to_string();
    let hn_dir = fx.container.join(format!("{HOST}_fromdate"));
    let d = parse_backup_id(&newest).0 - 3600;
    // Full backups just before, exactly at, within and after the second of the date.
    let ids: Vec<String> = [
        (d - 10, 0),
        (d - 1, 999_999),
        (d, 0),
        (d, 500_000),
        (d + 1, 0),
        (d + 60, 0),
    ]
    .iter()
    .map(|&(secs, us)| {
        let id = format_backup_id(secs, us);
        clone_backup(&dir, &m, &hn_dir, &id, &id, 0, None);
        id
    })
    .collect();
    let out = fx.prune(&["--remove-from-date", &format_date(d), "--dry-run"]);
    out.assert_code(0);
    let deleted = deleted_ids(name_report(&out.json(), &format!("{HOST}_fromdate")));
    assert_eq!(
        deleted,
        [ids[1].as_str(), &ids[0]],
        "--remove-from-date {} deletes the backups taken before {0} and no other:\n{out}",
        format_date(d)
    );
}

// ---------------------------------------------------------------------------------------------------
// 4. and 5. Debris
// ---------------------------------------------------------------------------------------------------

/// A copy of the objects of `from` (no manifest) at `to`, as an interrupted backup leaves them,
/// with leftover temporary files of the atomic writes.
fn make_debris(from: &Path, to: &Path) -> usize {
    fs::create_dir_all(to.join("data")).unwrap();
    let mut n = 0;
    for p in segment_paths(from) {
        fs::copy(&p, to.join("data").join(p.file_name().unwrap())).unwrap();
        n += 1;
    }
    fs::copy(from.join("index"), to.join("index")).unwrap();
    fs::write(to.join("data/.tmp.00000009.4242"), random_bytes(5, 999)).unwrap();
    fs::write(to.join(".tmp.manifest.json.4242"), b"{\"format_version\":").unwrap();
    n + 3
}

#[test]
fn debris_stays_during_the_grace_period_and_goes_after_it() {
    let fx = Fixture::new("debris");
    fs::write(fx.src.join("a.txt"), random_bytes(1, 100_000)).unwrap();
    let s0 = fx.backup(&["--max-level", "3", "--max-segment-size", "65536"]);
    fs::write(fx.src.join("b.txt"), b"b").unwrap();
    let s1 = fx.backup(&["--max-level", "3", "--max-segment-size", "65536"]);
    let snap = snapshot(&fx.src);
    let ids = backup_ids(&[s0.clone(), s1.clone()]);
    let real = backup_dir(&s0);
    let chain_dir = real.parent().unwrap();
    let hn_dir = chain_dir.parent().unwrap().to_path_buf();
    // An interrupted level 2 in the chain, and an interrupted level 0 that started a chain of its own.
    let late = "29991231T235959.000001Z";
    let in_chain = chain_dir.join(format!("2_{late}"));
    let own_chain = hn_dir.join(late).join(format!("0_{late}"));
    let n1 = make_debris(&real, &in_chain);
    let n2 = make_debris(&real, &own_chain);
    let bytes1 = tree_bytes(&in_chain);
    // Things in the container that are not backups are never touched.
    fs::write(hn_dir.join("notes.txt"), b"not a backup").unwrap();
    fs::create_dir_all(fx.container.join("elsewhere")).unwrap();
    fs::write(fx.container.join("elsewhere/file"), b"not a backup").unwrap();
    age_tree(&fx.container.join("elsewhere"), 10 * 86_400);
    age_tree(&hn_dir.join("notes.txt"), 10 * 86_400);
    assert_eq!(fx.listed_ids(), ids, "debris is not listed");

    // Fresh: left alone (it may be a backup still running elsewhere).
    let out = fx.prune(&["--keep-last", "10"]);
    out.assert_code(0);
    let nr = name_report(&out.json(), &format!("{HOST}_debris")).clone();
    assert!(debris_paths(&nr).is_empty(), "fresh debris removed:\n{out}");
    assert!(in_chain.join("index").exists() && own_chain.join("index").exists());

    // Two hours old: the default grace (1 h) is over; a longer grace still protects it.
    age_tree(&in_chain, 7200);
    age_tree(&own_chain, 7200);
    let out = fx.prune(&["--keep-last", "10", "--debris-grace-hours", "3"]);
    out.assert_code(0);
    assert!(debris_paths(name_report(&out.json(), &format!("{HOST}_debris"))).is_empty());
    // One fresh object makes the whole directory fresh.
    let fresh_seg = own_chain.join("data/00000000");
    filetime::set_file_mtime(&fresh_seg, filetime::FileTime::now()).unwrap();
    let before = snapshot(&fx.container);
    let out = fx.prune(&["--keep-last", "10", "--dry-run"]);
    out.assert_code(0);
    let nr = name_report(&out.json(), &format!("{HOST}_debris")).clone();
    assert_eq!(debris_paths(&nr), [in_chain.as_path()], "{out}");
    let d = &nr["debris"][0];
    assert_eq!(d["objects"], n1, "{out}");
    assert_eq!(d["bytes"], bytes1, "{out}");
    let diff = diff_snapshots(&before, &snapshot(&fx.container), Compare::full());
    assert!(diff.is_empty(), "the dry run removed debris: {diff:?}");

    let out = fx.prune(&["--keep-last", "10"]);
    out.assert_code(0);
    assert_eq!(
        debris_paths(name_report(&out.json(), &format!("{HOST}_debris"))),
        [in_chain.as_path()]
    );
    assert!(!in_chain.exists(), "debris (with its .tmp files) removed");
    assert!(own_chain.join("index").exists(), "fresh debris kept");
    age_tree(&own_chain, 7200);
    let out = fx.prune(&["--keep-last", "10"]);
    out.assert_code(0);
    let nr = name_report(&out.json(), &format!("{HOST}_debris")).clone();
    assert_eq!(debris_paths(&nr), [own_chain.as_path()]);
    assert_eq!(nr["debris"][0]["objects"], n2);
    assert!(
        !own_chain.parent().unwrap().exists(),
        "the chain directory of the debris is gone too"
    );
    // Grace 0 removes debris at once.
    let again = chain_dir.join(format!("3_{late}"));
    make_debris(&real, &again);
    let out = fx.prune(&["--keep-last", "10", "--debris-grace-hours", "0"]);
    out.assert_code(0);
    assert!(!again.exists(), "{out}");

    assert_eq!(fs::read(hn_dir.join("notes.txt")).unwrap(), b"not a backup");
    assert_eq!(
        fs::read(fx.container.join("elsewhere/file")).unwrap(),
        b"not a backup"
    );
    assert_eq!(fx.listed_ids(), ids);
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_tree(&snap, &target, Compare::full());
    let out = fx.verify(&["--read-data"]);
    out.assert_code(0);
}

/// Dirs below `hn_dir` of the shape `<chain>/<level>_<id>` that have no manifest.
fn manifestless_dirs(hn_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for chain in fs::read_dir(hn_dir).into_iter().flatten().flatten() {
        if !chain.file_type().unwrap().is_dir() {
            continue;
        }
        for b in fs::read_dir(chain.path()).unwrap().flatten() {
            if b.file_type().unwrap().is_dir() && !b.path().join("manifest.json").exists() {
                out.push(b.path());
            }
        }
    }
    out
}

#[test]
fn a_killed_backup_leaves_debris_that_prune_removes_after_the_grace_period() {
    let fx = Fixture::new("killed");
    fs::write(fx.src.join("small.txt"), b"first backup\n").unwrap();
    let first = fx.backup(&["--no-incremental"]);
    let snap = snapshot(&fx.src);
    let hn_dir = fx.container.join(format!("{HOST}_killed"));
    let big_src = fx.path("big");
    fs::create_dir(&big_src).unwrap();
    let mut size = 64u64 << 20;
    let debris = loop {
        write_random_file(&big_src.join("big.bin"), size, size);
        let mut cmd = worker();
        cmd.args(fx.backup_args(
            &big_src,
            &["--no-incremental", "--max-segment-size", "65536"],
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let start = Instant::now();
        let found = loop {
            let d = manifestless_dirs(&hn_dir);
            if let Some(d) = d.into_iter().find(|d| {
                fs::read_dir(d.join("data"))
                    .map(|mut r| r.next().is_some())
                    .unwrap_or(false)
            }) {
                break Some(d);
            }
            if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(60) {
                break None;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let _ = child.kill();
        let status = child.wait().unwrap();
        match found {
            Some(d) if !d.join("manifest.json").exists() && !status.success() => break d,
            _ => {
                // The backup finished before it could be killed: clean up and try with more data.
                assert!(size < 1 << 30, "could not catch a backup while it ran");
                for d in fx.list().iter().skip(1) {
                    fs::remove_dir_all(d["path"].as_str().unwrap()).unwrap();
                }
                size *= 4;
            }
        }
    };
    assert_eq!(
        fx.listed_ids(),
        [first["backup_id"].as_str().unwrap()],
        "a killed backup is not listed"
    );
    let out = fx.prune(&["--keep-last", "1"]);
    out.assert_code(0);
    assert!(debris_paths(name_report(&out.json(), &format!("{HOST}_killed"))).is_empty());
    assert!(debris.exists(), "fresh debris of a killed backup is kept");
    age_tree(&debris, 7200);
    let out = fx.prune(&["--keep-last", "1"]);
    out.assert_code(0);
    assert_eq!(
        debris_paths(name_report(&out.json(), &format!("{HOST}_killed"))),
        [debris.as_path()],
        "{out}"
    );
    assert!(!debris.exists());
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_tree(&snap, &target, Compare::full());
}

#[test]
fn a_prune_interrupted_after_deleting_manifests_is_finished_by_the_next_run() {
    let fx = Fixture::new("interrupted");
    let mut snaps = Vec::new();
    let mut s = Vec::new();
    for k in 0..4 {
        fs::write(fx.src.join("v.txt"), format!("version {k}\n")).unwrap();
        fs::write(fx.src.join(format!("f{k}.bin")), random_bytes(k, 30_000)).unwrap();
        snaps.push(snapshot(&fx.src));
        s.push(fx.backup(&["--no-incremental"]));
        wait_for_second_after(s[k as usize]["backup_id"].as_str().unwrap(), 1);
    }
    let ids = backup_ids(&s);
    // A prune that would delete #0 and #1 died after removing #0's manifest (the commit point) and
    // one of its segments; #1 was not reached.
    let dir0 = backup_dir(&s[0]);
    fs::remove_file(dir0.join("manifest.json")).unwrap();
    // (As storage deletes objects: a directory left empty goes with its last object.)
    fs::remove_file(dir0.join("data/00000000")).unwrap();
    if absent_or_empty(&dir0.join("data")) {
        fs::remove_dir(dir0.join("data")).unwrap();
    }
    assert_eq!(
        fx.listed_ids(),
        &ids[1..],
        "a backup without manifest is gone"
    );
    let out = fx.verify(&["--read-data"]);
    out.assert_code(0);
    assert_eq!(out.json()["checked"].as_array().unwrap().len(), 3);

    // Rerun while the leftovers are fresh: the policy part finishes, the leftovers wait.
    let out = fx.prune(&["--keep-last", "2"]);
    out.assert_code(0);
    let nr = name_report(&out.json(), &format!("{HOST}_interrupted")).clone();
    assert_eq!(deleted_ids(&nr), [ids[1].as_str()], "{out}");
    assert!(debris_paths(&nr).is_empty(), "{out}");
    assert!(dir0.exists());
    age_tree(&dir0, 7200);
    let out = fx.prune(&["--keep-last", "2"]);
    out.assert_code(0);
    let nr = name_report(&out.json(), &format!("{HOST}_interrupted")).clone();
    assert!(deleted_ids(&nr).is_empty(), "{out}");
    assert_eq!(debris_paths(&nr), [dir0.as_path()], "{out}");
    assert!(!dir0.exists());
    assert_eq!(fx.listed_ids(), &ids[2..]);
    for k in 2..4 {
        let target = fx.path(&format!("restore-{k}"));
        fx.restore(&target, &["--restore-from-date", &date_of_backup(&ids[k])]);
        assert_tree(&snaps[k], &target, Compare::full());
    }
}

#[test]
fn a_prune_interrupted_inside_a_chain_leaves_every_visible_backup_restorable() {
    let fx = Fixture::new("midchain");
    let (s, snaps) = history(&fx, &["--max-level", "2"], 4);
    let ids = backup_ids(&s);
    // Deleting #2, #1, #0 (children first) died after #2's manifest: #0 and #1 are still whole.
    let dir2 = backup_dir(&s[2]);
    fs::remove_file(dir2.join("manifest.json")).unwrap();
    let list = fx.list();
    assert_eq!(fx.listed_ids(), [ids[0].as_str(), &ids[1], &ids[3]]);
    assert_chains_whole(&list, "midchain");
    let out = fx.verify(&["--read-data"]);
    out.assert_code(0);
    age_tree(&dir2, 7200);
    let out = fx.prune(&["--keep-last", "1"]);
    out.assert_code(0);
    let nr = name_report(&out.json(), &format!("{HOST}_midchain")).clone();
    assert_eq!(deleted_ids(&nr), [ids[1].as_str(), &ids[0]], "{out}");
    assert_eq!(debris_paths(&nr), [dir2.as_path()]);
    assert_eq!(fx.listed_ids(), [ids[3].as_str()]);
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_tree(&snaps[3], &target, Compare::full());
}

// ---------------------------------------------------------------------------------------------------
// 6. Per name
// ---------------------------------------------------------------------------------------------------

#[test]
fn prune_acts_per_backup_name_or_on_all_names() {
    let fx = Fixture::new("alpha");
    let with_name = |name: &str| {
        let mut f = Fixture::new(name);
        f.container = fx.container.clone();
        f
    };
    let beta = with_name("beta");
    // A name that another name's prefix or suffix could be confused with.
    let alphabet = with_name("alphabet");
    for f in [&fx, &beta, &alphabet] {
        for k in 0..3 {
            fs::write(f.src.join("x.txt"), format!("{} {k}", f.name)).unwrap();
            f.backup(&["--no-incremental"]);
        }
    }
    for _ in 0..3 {
        run_ok(
            fx.backup_args(&fx.src, &["--no-incremental"])
                .into_iter()
                .map(|x| if x == HOST { "other-host".into() } else { x }),
        );
    }
    let count = |host: &str, name: &str| -> usize {
        run_ok([
            "list",
            "--container",
            fx.container.to_str().unwrap(),
            "--backup-name",
            name,
            "--hostname",
            host,
            "--json",
        ])
        .json()
        .as_array()
        .unwrap()
        .len()
    };
    let counts = || {
        [
            count(HOST, "alpha"),
            count(HOST, "beta"),
            count(HOST, "alphabet"),
            count("other-host", "alpha"),
        ]
    };
    assert_eq!(counts(), [3, 3, 3, 3]);

    let out = fx.prune(&["--keep-last", "1"]);
    out.assert_code(0);
    let v = out.json();
    assert_eq!(
        names_in(&v),
        BTreeSet::from([format!("{HOST}_alpha")]),
        "{out}"
    );
    assert_eq!(counts(), [1, 3, 3, 3]);

    // --hostname alone: every name of that host.
    let out = run_ok([
        "prune",
        "--container",
        fx.container.to_str().unwrap(),
        "--hostname",
        "other-host",
        "--keep-last",
        "2",
        "--json",
    ]);
    assert_eq!(
        names_in(&out.json()),
        BTreeSet::from(["other-host_alpha".to_string()]),
        "{out}"
    );
    assert_eq!(counts(), [1, 3, 3, 2]);

    // Neither: every name of every host.
    let dry = run_ok([
        "prune",
        "--container",
        fx.container.to_str().unwrap(),
        "--keep-last",
        "1",
        "--json",
        "--dry-run",
    ]);
    assert_eq!(counts(), [1, 3, 3, 2], "dry run deleted nothing");
    let out = run_ok([
        "prune",
        "--container",
        fx.container.to_str().unwrap(),
        "--keep-last",
        "1",
        "--json",
    ]);
    let v = out.json();
    let want = BTreeSet::from([
        format!("{HOST}_alpha"),
        format!("{HOST}_beta"),
        format!("{HOST}_alphabet"),
        "other-host_alpha".to_string(),
    ]);
    assert_eq!(names_in(&v), want, "{out}");
    assert_eq!(names_in(&dry.json()), want);
    for hn in &want {
        assert_eq!(
            deleted_ids(name_report(&dry.json(), hn)),
            deleted_ids(name_report(&v, hn)),
            "{hn}: dry run and real run"
        );
    }
    assert_eq!(counts(), [1, 1, 1, 1]);
    for f in [&fx, &beta, &alphabet] {
        let target = f.path("restored");
        f.restore(&target, &[] as &[&str]);
        assert_eq!(
            fs::read_to_string(target.join("x.txt")).unwrap(),
            format!("{} 2", f.name)
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// 7. 10,000 backups
// ---------------------------------------------------------------------------------------------------

#[test]
fn prune_and_list_of_10000_backups() {
    // Correctness at scale only: the times are printed (run with --nocapture), not asserted; speed
    // is measured by bench/, not by timed tests, which would fail on a loaded machine.
    const N: usize = 10_000;
    let fx = Fixture::new("many");
    let (s, dir, m) = template_backup(&fx);
    let newest = s["backup_id"].as_str().unwrap().to_string();
    let (secs, us) = parse_backup_id(&newest);
    let hn_dir = fx.container.join(format!("{HOST}_many"));
    let t = Instant::now();
    let mut ids: Vec<String> = (1..N as i64)
        .map(|i| {
            let id = format_backup_id(secs - i, us);
            clone_backup(&dir, &m, &hn_dir, &id, &id, 0, None);
            id
        })
        .collect();
    ids.push(newest.clone());
    ids.sort();
    eprintln!(
        "10,000 backups: generated in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let list = fx.list();
    let list_secs = t.elapsed().as_secs_f64();
    eprintln!("10,000 backups: list --json took {list_secs:.2} s");
    assert_eq!(list.len(), N);
    assert!(list.iter().all(|b| b["restorable"] == true));

    let t = Instant::now();
    let out = fx.prune(&["--keep-last", "10"]);
    let prune_secs = t.elapsed().as_secs_f64();
    eprintln!("10,000 backups: prune --keep-last 10 --json took {prune_secs:.2} s");
    out.assert_code(0);
    let v = out.json();
    let nr = name_report(&v, &format!("{HOST}_many"));
    assert_eq!(deleted_ids(nr).len(), N - 10);
    assert_eq!(
        kept_reasons(nr).keys().cloned().collect::<Vec<_>>(),
        &ids[N - 10..]
    );
    assert_eq!(fx.listed_ids(), &ids[N - 10..]);
    assert_eq!(
        fs::read_dir(&hn_dir).unwrap().count(),
        10,
        "the chain directories of deleted backups are gone"
    );
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    assert_eq!(fs::read(target.join("tiny.txt")).unwrap(), b"tiny\n");
}

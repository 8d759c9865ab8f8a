//! `verify` proves what is stored can be restored: structurally (listing and manifests), by reading
//! every segment (`--read-data`, `--read-data-subset`), and against a live tree (`--compare-to`); every
//! damaged object is named and the exit code says what was found. Also `info`, and the `restorable`
//! column of `list` and `info`.

use freezer_e2e::*;
use serde_json::Value;
use std::ffi::OsString;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// A chain of three backups (levels 0, 1, 2) in 64 KiB segments, each backup in a second of its own:
/// level 1 and level 2 each rewrite different files, so the newest backup needs data of all three.
struct Chain {
    fx: Fixture,
    ids: Vec<String>,
    dirs: Vec<PathBuf>,
    snaps: Vec<Snapshot>,
    /// Copies of the source at each backup (for `--compare-to`).
    states: Vec<PathBuf>,
    encrypted: bool,
    /// A copy of the undamaged container.
    pristine: PathBuf,
}

impl Chain {
    fn new(name: &str, encrypted: bool) -> Chain {
        let fx = Fixture::new(name);
        for i in 0..8 {
            fs::write(
                fx.src.join(format!("big-{i}.bin")),
                random_bytes(i, 40_000 + i as usize),
            )
            .unwrap();
        }
        fs::create_dir(fx.src.join("dir")).unwrap();
        for i in 0..5 {
            fs::write(
                fx.src.join(format!("dir/small-{i}.txt")),
                format!("small {i}\n"),
            )
            .unwrap();
        }
        std::os::unix::fs::symlink("big-0.bin", fx.src.join("link")).unwrap();
        let mut opts: Vec<OsString> = vec![
            "--max-level".into(),
            "2".into(),
            "--max-segment-size".into(),
            "65536".into(),
        ];
        if encrypted {
            opts.extend(fx.enc());
        }
        let mut c = Chain {
            ids: Vec::new(),
            dirs: Vec::new(),
            snaps: Vec::new(),
            states: Vec::new(),
            encrypted,
            pristine: fx.path("pristine"),
            fx,
        };
        for k in 0..3u64 {
            if k > 0 {
                wait_for_second_after(c.ids.last().unwrap(), 1);
                for i in 0..3 {
                    let f = (k - 1) * 3 + i;
                    fs::write(
                        c.fx.src.join(format!("big-{f}.bin")),
                        random_bytes(100 * k + f, 40_000),
                    )
                    .unwrap();
                }
                fs::write(c.fx.src.join(format!("new-{k}.txt")), b"new\n").unwrap();
            }
            if k == 2 {
                fs::remove_file(c.fx.src.join("dir/small-0.txt")).unwrap();
            }
            c.snaps.push(snapshot(&c.fx.src));
            let state = c.fx.path(&format!("state-{k}"));
            copy_tree(&c.fx.src, &state);
            c.states.push(state);
            let s = c.fx.backup(&opts);
            assert_eq!(s["level"], k, "{s}");
            c.ids.push(s["backup_id"].as_str().unwrap().to_string());
            let dir = backup_dir(&s);
            let n = segment_paths(&dir).len();
            assert!(n >= 2, "backup {k} has several segments: {n}");
            c.dirs.push(dir);
        }
        copy_tree(&c.fx.container, &c.pristine);
        c
    }

    /// The passphrase option when encrypted.
    fn key(&self) -> Vec<OsString> {
        if self.encrypted {
            self.fx.enc()
        } else {
            Vec::new()
        }
    }

    /// `verify --json` with the key (when encrypted) and `extra`.
    fn verify(&self, extra: &[&str]) -> Out {
        let mut a = self.key();
        a.extend(extra.iter().map(OsString::from));
        let out = self.fx.verify(&a);
        out.assert_no_panic();
        out
    }

    /// Puts the undamaged container back.
    fn reset(&self) {
        make_writable(&self.fx.container);
        fs::remove_dir_all(&self.fx.container).unwrap();
        copy_tree(&self.pristine, &self.fx.container);
    }

    fn seg(&self, backup: usize, k: usize) -> PathBuf {
        self.dirs[backup].join("data").join(format!("{k:08}"))
    }

    /// Restores backup `k` by date (`None`: the newest, no date) into a fresh directory.
    fn try_restore(&self, k: Option<usize>, tag: &str) -> (Out, PathBuf) {
        let target = self.fx.path(&format!("restore-{tag}-{k:?}"));
        make_writable(&target);
        let _ = fs::remove_dir_all(&target);
        let mut a = self.key();
        if let Some(k) = k {
            a.push("--restore-from-date".into());
            a.push(date_of_backup(&self.ids[k]).into());
        }
        let out = self.fx.try_restore(&target, &a);
        out.assert_no_panic();
        (out, target)
    }

    /// `restorable` of each backup, oldest first, as `info` and as `list` show it (they must agree).
    fn restorable(&self) -> Vec<(String, bool)> {
        let out = self.fx.info(&[] as &[&str]);
        out.assert_code(0);
        let mut rows = out.json().as_array().unwrap().clone();
        rows.sort_by(|a, b| a["backup_id"].as_str().cmp(&b["backup_id"].as_str()));
        let info: Vec<(String, bool)> = rows
            .iter()
            .map(|r| {
                (
                    r["backup_id"].as_str().unwrap().to_string(),
                    r["restorable"]
                        .as_bool()
                        .unwrap_or_else(|| panic!("no restorable in {r}")),
                )
            })
            .collect();
        let list: Vec<(String, bool)> = self
            .fx
            .list()
            .iter()
            .map(|r| {
                (
                    r["backup_id"].as_str().unwrap().to_string(),
                    r["restorable"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(info, list, "info and list disagree on restorable");
        info
    }
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key:?} array in {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Asserts that some entry of `damaged` names `what`.
#[track_caller]
fn assert_named(v: &Value, what: &str, ctx: &str) {
    let damaged = strings(v, "damaged");
    assert!(
        damaged.iter().any(|d| d.contains(what)),
        "{ctx}: \"damaged\" does not name {what}: {damaged:#?}"
    );
    assert_eq!(v["sound"], false, "{ctx}: {v}");
}

/// One kind of damage and what it must lead to.
struct Case {
    name: &'static str,
    damage: Box<dyn Fn(&Chain)>,
    /// A part of the damaged object's path (or id) that `damaged` must contain.
    names: Box<dyn Fn(&Chain) -> String>,
    /// Whether the structural check (no data read) sees it.
    structural: bool,
    /// Whether backup #1 (level 1) is still listed.
    b1_listed: bool,
    /// Whether restoring the newest backup must fail (`false`: it may work, but never wrongly).
    newest_fails: bool,
}

fn cases() -> Vec<Case> {
    let rel = |c: &Chain, b: usize, tail: &str| -> String {
        let d = &c.dirs[b];
        format!(
            "{}/{}/{tail}",
            d.parent().unwrap().file_name().unwrap().to_string_lossy(),
            d.file_name().unwrap().to_string_lossy()
        )
    };
    vec![
        Case {
            name: "segment of level 1 deleted",
            damage: Box::new(|c| fs::remove_file(c.seg(1, 1)).unwrap()),
            names: Box::new(move |c| rel(c, 1, "data/00000001")),
            structural: true,
            b1_listed: true,
            newest_fails: true,
        },
        Case {
            name: "segment of level 1 truncated",
            damage: Box::new(|c| {
                let p = c.seg(1, 0);
                let len = fs::metadata(&p).unwrap().len();
                fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_len(len / 2)
                    .unwrap();
            }),
            names: Box::new(move |c| rel(c, 1, "data/00000000")),
            structural: true,
            b1_listed: true,
            newest_fails: true,
        },
        Case {
            name: "byte flipped in a segment of level 1",
            damage: Box::new(|c| {
                let p = c.seg(1, 1);
                let len = fs::metadata(&p).unwrap().len();
                flip_byte(&p, len / 2);
            }),
            names: Box::new(move |c| rel(c, 1, "data/00000001")),
            structural: false,
            b1_listed: true,
            newest_fails: true,
        },
        Case {
            name: "manifest of level 1 (the newest's parent) deleted",
            damage: Box::new(|c| fs::remove_file(c.dirs[1].join("manifest.json")).unwrap()),
            names: Box::new(|c| c.ids[1].clone()),
            structural: true,
            b1_listed: false,
            newest_fails: true,
        },
        Case {
            name: "manifest of level 1 altered",
            damage: Box::new(|c| {
                let mut m = read_manifest(&c.dirs[1]);
                m["totals"]["files"] = (m["totals"]["files"].as_u64().unwrap() + 1).into();
                write_manifest(&c.dirs[1], &m);
            }),
            names: Box::new(move |c| rel(c, 1, "manifest.json")),
            structural: true,
            b1_listed: true,
            newest_fails: true,
        },
        Case {
            name: "byte flipped in the index of level 1",
            damage: Box::new(|c| {
                let p = c.dirs[1].join("index");
                let len = fs::metadata(&p).unwrap().len();
                flip_byte(&p, len / 2);
            }),
            names: Box::new(move |c| rel(c, 1, "index")),
            structural: false,
            b1_listed: true,
            // The newest backup's own index says where everything is.
            newest_fails: false,
        },
        Case {
            name: "index of level 1 truncated",
            damage: Box::new(|c| {
                let p = c.dirs[1].join("index");
                let data = fs::read(&p).unwrap();
                fs::write(&p, &data[..data.len() - 7]).unwrap();
            }),
            names: Box::new(move |c| rel(c, 1, "index")),
            structural: true,
            b1_listed: true,
            newest_fails: false,
        },
    ]
}

fn run_case(c: &Chain, case: &Case) {
    let ctx = format!(
        "{} ({})",
        case.name,
        if c.encrypted {
            "encrypted"
        } else {
            "unencrypted"
        }
    );
    c.reset();
    (case.damage)(c);
    let named = (case.names)(c);

    // Structural check.
    let out = c.verify(&[]);
    if case.structural {
        assert_eq!(out.code(), 12, "{ctx}: structural verify\n{out}");
        assert_named(&out.json(), &named, &ctx);
    } else {
        assert_eq!(
            out.code(),
            0,
            "{ctx}: structural verify cannot see this (expected)\n{out}"
        );
        assert_eq!(out.json()["sound"], true, "{ctx}\n{out}");
    }
    // Reading the data sees everything.
    let out = c.verify(&["--read-data"]);
    assert_eq!(out.code(), 12, "{ctx}: verify --read-data\n{out}");
    let v = out.json();
    assert_named(&v, &named, &ctx);
    let checked = strings(&v, "checked");
    let expect_checked: Vec<String> = c
        .ids
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != 1 || case.b1_listed)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(checked, expect_checked, "{ctx}: checked\n{out}");
    // The same through the chain of the newest only.
    let out = c.verify(&[
        "--read-data",
        "--restore-from-date",
        &date_of_backup(&c.ids[2]),
    ]);
    assert_eq!(
        out.code(),
        12,
        "{ctx}: verify --read-data of the newest chain\n{out}"
    );

    // Restores: the damaged backup fails, an earlier one still works.
    if case.b1_listed {
        let (out, target) = c.try_restore(Some(1), "b1");
        assert_ne!(
            out.code(),
            0,
            "{ctx}: restore of the damaged backup worked\n{out}"
        );
        let bad = wrong_files(&c.snaps[1], &target);
        assert!(bad.is_empty(), "{ctx}: wrong files left: {bad:?}\n{out}");
    }
    let (out, target) = c.try_restore(None, "newest");
    if case.newest_fails {
        assert_ne!(out.code(), 0, "{ctx}: restore of the newest worked\n{out}");
        let bad = wrong_files(&c.snaps[2], &target);
        assert!(bad.is_empty(), "{ctx}: wrong files left: {bad:?}\n{out}");
    } else if out.code() == 0 {
        let d = diff_snapshots(&c.snaps[2], &snapshot(&target), Compare::full());
        assert!(d.is_empty(), "{ctx}: the newest restored wrongly: {d:?}");
    }
    let (out, target) = c.try_restore(Some(0), "b0");
    assert_eq!(
        out.code(),
        0,
        "{ctx}: restore of the undamaged level 0\n{out}"
    );
    let d = diff_snapshots(&c.snaps[0], &snapshot(&target), Compare::full());
    assert!(d.is_empty(), "{ctx}: level 0 restored wrongly: {d:?}");
    let out = c.verify(&[
        "--read-data",
        "--restore-from-date",
        &date_of_backup(&c.ids[0]),
    ]);
    assert_eq!(
        out.code(),
        0,
        "{ctx}: verify of the undamaged level 0\n{out}"
    );

    // restorable is judged from the listing: missing or short objects and missing ancestors.
    let r = c.restorable();
    let want: Vec<(String, bool)> = c
        .ids
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != 1 || case.b1_listed)
        .map(|(k, id)| {
            let sizes_wrong = case.structural && case.name != "manifest of level 1 altered";
            (id.clone(), k == 0 || !sizes_wrong)
        })
        .collect();
    assert_eq!(r, want, "{ctx}: restorable (info and list)");
}

fn damage_cases(encrypted: bool) {
    let c = Chain::new(if encrypted { "enc" } else { "plain" }, encrypted);
    // Undamaged: sound, all segments read.
    let out = c.verify(&["--read-data"]);
    out.assert_code(0);
    let v = out.json();
    assert_eq!(v["sound"], true);
    assert_eq!(strings(&v, "checked"), c.ids);
    assert!(strings(&v, "unkeyed").is_empty());
    assert!(strings(&v, "damaged").is_empty());
    let total: usize = c.dirs.iter().map(|d| segment_paths(d).len()).sum();
    assert_eq!(v["segments_read"], total);
    assert_eq!(
        c.restorable(),
        c.ids.iter().map(|i| (i.clone(), true)).collect::<Vec<_>>()
    );

    let mut failures = Vec::new();
    for case in cases() {
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| run_case(&c, &case))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} damage case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn verify_names_every_kind_of_damage_unencrypted() {
    damage_cases(false);
}

#[test]
fn verify_names_every_kind_of_damage_encrypted() {
    damage_cases(true);
}

#[test]
fn encrypted_without_key_is_checked_for_structure_only_and_a_wrong_key_is_refused() {
    let c = Chain::new("unkeyed", true);
    for extra in [&[][..], &["--read-data"]] {
        let out = c.fx.verify(extra);
        out.assert_no_panic().assert_code(0);
        let v = out.json();
        assert_eq!(strings(&v, "unkeyed"), c.ids, "{out}");
        assert_eq!(strings(&v, "checked"), c.ids, "{out}");
        assert_eq!(v["segments_read"], 0, "{out}");
        assert_eq!(v["sound"], true, "{out}");
    }
    // Without the key a missing segment is still found.
    fs::remove_file(c.seg(2, 0)).unwrap();
    let out = c.fx.verify(&[] as &[&str]);
    out.assert_no_panic().assert_code(12);
    assert!(
        strings(&out.json(), "damaged")
            .iter()
            .any(|d| d.contains(&format!("{}/data/00000000", c.ids[2]))),
        "{out}"
    );
    c.reset();

    let wrong = c.fx.path("wrong-pass");
    fs::write(&wrong, "not the passphrase\n").unwrap();
    for extra in [&[][..], &["--read-data"]] {
        let mut a: Vec<OsString> = vec!["--encrypt-pass-file".into(), wrong.clone().into()];
        a.extend(extra.iter().map(OsString::from));
        let out = c.fx.verify(&a);
        out.assert_no_panic().assert_code(12);
        let v = out.json();
        assert_eq!(v["sound"], false);
        let damaged = strings(&v, "damaged");
        for id in &c.ids {
            assert!(
                damaged.iter().any(|d| d.contains(id.as_str())),
                "a wrong key is reported for {id}: {damaged:#?}"
            );
        }
    }
    // Nothing was changed by any of it.
    let d = diff_snapshots(
        &snapshot(&c.pristine),
        &snapshot(&c.fx.container),
        Compare::content(),
    );
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn read_data_subset_reads_about_half_of_the_segments_chosen_at_random() {
    let c = Chain::new("subset", false);
    let per_backup: Vec<usize> = c.dirs.iter().map(|d| segment_paths(d).len()).collect();
    let total: usize = per_backup.iter().sum();
    let half: usize = per_backup.iter().map(|n| n.div_ceil(2)).sum();
    let read = |pct: &str| -> (i32, Value) {
        let out = c.verify(&["--read-data-subset", pct]);
        (out.code(), out.json())
    };
    let (code, v) = read("50");
    assert_eq!(code, 0, "{v}");
    let n = v["segments_read"].as_u64().unwrap() as usize;
    assert_eq!(
        n, half,
        "per backup, half its segments rounded up: {per_backup:?}: {v}"
    );
    assert!(
        2 * n >= total && n <= total / 2 + c.ids.len() && n < total,
        "about half of {total}: {n}"
    );
    assert_eq!(read("100").1["segments_read"], total);
    let one = read("1").1["segments_read"].as_u64().unwrap() as usize;
    assert_eq!(one, c.ids.len(), "at least one segment per backup");
    for bad in ["0", "101", "-5"] {
        let out = c.verify(&["--read-data-subset", bad]);
        assert_eq!(out.code(), 2, "--read-data-subset {bad}\n{out}");
    }

    // A flipped byte in one segment of level 0: a run finds it exactly when it picks that segment,
    // which a random choice of half does sometimes and not always.
    assert!(per_backup[0] >= 3, "{per_backup:?}");
    flip_byte(&c.seg(0, 1), 100);
    let mut found = 0;
    let runs = 24;
    for _ in 0..runs {
        let (code, v) = read("50");
        match code {
            12 => {
                found += 1;
                assert_named(&v, &format!("{}/data/00000001", c.ids[0]), "subset");
            }
            0 => assert_eq!(v["sound"], true),
            other => panic!("exit {other}: {v}"),
        }
    }
    assert!(
        found > 0 && found < runs,
        "the subset is chosen at random: the damaged segment was read in {found} of {runs} runs"
    );
    let (code, _) = read("100");
    assert_eq!(code, 12);
}

#[test]
fn compare_to_names_every_difference_with_the_live_tree() {
    let c = Chain::new("compare", false);
    let compare = |live: &Path, date: Option<usize>| -> Out {
        let mut a = vec![
            "--read-data".to_string(),
            "--compare-to".to_string(),
            live.display().to_string(),
        ];
        if let Some(k) = date {
            a.push("--restore-from-date".into());
            a.push(date_of_backup(&c.ids[k]));
        }
        let out = c.fx.verify(&a);
        out.assert_no_panic();
        out
    };
    // The source is the newest state; each kept copy is the state at its backup.
    let out = compare(&c.fx.src, None);
    assert_eq!(out.code(), 0, "{out}");
    let v = out.json();
    assert!(strings(&v, "differences").is_empty(), "{out}");
    assert_eq!(v["sound"], true);
    for k in 0..3 {
        let out = compare(&c.states[k], Some(k));
        assert_eq!(out.code(), 0, "state {k}\n{out}");
    }
    // An older state is not the newest backup.
    let out = compare(&c.states[0], None);
    assert_eq!(out.code(), 1, "{out}");

    // Same size, same mtime, other content.
    let p = c.fx.src.join("big-7.bin");
    let md = fs::symlink_metadata(&p).unwrap();
    let mut data = fs::read(&p).unwrap();
    data[20_000] ^= 0x55;
    fs::write(&p, &data).unwrap();
    filetime::set_file_mtime(&p, filetime::FileTime::from_last_modification_time(&md)).unwrap();
    let out = compare(&c.fx.src, None);
    assert_eq!(out.code(), 1, "{out}");
    let v = out.json();
    assert_eq!(v["sound"], true, "differences are not damage: {v}");
    let diffs = strings(&v, "differences");
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("big-7.bin") && d.contains("content differs")),
        "{diffs:#?}"
    );
    assert_eq!(diffs.len(), 1, "only that file differs: {diffs:#?}");

    // An extra file, a missing one, a mode, a symlink target, a changed size.
    fs::write(c.fx.src.join("extra.txt"), b"extra").unwrap();
    fs::remove_file(c.fx.src.join("dir/small-3.txt")).unwrap();
    chmod(&c.fx.src.join("new-1.txt"), 0o600);
    fs::remove_file(c.fx.src.join("link")).unwrap();
    std::os::unix::fs::symlink("elsewhere", c.fx.src.join("link")).unwrap();
    fs::write(c.fx.src.join("big-6.bin"), b"short now").unwrap();
    let out = compare(&c.fx.src, None);
    assert_eq!(out.code(), 1, "{out}");
    let diffs = strings(&out.json(), "differences");
    for (path, what) in [
        ("big-7.bin", "content differs"),
        ("extra.txt", "not in the backup"),
        ("dir/small-3.txt", "missing"),
        ("new-1.txt", "mode"),
        ("link", "symlink target"),
        ("big-6.bin", "size"),
    ] {
        assert!(
            diffs
                .iter()
                .any(|d| d.starts_with(&format!("{path}:")) && d.contains(what)),
            "{path} ({what}) is not named: {diffs:#?}"
        );
    }
    // Damage wins over differences: exit 12.
    fs::remove_file(c.seg(0, 0)).unwrap();
    let out = compare(&c.fx.src, None);
    assert_eq!(out.code(), 12, "{out}");
}

#[test]
fn compare_to_works_on_an_encrypted_chain() {
    let c = Chain::new("compare-enc", true);
    let mut a = c.key();
    a.extend(["--compare-to".into(), c.fx.src.clone().into_os_string()]);
    let out = c.fx.verify(&a);
    assert_eq!(out.code(), 0, "{out}");
    let p = c.fx.src.join("dir/small-1.txt");
    let md = fs::symlink_metadata(&p).unwrap();
    fs::write(&p, b"SMALL 1\n").unwrap();
    filetime::set_file_mtime(&p, filetime::FileTime::from_last_modification_time(&md)).unwrap();
    let out = c.fx.verify(&a);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        strings(&out.json(), "differences")
            .iter()
            .any(|d| d.contains("dir/small-1.txt") && d.contains("content differs")),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------------
// info
// ---------------------------------------------------------------------------------------------------

#[test]
fn info_shows_one_backup_or_all_and_restorable_follows_the_chain() {
    let fx = Fixture::new("info");
    let mut ids = Vec::new();
    for k in 0..4 {
        fs::write(fx.src.join(format!("f{k}.bin")), random_bytes(k, 150_000)).unwrap();
        let s = fx.backup(&["--max-level", "2", "--max-segment-size", "65536"]);
        ids.push(s["backup_id"].as_str().unwrap().to_string());
    }
    let list = fx.list();
    let levels: Vec<u64> = list.iter().map(|b| b["level"].as_u64().unwrap()).collect();
    assert_eq!(levels, [0, 1, 2, 0]);

    let out = fx.info(&[] as &[&str]);
    out.assert_code(0);
    let mut rows = out.json().as_array().unwrap().clone();
    rows.sort_by(|a, b| a["backup_id"].as_str().cmp(&b["backup_id"].as_str()));
    assert_eq!(rows, list, "info rows are list rows");
    for r in &rows {
        let m = read_manifest(Path::new(r["path"].as_str().unwrap()));
        assert_eq!(r["started_at"], m["started_at"], "{r}");
        assert_eq!(r["finished_at"], m["finished_at"], "{r}");
        assert_eq!(
            r["segments"],
            m["segments"].as_array().unwrap().len(),
            "{r}"
        );
        for k in [
            "entries",
            "bytes_read",
            "unreadable",
            "files",
            "bytes_stored",
        ] {
            assert_eq!(r[k], m["totals"][k], "{k}: {r}");
        }
        assert_eq!(r["restorable"], true, "{r}");
    }

    for id in &ids {
        let out = fx.info(&["--backup-id", id]);
        out.assert_code(0);
        let v = out.json();
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{out}");
        assert_eq!(&v[0]["backup_id"], id.as_str());
    }
    let out = fx.info(&["--backup-id", "20000101T000000.000000Z"]);
    out.assert_no_panic().assert_code(10);
    let out = fx.info(&["--backup-id", "not-an-id"]);
    out.assert_no_panic().assert_code(10);
    let mut other = Fixture::new("nosuchname");
    other.container = fx.container.clone();
    other.info(&[] as &[&str]).assert_no_panic().assert_code(10);

    // A segment of level 1 goes: level 1 and its descendant (level 2) are not restorable; the full it
    // depends on and the new chain are.
    let dir1 = Path::new(rows[1]["path"].as_str().unwrap());
    assert!(segment_paths(dir1).len() >= 2);
    fs::remove_file(dir1.join("data/00000001")).unwrap();
    let restorable = |v: &Value| -> Vec<bool> {
        let mut rows = v.as_array().unwrap().clone();
        rows.sort_by(|a, b| a["backup_id"].as_str().cmp(&b["backup_id"].as_str()));
        rows.iter()
            .map(|r| r["restorable"].as_bool().unwrap())
            .collect()
    };
    let out = fx.info(&[] as &[&str]);
    out.assert_code(0);
    assert_eq!(restorable(&out.json()), [true, false, false, true], "{out}");
    let list = Value::Array(fx.list());
    assert_eq!(restorable(&list), [true, false, false, true]);
    for (k, want) in [(0, true), (1, false), (2, false), (3, true)] {
        let out = fx.info(&["--backup-id", &ids[k]]);
        out.assert_code(0);
        assert_eq!(out.json()[0]["restorable"], want, "backup {k}: {out}");
    }
    // Human-readable output says so.
    let out = run_ok([
        OsString::from("info"),
        "--container".into(),
        fx.container.clone().into(),
        "--backup-name".into(),
        "info".into(),
        "--hostname".into(),
        HOST.into(),
        "--backup-id".into(),
        ids[2].clone().into(),
    ]);
    assert!(out.stdout.contains(&ids[2]), "{out}");
    assert!(out.stdout.contains("NO"), "{out}");

    // A segment of the right size but wrong content is not seen by restorable (listing only).
    fs::remove_dir_all(fx.container.join(format!("{HOST}_info"))).unwrap();
    fs::write(fx.src.join("g.bin"), random_bytes(9, 100_000)).unwrap();
    let s = fx.backup(&["--max-segment-size", "65536"]);
    flip_byte(&backup_dir(&s).join("data/00000000"), 10);
    let out = fx.info(&[] as &[&str]);
    out.assert_code(0);
    assert_eq!(out.json()[0]["restorable"], true, "{out}");
}

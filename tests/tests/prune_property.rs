//! Retention, property-tested: random histories of backups (random edits of a random tree, random
//! level options) pruned with a random policy. Prune must delete exactly what the policy lets go,
//! keep the newest backup and every chain whole, agree with its `--dry-run` (which writes nothing),
//! and leave every survivor restorable to the tree it recorded.

use freezer_e2e::prune::*;
use freezer_e2e::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

// ---------------------------------------------------------------------------------------------------
// A deterministic PRNG (xorshift64*)
// ---------------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03 | 1);
        for _ in 0..4 {
            r.next();
        }
        r
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------------------
// Random trees and edits
// ---------------------------------------------------------------------------------------------------

const SIZES: [usize; 9] = [0, 1, 100, 511, 512, 513, 4000, 20_000, 70_000];

fn random_file(p: &Path, rng: &mut Rng) {
    let size = *rng.pick(&SIZES);
    fs::write(p, random_bytes(rng.next(), size)).unwrap();
}

fn initial_tree(src: &Path, rng: &mut Rng) {
    let mut dirs = vec![src.to_path_buf()];
    for d in ["d0", "d0/sub", "d1", "d2"] {
        if rng.chance(60) {
            let p = src.join(d);
            if p.parent().unwrap().is_dir() {
                fs::create_dir(&p).unwrap();
                dirs.push(p);
            }
        }
    }
    for i in 0..rng.range(3, 8) {
        let dir = rng.pick(&dirs).clone();
        random_file(&dir.join(format!("f{i}.bin")), rng);
    }
    if rng.chance(50) {
        std::os::unix::fs::symlink("f0.bin", src.join("link")).unwrap();
    }
}

/// Regular files, directories (not the root) and symlinks below `src`, relative.
fn entries(src: &Path) -> (Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>) {
    let (mut files, mut dirs, mut links) = (Vec::new(), Vec::new(), Vec::new());
    fn walk(root: &Path, rel: &Path, out: &mut (Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>)) {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(n);
            let ft = fs::symlink_metadata(root.join(&r)).unwrap().file_type();
            if ft.is_dir() {
                out.1.push(r.clone());
                walk(root, &r, out);
            } else if ft.is_symlink() {
                out.2.push(r);
            } else {
                out.0.push(r);
            }
        }
    }
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    walk(src, Path::new(""), &mut out);
    files.append(&mut out.0);
    dirs.append(&mut out.1);
    links.append(&mut out.2);
    (files, dirs, links)
}

/// One to four random changes before backup `step`; returns a description.
fn random_edits(src: &Path, rng: &mut Rng, step: u64) -> Vec<String> {
    let mut done = Vec::new();
    for j in 0..rng.range(1, 4) {
        let (files, dirs, links) = entries(src);
        let mut parents = vec![PathBuf::new()];
        parents.extend(dirs.iter().cloned());
        let fresh = format!("n{step}_{j}");
        let op = rng.below(11);
        let file = (!files.is_empty()).then(|| rng.pick(&files).clone());
        match (op, file) {
            (1, Some(f)) => {
                random_file(&src.join(&f), rng);
                done.push(format!("rewrite {}", f.display()));
            }
            (2, Some(f)) => {
                // Same size, mtime put back: only ctime tells.
                let p = src.join(&f);
                let md = fs::symlink_metadata(&p).unwrap();
                let data = random_bytes(rng.next(), md.len() as usize);
                fs::write(&p, data).unwrap();
                filetime::set_file_mtime(&p, filetime::FileTime::from_last_modification_time(&md))
                    .unwrap();
                done.push(format!("same-size rewrite {}", f.display()));
            }
            (3, Some(f)) => {
                use std::io::Write;
                let mut h = fs::OpenOptions::new()
                    .append(true)
                    .open(src.join(&f))
                    .unwrap();
                h.write_all(&random_bytes(rng.next(), 300)).unwrap();
                done.push(format!("append {}", f.display()));
            }
            (4, Some(f)) => {
                fs::remove_file(src.join(&f)).unwrap();
                done.push(format!("delete {}", f.display()));
            }
            (5, _) => {
                let parent = rng.pick(&parents).clone();
                let d = src.join(&parent).join(&fresh);
                fs::create_dir(&d).unwrap();
                random_file(&d.join("inner.bin"), rng);
                done.push(format!("mkdir {}", parent.join(&fresh).display()));
            }
            (6, _) if !dirs.is_empty() => {
                let d = rng.pick(&dirs).clone();
                fs::remove_dir_all(src.join(&d)).unwrap();
                done.push(format!("rm -r {}", d.display()));
            }
            (7, Some(f)) => {
                let mode = *rng.pick(&[0o600, 0o640, 0o644, 0o755]);
                chmod(&src.join(&f), mode);
                done.push(format!("chmod {mode:o} {}", f.display()));
            }
            (8, _) => {
                let l = if !links.is_empty() && rng.chance(50) {
                    let l = rng.pick(&links).clone();
                    fs::remove_file(src.join(&l)).unwrap();
                    l
                } else {
                    rng.pick(&parents).join(format!("{fresh}.lnk"))
                };
                let target = format!("target-{}", rng.below(1000));
                std::os::unix::fs::symlink(&target, src.join(&l)).unwrap();
                done.push(format!("symlink {} -> {target}", l.display()));
            }
            (9, Some(f)) => {
                let to = rng.pick(&parents).join(&fresh);
                fs::rename(src.join(&f), src.join(&to)).unwrap();
                done.push(format!("mv {} {}", f.display(), to.display()));
            }
            (10, Some(f)) => {
                let to = rng.pick(&parents).join(&fresh);
                fs::hard_link(src.join(&f), src.join(&to)).unwrap();
                done.push(format!("ln {} {}", f.display(), to.display()));
            }
            _ => {
                let parent = rng.pick(&parents).clone();
                random_file(&src.join(&parent).join(&fresh), rng);
                done.push(format!("new {}", parent.join(&fresh).display()));
            }
        }
    }
    done
}

fn random_level_opts(rng: &mut Rng) -> Vec<String> {
    match rng.below(4) {
        0 => strs(&["--max-level", &rng.range(1, 3).to_string()]),
        1 => strs(&["--always-level", &rng.range(1, 2).to_string()]),
        2 => strs(&["--no-incremental"]),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------------

struct Taken {
    id: String,
    level: u64,
    snap: Snapshot,
    copy: PathBuf,
}

/// One random scenario: backups with random edits and level options, a random policy, then the
/// properties of prune. Each backup gets a second of its own so that `--restore-from-date` selects it;
/// before backup number `gap` two whole seconds stay empty, where the age criteria cut.
fn scenario(seed: u64) {
    let mut rng = Rng::new(seed);
    let fx = Fixture::new("prop");
    initial_tree(&fx.src, &mut rng);
    let n = rng.range(5, 10) as usize;
    let gap = rng.range(1, n as u64 - 1) as usize;
    let base_opts = random_level_opts(&mut rng);
    let mut ctx = format!("seed {seed}: {n} backups, options {base_opts:?}, gap before #{gap}");
    let mut taken: Vec<Taken> = Vec::new();
    for k in 0..n {
        if let Some(prev) = taken.last() {
            wait_for_second_after(&prev.id, if k == gap { 3 } else { 1 });
            let edits = random_edits(&fx.src, &mut rng, k as u64);
            ctx.push_str(&format!("\n  edits before #{k}: {edits:?}"));
        }
        let opts = if rng.chance(25) {
            random_level_opts(&mut rng)
        } else {
            base_opts.clone()
        };
        let snap = snapshot(&fx.src);
        let copy = fx.path(&format!("state-{k}"));
        copy_tree(&fx.src, &copy);
        let s = fx.backup(&opts);
        let t = Taken {
            id: s["backup_id"].as_str().unwrap().to_string(),
            level: s["level"].as_u64().unwrap(),
            snap,
            copy,
        };
        ctx.push_str(&format!("\n  #{k} {} level {} {opts:?}", t.id, t.level));
        taken.push(t);
    }
    let ids: Vec<String> = taken.iter().map(|t| t.id.clone()).collect();
    let before_gap: BTreeSet<String> = ids[..gap].iter().cloned().collect();
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    // The empty seconds: S+1 and S+2, S being the second of the backup before the gap.
    let s = parse_backup_id(&ids[gap - 1]).0;
    let cut_micros = (s + 1) * 1_000_000 + 100_000;
    let fractional_days = || {
        let d = (now_micros() - cut_micros) as f64 / 86_400_000_000.0;
        strs(&["--remove-older-than", &format!("{d:.12}")])
    };
    let from_date = |rng: &mut Rng| {
        let date = format_date(s + rng.range(1, 2) as i64);
        strs(&["--remove-from-date", &date])
    };
    let keep_last = |rng: &mut Rng| rng.range(1, 4) as usize;

    let p = Policy::default();
    let policy = match rng.below(11) {
        0 => p.keep("last", keep_last(&mut rng)),
        1 => p.age(&strs(&["--remove-older-than", "0"]), all.clone()),
        2 => p.age(&fractional_days(), before_gap.clone()),
        3 => p.age(&from_date(&mut rng), before_gap.clone()),
        4 => p
            .keep("last", keep_last(&mut rng))
            .age(&fractional_days(), before_gap.clone()),
        5 => p
            .keep("last", keep_last(&mut rng))
            .age(&from_date(&mut rng), before_gap.clone()),
        6 => p
            .keep("daily", 1)
            .age(&strs(&["--remove-older-than", "0"]), all.clone()),
        7 => p
            .keep("hourly", rng.range(1, 3) as usize)
            .age(&from_date(&mut rng), before_gap.clone()),
        8 => p
            .age(&strs(&["--remove-older-than", "0"]), all.clone())
            .age(&from_date(&mut rng), before_gap.clone()),
        9 => p
            .keep("last", 1)
            .age(&strs(&["--remove-older-than", "1"]), BTreeSet::new()),
        _ => p.age(
            &strs(&["--remove-from-date", "2000-01-01T00:00:00"]),
            BTreeSet::new(),
        ),
    };
    ctx.push_str(&format!("\n  policy {:?}", policy.args));

    let list = fx.list();
    assert_eq!(
        list.iter()
            .map(|b| b["backup_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ids,
        "{ctx}: list before prune"
    );
    let parents = parents_of(&list);
    let expected = expected_keep(&parents, &policy);
    let expected_deleted: BTreeSet<String> = all
        .iter()
        .filter(|id| !expected.contains_key(*id))
        .cloned()
        .collect();
    let dir_of: HashMap<String, PathBuf> = list
        .iter()
        .map(|b| {
            (
                b["backup_id"].as_str().unwrap().to_string(),
                PathBuf::from(b["path"].as_str().unwrap()),
            )
        })
        .collect();
    let bytes_of: HashMap<String, u64> = dir_of
        .iter()
        .map(|(id, d)| (id.clone(), tree_bytes(d)))
        .collect();

    // (d) The dry run writes nothing and announces exactly what the real run does.
    let disk_before = snapshot(&fx.container);
    let mut dry_args = policy.args.clone();
    dry_args.push("--dry-run".into());
    let dry = fx.prune(&dry_args);
    dry.assert_code(0);
    let dry = dry.json();
    assert_eq!(dry["dry_run"], true, "{ctx}: {dry}");
    let d = diff_snapshots(&disk_before, &snapshot(&fx.container), Compare::full());
    assert!(
        d.is_empty(),
        "{ctx}: prune --dry-run changed the container: {d:?}"
    );
    let real_out = fx.prune(&policy.args);
    real_out.assert_code(0);
    let real = real_out.json();
    assert_eq!(real["dry_run"], false, "{ctx}: {real}");
    let hn = format!("{HOST}_prop");
    let (dry_nr, real_nr) = (name_report(&dry, &hn), name_report(&real, &hn));
    assert_eq!(
        deleted_ids(dry_nr),
        deleted_ids(real_nr),
        "{ctx}: the dry run announced other deletions than the real run made"
    );
    assert_eq!(
        kept_reasons(dry_nr),
        kept_reasons(real_nr),
        "{ctx}: dry run and real run keep differently"
    );

    // The decision is the documented one.
    let deleted = deleted_ids(real_nr);
    assert!(
        deleted.windows(2).all(|w| w[0] > w[1]),
        "{ctx}: deletions are reported newest first: {deleted:?}"
    );
    assert_eq!(
        deleted.iter().cloned().collect::<BTreeSet<_>>(),
        expected_deleted,
        "{ctx}: deleted backups\n{real_out}"
    );
    let want_reasons: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(
        kept_reasons(real_nr),
        want_reasons,
        "{ctx}: kept backups and reasons"
    );
    for d in real_nr["deleted"].as_array().unwrap() {
        let id = d["backup_id"].as_str().unwrap();
        let path = Path::new(d["path"].as_str().unwrap());
        assert_eq!(path, dir_of[id], "{ctx}: path of deleted {id}");
        assert!(!path.exists(), "{ctx}: {} still exists", path.display());
        assert_eq!(d["bytes"], bytes_of[id], "{ctx}: bytes freed by {id}");
        let level = taken.iter().find(|t| t.id == id).unwrap().level;
        assert_eq!(d["level"], level, "{ctx}: level of deleted {id}");
    }
    assert!(
        real_nr["debris"].as_array().unwrap().is_empty(),
        "{ctx}: {real}"
    );

    // (a) the newest survives, (c) no survivor lost its parent.
    let after = fx.list();
    let survivors: Vec<String> = after
        .iter()
        .map(|b| b["backup_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        survivors,
        expected.keys().cloned().collect::<Vec<_>>(),
        "{ctx}: list after prune"
    );
    assert_eq!(
        survivors.last(),
        ids.last(),
        "{ctx}: the newest backup is gone"
    );
    assert_chains_whole(&after, &ctx);

    // (b) Every survivor restores to exactly the tree it recorded, and verify agrees with a copy of it.
    for (k, t) in taken.iter().enumerate() {
        if !survivors.contains(&t.id) {
            continue;
        }
        let date = date_of_backup(&t.id);
        let target = fx.path(&format!("restore-{k}"));
        let out = fx.try_restore(&target, &["--restore-from-date", date.as_str()]);
        assert_eq!(
            out.code(),
            0,
            "{ctx}: restore of survivor #{k} ({})\n{out}",
            t.id
        );
        let d = diff_snapshots(&t.snap, &snapshot(&target), Compare::full());
        assert!(
            d.is_empty(),
            "{ctx}: survivor #{k} ({}) restores to another tree:\n  {}",
            t.id,
            d.join("\n  ")
        );
        let out = fx.verify(&[
            OsString::from("--read-data"),
            "--restore-from-date".into(),
            date.clone().into(),
            "--compare-to".into(),
            t.copy.clone().into(),
        ]);
        assert_eq!(
            out.code(),
            0,
            "{ctx}: verify of survivor #{k} ({})\n{out}",
            t.id
        );
        let v = out.json();
        assert_eq!(v["sound"], true, "{ctx}: {v}");
        assert_eq!(
            v["checked"].as_array().unwrap().last(),
            Some(&Value::String(t.id.clone())),
            "{ctx}: verify --restore-from-date {date} checked the wrong backup: {v}"
        );
    }
    let target = fx.path("restore-newest");
    fx.restore(&target, &[] as &[&str]);
    assert_tree(&taken.last().unwrap().snap, &target, Compare::full());
    let out = fx.verify(&["--read-data"]);
    assert_eq!(out.code(), 0, "{ctx}: verify of all survivors\n{out}");
    let checked: Vec<String> = out.json()["checked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(checked, survivors, "{ctx}: verify checks every survivor");
    eprintln!(
        "seed {seed}: levels {:?}, policy {:?}: deleted {}, kept {}",
        taken.iter().map(|t| t.level).collect::<Vec<_>>(),
        policy.args,
        deleted.len(),
        survivors.len()
    );
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(panic without message)".into())
}

/// Random scenarios, run side by side (they mostly wait for the clock). `FREEZER_E2E_SEED` runs one
/// seed; `FREEZER_E2E_CASES` changes how many.
#[test]
fn prune_property_random_histories_and_policies() {
    let seeds: Vec<u64> = match std::env::var("FREEZER_E2E_SEED") {
        Ok(s) => vec![s.parse().expect("FREEZER_E2E_SEED is a number")],
        Err(_) => {
            let cases = std::env::var("FREEZER_E2E_CASES")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(24u64);
            (1..=cases).map(|i| 0x5EED_0000 + i).collect()
        }
    };
    let start = Instant::now();
    let handles: Vec<_> = seeds
        .iter()
        .map(|&seed| {
            (
                seed,
                std::thread::Builder::new()
                    .name(format!("seed-{seed}"))
                    .spawn(move || scenario(seed))
                    .unwrap(),
            )
        })
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .filter_map(|(seed, h)| {
            h.join()
                .err()
                .map(|e| format!("seed {seed}: {}", panic_message(&*e)))
        })
        .collect();
    eprintln!(
        "prune property: {} scenarios in {:.1} s",
        seeds.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed (rerun one with FREEZER_E2E_SEED=<seed>):\n\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n\n")
    );
}

//! Comparing trees: the differences between two snapshots one line each, assertions that a
//! restored tree matches what was backed up, and the checks for partial restores.

use crate::{is_root, snapshot, Kind, Snapshot};
use std::fs;
use std::path::Path;

/// What [`diff_snapshots`] compares besides types, content and symlink targets.
#[derive(Clone, Copy, Debug)]
pub struct Compare {
    /// Permission bits (not of symlinks, whose bits Linux fixes at 0777).
    pub modes: bool,
    /// Owner and group ids.
    pub owners: bool,
    /// Modification times, to the nanosecond.
    pub mtimes: bool,
    /// `user.*` extended attributes.
    pub xattrs: bool,
    /// Which regular files are hard links of each other.
    pub hardlinks: bool,
    /// Compare the root directory's own metadata (mode, owner, mtime, xattrs).
    pub root_meta: bool,
    /// Entries only in the actual tree are fine.
    pub allow_extra: bool,
}

impl Compare {
    /// Everything a restore must preserve; owners only when running as root.
    pub fn full() -> Compare {
        Compare {
            modes: true,
            owners: is_root(),
            mtimes: true,
            xattrs: true,
            hardlinks: true,
            root_meta: true,
            allow_extra: false,
        }
    }

    /// Types, content and symlink targets only.
    pub fn content() -> Compare {
        Compare {
            modes: false,
            owners: false,
            mtimes: false,
            xattrs: false,
            hardlinks: false,
            root_meta: false,
            allow_extra: false,
        }
    }
}

/// Printable form of a relative path.
pub fn show(rel: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(rel))
}

fn fmt_ns(ns: i128) -> String {
    format!(
        "{}.{:09}",
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000)
    )
}

/// Differences between an expected and an actual tree, one line each.
pub fn diff_snapshots(expected: &Snapshot, actual: &Snapshot, c: Compare) -> Vec<String> {
    let mut d = Vec::new();
    for (rel, e) in expected {
        let Some(a) = actual.get(rel) else {
            d.push(format!("{}: missing ({:?})", show(rel), e.kind));
            continue;
        };
        let p = show(rel);
        if e.kind != a.kind {
            d.push(format!(
                "{p}: type {:?} expected, found {:?}",
                e.kind, a.kind
            ));
            continue;
        }
        if e.sha256 != a.sha256 {
            d.push(format!(
                "{p}: content differs (size {} expected, found {})",
                e.size, a.size
            ));
        }
        if e.target != a.target {
            d.push(format!(
                "{p}: symlink target {} expected, found {}",
                show(e.target.as_deref().unwrap_or_default()),
                show(a.target.as_deref().unwrap_or_default())
            ));
        }
        if e.rdev != a.rdev {
            d.push(format!(
                "{p}: device {:#x} expected, found {:#x}",
                e.rdev, a.rdev
            ));
        }
        let is_root = rel.as_slice() == b".";
        if is_root && !c.root_meta {
            continue;
        }
        // Symlink permission bits are always 0777 on Linux and cannot be set.
        if c.modes && e.kind != Kind::Symlink && e.mode != a.mode {
            d.push(format!(
                "{p}: mode {:04o} expected, found {:04o}",
                e.mode, a.mode
            ));
        }
        if c.owners && (e.uid, e.gid) != (a.uid, a.gid) {
            d.push(format!(
                "{p}: owner {}:{} expected, found {}:{}",
                e.uid, e.gid, a.uid, a.gid
            ));
        }
        if c.mtimes && e.mtime_ns != a.mtime_ns {
            d.push(format!(
                "{p}: mtime {} expected, found {}",
                fmt_ns(e.mtime_ns),
                fmt_ns(a.mtime_ns)
            ));
        }
        if c.xattrs && e.xattrs != a.xattrs {
            d.push(format!(
                "{p}: xattrs {:?} expected, found {:?}",
                e.xattrs.keys().map(|k| show(k)).collect::<Vec<_>>(),
                a.xattrs.keys().map(|k| show(k)).collect::<Vec<_>>()
            ));
        }
        if c.hardlinks && e.link_group != a.link_group {
            d.push(format!(
                "{p}: hard-link group {} expected, found {}",
                e.link_group
                    .as_deref()
                    .map(show)
                    .unwrap_or_else(|| "none".into()),
                a.link_group
                    .as_deref()
                    .map(show)
                    .unwrap_or_else(|| "none".into())
            ));
        }
    }
    if !c.allow_extra {
        for (rel, a) in actual {
            if !expected.contains_key(rel) {
                d.push(format!("{}: unexpected {:?}", show(rel), a.kind));
            }
        }
    }
    d
}

/// Panics with every difference unless the tree at `actual` matches `expected`.
#[track_caller]
pub fn assert_tree(expected: &Snapshot, actual: &Path, c: Compare) {
    let d = diff_snapshots(expected, &snapshot(actual), c);
    assert!(
        d.is_empty(),
        "tree {} differs from what was backed up ({} differences):\n  {}",
        actual.display(),
        d.len(),
        d.iter().take(60).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

/// Compares two trees fully (see [`Compare::full`]); panics with the differences.
#[track_caller]
pub fn compare_trees(expected: &Path, actual: &Path) {
    assert_tree(&snapshot(expected), actual, Compare::full());
}

/// Regular files in `actual` whose content differs from the same path in `expected` (a partial
/// restore must not leave wrong content behind).
pub fn wrong_files(expected: &Snapshot, actual: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    if !actual.exists() {
        return bad;
    }
    for (rel, a) in snapshot(actual) {
        if a.kind != Kind::File {
            continue;
        }
        match expected.get(&rel) {
            Some(e) if e.kind == Kind::File && e.sha256 == a.sha256 => {}
            Some(e) => bad.push(format!(
                "{}: size {} (expected {} bytes, other content)",
                show(&rel),
                a.size,
                e.size
            )),
            None => bad.push(format!("{}: not in the source", show(&rel))),
        }
    }
    bad
}

/// Whether a directory is absent or empty.
pub fn absent_or_empty(p: &Path) -> bool {
    match fs::read_dir(p) {
        Ok(mut rd) => rd.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Self-tests: the comparison catches every kind of difference the e2e tests rely on.
#[cfg(test)]
mod tests {
    use crate::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    #[test]
    fn snapshot_of_identical_copy_matches_and_every_change_is_caught() {
        let tmp = TestDir::new();
        let a = tmp.path().join("a");
        let info = make_tree(&a, &TreeOpts::full());
        let b = tmp.path().join("b");
        copy_tree(&a, &b);
        let sa = snapshot(&a);
        assert!(sa.len() > 50, "the tree has many entries");
        assert!(sa.values().any(|e| e.link_group.is_some()));
        assert!(sa.values().any(|e| e.kind == Kind::Fifo));
        let d = diff_snapshots(&sa, &snapshot(&b), Compare::full());
        assert!(d.is_empty(), "cp -a copy differs: {d:?}");

        type Mutation = Box<dyn Fn(&Path)>;
        let mutations: Vec<(&str, Mutation)> = vec![
            (
                "content differs",
                Box::new(|b: &Path| {
                    let p = b.join("f10k.bin");
                    let md = fs::symlink_metadata(&p).unwrap();
                    flip_byte(&p, 5000);
                    set_mtime(&p, md.mtime(), md.mtime_nsec() as u32);
                }),
            ),
            (
                "mtime",
                Box::new(|b: &Path| {
                    let md = fs::symlink_metadata(b.join("sub/file.txt")).unwrap();
                    set_mtime(
                        &b.join("sub/file.txt"),
                        md.mtime(),
                        md.mtime_nsec() as u32 + 1,
                    );
                }),
            ),
            (
                "mtime",
                Box::new(|b: &Path| set_mtime(&b.join("rel-link"), 1_000_000_000, 5)),
            ),
            ("mtime", Box::new(|b: &Path| set_mtime(b, 1_000_000_000, 5))),
            (
                "mode",
                Box::new(|b: &Path| chmod(&b.join("secret.txt"), 0o640)),
            ),
            (
                "mode",
                Box::new(|b: &Path| chmod(&b.join("setgid-dir"), 0o755)),
            ),
            (
                "symlink target",
                Box::new(|b: &Path| {
                    fs::remove_file(b.join("rel-link")).unwrap();
                    std::os::unix::fs::symlink("sub/other", b.join("rel-link")).unwrap();
                }),
            ),
            (
                "hard-link group",
                Box::new(|b: &Path| {
                    let p = b.join("hl-c.txt");
                    let data = fs::read(&p).unwrap();
                    fs::remove_file(&p).unwrap();
                    fs::write(&p, data).unwrap();
                }),
            ),
            (
                "missing",
                Box::new(|b: &Path| fs::remove_dir(b.join("empty-dir")).unwrap()),
            ),
            (
                "unexpected",
                Box::new(|b: &Path| fs::write(b.join("extra"), b"").unwrap()),
            ),
            (
                "type",
                Box::new(|b: &Path| {
                    fs::remove_file(b.join("fifo")).unwrap();
                    fs::write(b.join("fifo"), b"").unwrap();
                }),
            ),
        ];
        for (i, (what, mutate)) in mutations.iter().enumerate() {
            let c = tmp.path().join(format!("c{i}"));
            copy_tree(&a, &c);
            mutate(&c);
            let d = diff_snapshots(&sa, &snapshot(&c), Compare::full());
            assert!(
                d.iter().any(|l| l.contains(what)),
                "mutation {i} ({what}) not caught: {d:?}"
            );
        }
        if info.xattrs {
            let c = tmp.path().join("cx");
            copy_tree(&a, &c);
            xattr::set(c.join("sub"), "user.on-a-dir", b"changed").unwrap();
            let d = diff_snapshots(&sa, &snapshot(&c), Compare::full());
            assert!(
                d.iter().any(|l| l.contains("xattrs")),
                "xattr change not caught: {d:?}"
            );
        }
        if info.owners {
            let c = tmp.path().join("co");
            copy_tree(&a, &c);
            std::os::unix::fs::chown(c.join("owned.txt"), Some(1), Some(1)).unwrap();
            let d = diff_snapshots(&sa, &snapshot(&c), Compare::full());
            assert!(
                d.iter().any(|l| l.contains("owner")),
                "owner change not caught: {d:?}"
            );
        }
    }
}

//! Integrity (ARCHITECTURE.md §2, FORMAT.md "Tags"): a wrong passphrase, a damaged, truncated, missing or
//! swapped segment, a damaged manifest or index are detected, reported with the object named, exit 12,
//! and never leave wrong content in the restore target. Also the tags themselves, recomputed here
//! exactly as FORMAT.md defines them.

use freezer_e2e::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

type HmacSha256 = Hmac<Sha256>;

/// A backup of ~2 MiB of incompressible data in many small and some larger files, cut into 64 KiB
/// segments.
struct Many {
    fx: Fixture,
    before: Snapshot,
    dir: PathBuf,
    encrypted: bool,
}

impl Many {
    fn new(name: &str, encrypted: bool) -> Many {
        let fx = Fixture::new(name);
        for d in 0..6 {
            let dir = fx.src.join(format!("dir{d}"));
            fs::create_dir(&dir).unwrap();
            for f in 0..50 {
                fs::write(
                    dir.join(format!("small-{f:03}.bin")),
                    random_bytes(d * 1000 + f, 4000 + f as usize),
                )
                .unwrap();
            }
            fs::write(
                dir.join("large.bin"),
                random_bytes(d + 77, 100_000 + d as usize),
            )
            .unwrap();
        }
        let before = snapshot(&fx.src);
        let mut args: Vec<std::ffi::OsString> = vec!["--max-segment-size".into(), "65536".into()];
        if encrypted {
            args.extend(fx.enc());
        }
        let summary = fx.backup(&args);
        let dir = backup_dir(&summary);
        let n = segment_paths(&dir).len();
        assert!(n >= 20, "expected many segments, got {n}");
        Many {
            fx,
            before,
            dir,
            encrypted,
        }
    }

    fn seg(&self, k: usize) -> PathBuf {
        self.dir.join("data").join(format!("{k:08}"))
    }

    fn restore_args(&self) -> Vec<std::ffi::OsString> {
        if self.encrypted {
            self.fx.enc()
        } else {
            Vec::new()
        }
    }

    /// Restores into a fresh target; asserts exit 12, that stderr names one of `names`, and that no
    /// file in the target has wrong content.
    #[track_caller]
    fn assert_detected(&self, names: &[&str]) {
        let target = self.fx.path("restored");
        let out = self.fx.try_restore(&target, &self.restore_args());
        out.assert_no_panic();
        out.assert_code(12);
        assert!(
            names.iter().any(|n| out.stderr.contains(n)),
            "stderr should name the damaged object (one of {names:?}):\n{out}"
        );
        let bad = wrong_files(&self.before, &target);
        assert!(
            bad.is_empty(),
            "files with wrong content were left in the target:\n  {}\n{out}",
            bad.join("\n  ")
        );
        make_writable(&target);
        fs::remove_dir_all(&target).ok();
    }
}

#[test]
fn intact_many_segment_backup_restores() {
    for enc in [false, true] {
        let m = Many::new("intact", enc);
        let target = m.fx.path("restored");
        m.fx.restore(&target, &m.restore_args());
        assert_tree(&m.before, &target, Compare::full());
    }
}

#[test]
fn wrong_passphrase_is_refused_before_anything_is_written() {
    let fx = Fixture::new("wrongpass");
    make_tree(&fx.src, &TreeOpts::default());
    fx.backup(&fx.enc());
    let wrong = fx.path("wrong-pass");
    fs::write(&wrong, "not the passphrase\n").unwrap();
    let wrong_args = ["--encrypt-pass-file".into(), wrong.clone().into_os_string()];

    let target = fx.path("restored");
    let out = fx.try_restore(&target, &wrong_args);
    out.assert_no_panic().assert_code(12);
    assert!(
        absent_or_empty(&target),
        "nothing written for a wrong passphrase:\n{out}"
    );
    assert!(
        !out.stderr.contains("not the passphrase") && !out.stderr.contains(PASSPHRASE),
        "passphrase leaked:\n{out}"
    );

    // Same into an existing empty directory (and with --overwrite).
    fs::create_dir(&target).unwrap();
    let mut args = wrong_args.to_vec();
    args.push("--overwrite".into());
    fx.try_restore(&target, &args).assert_code(12);
    assert!(
        absent_or_empty(&target),
        "nothing written for a wrong passphrase"
    );
}

#[test]
fn encrypted_backup_without_passphrase_is_refused() {
    let fx = Fixture::new("nopass");
    fs::write(fx.src.join("a.txt"), b"secret\n").unwrap();
    fx.backup(&fx.enc());
    let target = fx.path("restored");
    let out = fx.try_restore(&target, &[] as &[&str]);
    out.assert_no_panic();
    assert_ne!(out.code(), 0, "restore without the key must fail:\n{out}");
    assert!(
        absent_or_empty(&target),
        "nothing written without the key:\n{out}"
    );
}

#[test]
fn empty_passphrase_is_refused() {
    let fx = Fixture::new("emptypass");
    fs::write(fx.src.join("a.txt"), b"a\n").unwrap();
    let empty = fx.path("empty-pass");
    fs::write(&empty, "\n").unwrap();
    let out = fx.try_backup(&["--encrypt-pass-file".into(), empty.into_os_string()]);
    out.assert_no_panic();
    assert_ne!(
        out.code(),
        0,
        "an empty passphrase is refused (FORMAT.md):\n{out}"
    );
    assert!(
        find_manifests(&fx.container).is_empty(),
        "no backup written with an empty passphrase"
    );
}

#[test]
fn flipped_byte_in_segment_3_is_detected_encrypted() {
    let m = Many::new("flip-enc", true);
    let len = fs::metadata(m.seg(3)).unwrap().len();
    flip_byte(&m.seg(3), len / 2);
    m.assert_detected(&["00000003", "segment 3"]);
}

#[test]
fn flipped_byte_in_segment_3_is_detected_unencrypted() {
    let m = Many::new("flip-plain", false);
    let len = fs::metadata(m.seg(3)).unwrap().len();
    flip_byte(&m.seg(3), len / 2);
    m.assert_detected(&["00000003", "segment 3"]);
}

#[test]
fn flipped_byte_in_last_segment_is_detected() {
    for enc in [false, true] {
        let m = Many::new("flip-last", enc);
        let n = segment_paths(&m.dir).len();
        let last = m.seg(n - 1);
        let len = fs::metadata(&last).unwrap().len();
        flip_byte(&last, len - 1);
        let name = format!("{:08}", n - 1);
        let name2 = format!("segment {}", n - 1);
        m.assert_detected(&[&name, &name2]);
    }
}

#[test]
fn truncated_segment_is_detected() {
    for enc in [false, true] {
        let m = Many::new("trunc", enc);
        let f = fs::OpenOptions::new().write(true).open(m.seg(2)).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - 100).unwrap();
        m.assert_detected(&["00000002", "segment 2"]);
    }
}

#[test]
fn missing_segment_is_detected() {
    for enc in [false, true] {
        let m = Many::new("missing-seg", enc);
        fs::remove_file(m.seg(5)).unwrap();
        m.assert_detected(&["00000005", "segment 5"]);
    }
}

#[test]
fn swapped_segments_are_detected() {
    // Unencrypted: the files are swapped, the manifest is left alone.
    let m = Many::new("swap-plain", false);
    swap_files(&m.seg(4), &m.seg(5));
    m.assert_detected(&["00000004", "segment 4"]);
}

/// Encrypted: segments swapped together with their manifest entries, and the manifest re-tagged with
/// the right key, so that only the position bound into each segment's tag can tell.
#[test]
fn swapped_segments_are_detected_by_position_even_with_valid_manifest() {
    let m = Many::new("swap-enc", true);
    swap_files(&m.seg(4), &m.seg(5));
    let mut man = read_manifest(&m.dir);
    man["segments"].as_array_mut().unwrap().swap(4, 5);
    let mac_key = derive_mac_key(&man);
    let tag = hmac(
        &mac_key,
        &[b"freezer-manifest-v1", manifest_tag_input(&man).as_bytes()],
    );
    man["manifest_tag"] = Value::String(hex::encode(tag));
    write_manifest(&m.dir, &man);
    m.assert_detected(&["00000004", "segment 4"]);
}

fn swap_files(a: &Path, b: &Path) {
    let da = fs::read(a).unwrap();
    let db = fs::read(b).unwrap();
    fs::write(a, db).unwrap();
    fs::write(b, da).unwrap();
}

fn derive_mac_key(man: &Value) -> Vec<u8> {
    let enc = &man["encryption"];
    let salt = hex::decode(enc["salt"].as_str().unwrap()).unwrap();
    let mut okm = [0u8; 80];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        PASSPHRASE.as_bytes(),
        &salt,
        enc["iterations"].as_u64().unwrap() as u32,
        &mut okm,
    );
    okm[48..80].to_vec()
}

#[test]
fn damaged_manifest_value_is_detected() {
    for enc in [false, true] {
        let m = Many::new("bad-manifest", enc);
        let mut man = read_manifest(&m.dir);
        let files = man["totals"]["files"].as_u64().unwrap();
        man["totals"]["files"] = Value::from(files + 1);
        write_manifest(&m.dir, &man);
        m.assert_detected(&["manifest"]);
    }
}

#[test]
fn damaged_index_is_detected() {
    for enc in [false, true] {
        let m = Many::new("bad-index", enc);
        let p = m.dir.join("index");
        let len = fs::metadata(&p).unwrap().len();
        flip_byte(&p, len / 2);
        m.assert_detected(&["index"]);
    }
}

#[test]
fn missing_manifest_means_the_backup_does_not_exist() {
    let m = Many::new("no-manifest", true);
    fs::remove_file(m.dir.join("manifest.json")).unwrap();
    assert!(
        m.fx.list().is_empty(),
        "a backup without manifest is not listed"
    );
    let target = m.fx.path("restored");
    let out = m.fx.try_restore(&target, &m.restore_args());
    out.assert_no_panic().assert_code(10);
    assert!(absent_or_empty(&target));
}

#[test]
fn restore_into_non_empty_dir_requires_overwrite() {
    let fx = Fixture::new("nonempty");
    make_tree(&fx.src, &TreeOpts::default());
    let before = snapshot(&fx.src);
    fx.backup(&[] as &[&str]);
    let target = fx.path("restored");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep.txt"), b"was here before\n").unwrap();
    fs::write(
        target.join("one.txt"),
        b"old content, longer than the backed-up one\n",
    )
    .unwrap();
    let existing = fingerprint(&target);

    let out = fx.try_restore(&target, &[] as &[&str]);
    out.assert_no_panic().assert_code(1);
    assert_eq!(
        fingerprint(&target),
        existing,
        "a refused restore changed the target:\n{out}"
    );

    fx.restore(&target, &["--overwrite"]);
    let c = Compare {
        allow_extra: true,
        root_meta: false,
        ..Compare::full()
    };
    assert_tree(&before, &target, c);
    assert_eq!(
        fs::read(target.join("one.txt")).unwrap(),
        b"x",
        "--overwrite replaced the file's content"
    );
    assert_eq!(
        fs::read(target.join("keep.txt")).unwrap(),
        b"was here before\n"
    );
}

/// Recomputes every tag of an unencrypted backup as FORMAT.md defines it.
#[test]
fn unencrypted_tags_follow_format_md() {
    let m = Many::new("tags-plain", false);
    let man = read_manifest(&m.dir);
    assert_eq!(man["format_version"], 1);
    assert_eq!(
        man["manifest_tag"].as_str(),
        Some(sha256_hex(manifest_tag_input(&man).as_bytes()).as_str()),
        "manifest_tag = SHA-256(canonical JSON)"
    );
    for (k, p) in segment_paths(&m.dir).iter().enumerate() {
        assert_eq!(
            man["segments"][k]["tag"].as_str(),
            Some(sha256_hex(&fs::read(p).unwrap()).as_str()),
            "segment {k} tag"
        );
    }
    let index = fs::read(m.dir.join("index")).unwrap();
    assert_eq!(
        man["index"]["tag"].as_str(),
        Some(sha256_hex(&index).as_str()),
        "index tag"
    );
    assert_eq!(
        man["index"]["size"].as_u64(),
        Some(index.len() as u64),
        "index size"
    );
    let seg_total: u64 = segment_paths(&m.dir)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(
        man["totals"]["bytes_stored"].as_u64(),
        Some(seg_total + index.len() as u64),
        "bytes_stored counts segments and index"
    );
    let (header, entries) = read_unencrypted_index(&m.dir);
    assert_eq!(header["format_version"], 1);
    assert_eq!(header["backup_id"], man["backup_id"]);
    assert_eq!(header["entries"].as_u64(), Some(entries.len() as u64));
    assert_eq!(entries.len(), m.before.len(), "the index lists every entry");
    assert_eq!(entries[0]["path"], ".", "root first");
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Recomputes every tag of an encrypted backup (PBKDF2, HMAC with segment position and CFB chain),
/// and decrypts the index with the derived index key and IV.
#[test]
fn encrypted_tags_follow_format_md() {
    let m = Many::new("tags-enc", true);
    let man = read_manifest(&m.dir);
    let enc = &man["encryption"];
    assert_eq!(enc["cipher"], "aes-256-cfb");
    assert_eq!(enc["kdf"], "pbkdf2-hmac-sha256");
    let salt = hex::decode(enc["salt"].as_str().unwrap()).unwrap();
    assert_eq!(salt.len(), 8);
    let segs: Vec<Vec<u8>> = segment_paths(&m.dir)
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    assert_eq!(&segs[0][..8], b"Salted__");
    assert_eq!(
        segs[0][8..16],
        salt[..],
        "segment 0 carries the manifest's salt"
    );

    let mac_key = &derive_mac_key(&man)[..];

    let canonical = manifest_tag_input(&man);
    assert_eq!(
        man["manifest_tag"].as_str(),
        Some(
            hex::encode(hmac(
                mac_key,
                &[b"freezer-manifest-v1", canonical.as_bytes()]
            ))
            .as_str()
        ),
        "manifest_tag = HMAC(mac_key, \"freezer-manifest-v1\" || canonical)"
    );

    let all: Vec<u8> = segs.concat();
    let ct = &all[16..];
    let mut start = 0usize; // offset in `all`
    for (k, seg) in segs.iter().enumerate() {
        let o = if k == 0 { 0 } else { start - 16 };
        let j = o / 16;
        let chain = &ct[(16 * j).saturating_sub(16)..o];
        let tag = hmac(
            mac_key,
            &[
                b"freezer-segment-v1",
                &(k as u64).to_be_bytes(),
                &(chain.len() as u64).to_be_bytes(),
                chain,
                seg,
            ],
        );
        assert_eq!(
            man["segments"][k]["tag"].as_str(),
            Some(hex::encode(tag).as_str()),
            "segment {k} tag"
        );
        start += seg.len();
    }

    let index = fs::read(m.dir.join("index")).unwrap();
    assert_eq!(
        man["index"]["tag"].as_str(),
        Some(hex::encode(hmac(mac_key, &[b"freezer-index-v1", &index])).as_str()),
        "index tag"
    );
    let index_key = hmac(mac_key, &[b"freezer-index-key-v1"]);
    let index_iv = &hmac(mac_key, &[b"freezer-index-iv-v1"])[..16];
    let mut child = Command::new("openssl")
        .args([
            "enc",
            "-d",
            "-aes-256-cfb",
            "-nosalt",
            "-K",
            &hex::encode(&index_key),
            "-iv",
            &hex::encode(index_iv),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&index).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    let plain = zstd::decode_all(&out.stdout[..]).expect("the decrypted index is zstd");
    let header: Value = serde_json::from_slice(plain.split(|&b| b == b'\n').next().unwrap())
        .expect("index header JSON");
    assert_eq!(
        header["backup_id"], man["backup_id"],
        "index header: {header}"
    );
    assert_eq!(
        header["entries"].as_u64(),
        Some(m.before.len() as u64),
        "index header: {header}"
    );
}

/// `list` needs no key: the manifest is plain JSON.
#[test]
fn list_of_encrypted_backup_needs_no_key() {
    let fx = Fixture::new("list-enc");
    fs::write(fx.src.join("a.txt"), b"a\n").unwrap();
    let s = fx.backup(&fx.enc());
    let list = fx.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["backup_id"], s["backup_id"]);
    assert_eq!(list[0]["encrypted"], true, "{}", list[0]);
}

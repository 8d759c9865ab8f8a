//! The escape hatch of ARCHITECTURE.md §2: a backup can be read back with standard tools only,
//! `cat data/* | openssl enc -d ... | <codec> -d | tar -x`, for every codec, with many segments, and
//! level by level for an incremental chain.

use freezer_e2e::*;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn decompressor(codec: &str) -> Option<Command> {
    let prog = match codec {
        "zstd" => "zstd",
        "gzip" => "gzip",
        "bzip2" => "bzip2",
        "xz" => "xz",
        "none" => return None,
        other => panic!("unknown codec {other}"),
    };
    let mut c = Command::new(prog);
    c.args(["-d", "-c"]);
    Some(c)
}

/// Runs `input | stages[0] | stages[1] | ...`; panics with every stage's stderr unless all succeed.
/// Returns the last stage's stdout.
fn pipeline(input: Vec<u8>, mut stages: Vec<Command>) -> Vec<u8> {
    let names: Vec<String> = stages
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c.get_program().to_string_lossy(),
                c.get_args()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
        .collect();
    let mut children: Vec<Child> = Vec::new();
    for (i, cmd) in stages.iter_mut().enumerate() {
        let stdin = if i == 0 {
            Stdio::piped()
        } else {
            Stdio::from(children[i - 1].stdout.take().unwrap())
        };
        children.push(
            cmd.stdin(stdin)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", names[i])),
        );
    }
    let mut first_in = children[0].stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = first_in.write_all(&input);
    });
    let mut last_out = children.last_mut().unwrap().stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        last_out.read_to_end(&mut v).unwrap();
        v
    });
    let errs: Vec<_> = children
        .iter_mut()
        .map(|c| {
            let mut e = c.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = e.read_to_string(&mut s);
                s
            })
        })
        .collect();
    let statuses: Vec<_> = children.iter_mut().map(|c| c.wait().unwrap()).collect();
    writer.join().unwrap();
    let out = reader.join().unwrap();
    let errs: Vec<String> = errs.into_iter().map(|t| t.join().unwrap()).collect();
    if statuses.iter().any(|s| !s.success()) {
        let mut msg = String::from("pipeline failed:\n");
        for ((n, s), e) in names.iter().zip(&statuses).zip(&errs) {
            msg.push_str(&format!(
                "  {n}: {s}\n    {}\n",
                e.trim().replace('\n', "\n    ")
            ));
        }
        panic!("{msg}");
    }
    out
}

/// `cat data/* | [openssl enc -d ...] | [<codec> -d] | tar -x -C out`.
fn extract_with_standard_tools(backup: &Path, pass: Option<&Path>, out: &Path) {
    let m = read_manifest(backup);
    let codec = m["compression"]["codec"]
        .as_str()
        .expect("compression.codec")
        .to_string();
    let mut stages = Vec::new();
    if let Some(pass) = pass {
        let iter = m["encryption"]["iterations"]
            .as_u64()
            .expect("encryption.iterations");
        let mut c = Command::new("openssl");
        c.args([
            "enc",
            "-d",
            "-aes-256-cfb",
            "-pbkdf2",
            "-md",
            "sha256",
            "-iter",
            &iter.to_string(),
            "-pass",
        ])
        .arg(format!("file:{}", pass.display()));
        stages.push(c);
    }
    stages.extend(decompressor(&codec));
    fs::create_dir_all(out).unwrap();
    let mut tar = Command::new("tar");
    tar.arg("-x").arg("-C").arg(out);
    stages.push(tar);
    pipeline(concat_segments(backup), stages);
}

/// The standard tools the escape hatch is about; a missing one fails the test (scripts/test.sh
/// installs them) rather than letting it pass without checking anything.
fn tools_present() -> bool {
    for t in ["openssl", "tar", "zstd", "gzip", "bzip2", "xz"] {
        let ok = Command::new(t)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            ok,
            "`{t}` is not installed: the escape-hatch tests need it (scripts/test.sh installs it)"
        );
    }
    true
}

fn escape_hatch_full(codec: &str, encrypted: bool, segment_size: Option<u64>) {
    if !tools_present() {
        return;
    }
    let fx = Fixture::new(&format!("hatch-{codec}"));
    make_tree(
        &fx.src,
        &TreeOpts {
            special: true,
            ..TreeOpts::default()
        },
    );
    let before = snapshot(&fx.src);
    let mut args: Vec<std::ffi::OsString> = vec!["--compression".into(), codec.into()];
    if encrypted {
        args.extend(fx.enc());
    }
    if let Some(s) = segment_size {
        args.extend(["--max-segment-size".into(), s.to_string().into()]);
    }
    let summary = fx.backup(&args);
    let dir = backup_dir(&summary);
    let m = read_manifest(&dir);
    let segs = segment_paths(&dir);
    let listed = m["segments"].as_array().expect("manifest segments");
    assert_eq!(
        segs.len(),
        listed.len(),
        "data/ holds exactly the manifest's segments"
    );
    for (k, (p, s)) in segs.iter().zip(listed).enumerate() {
        assert_eq!(
            p.file_name().unwrap().to_string_lossy(),
            format!("{k:08}"),
            "segment names"
        );
        assert_eq!(
            s["size"].as_u64(),
            Some(fs::metadata(p).unwrap().len()),
            "segment {k} size in manifest"
        );
        if let Some(max) = segment_size {
            assert!(
                s["raw_size"].as_u64().unwrap() <= max,
                "segment {k} raw_size over --max-segment-size: {s}"
            );
        }
    }
    if segment_size.is_some() {
        assert!(
            segs.len() >= 10,
            "a small --max-segment-size gives many segments, got {}",
            segs.len()
        );
    }
    let out = fx.path("extracted");
    extract_with_standard_tools(&dir, encrypted.then_some(fx.pass.as_path()), &out);
    let c = Compare {
        hardlinks: true,
        ..Compare::content()
    };
    assert_tree(&before, &out, c);
}

#[test]
fn escape_hatch_zstd_encrypted() {
    escape_hatch_full("zstd", true, None);
}

#[test]
fn escape_hatch_gzip_encrypted() {
    escape_hatch_full("gzip", true, None);
}

#[test]
fn escape_hatch_bzip2_encrypted() {
    escape_hatch_full("bzip2", true, None);
}

#[test]
fn escape_hatch_xz_encrypted() {
    escape_hatch_full("xz", true, None);
}

#[test]
fn escape_hatch_none_encrypted() {
    escape_hatch_full("none", true, None);
}

#[test]
fn escape_hatch_zstd_encrypted_many_segments() {
    escape_hatch_full("zstd", true, Some(65536));
}

#[test]
fn escape_hatch_gzip_encrypted_many_segments() {
    escape_hatch_full("gzip", true, Some(65536));
}

#[test]
fn escape_hatch_xz_unencrypted_many_segments() {
    escape_hatch_full("xz", false, Some(65536));
}

/// Each unencrypted segment is a complete compressed stream of its own (FORMAT.md), starting with the
/// codec's magic, and decompresses to `raw_size` bytes.
#[test]
fn unencrypted_segments_decompress_independently() {
    if !tools_present() {
        return;
    }
    for codec in CODECS {
        let fx = Fixture::new(&format!("indep-{codec}"));
        make_tree(&fx.src, &TreeOpts::default());
        let before = snapshot(&fx.src);
        let summary = fx.backup(&["--compression", codec, "--max-segment-size", "65536"]);
        let dir = backup_dir(&summary);
        let m = read_manifest(&dir);
        let mut stream = Vec::new();
        for (k, p) in segment_paths(&dir).iter().enumerate() {
            let seg = fs::read(p).unwrap();
            let magic: &[u8] = match codec {
                "zstd" => &[0x28, 0xb5, 0x2f, 0xfd],
                "gzip" => &[0x1f, 0x8b],
                "bzip2" => b"BZh",
                "xz" => &[0xfd, b'7', b'z', b'X', b'Z', 0],
                _ => b"",
            };
            assert!(
                seg.starts_with(magic),
                "{codec} segment {k} starts with the codec's magic"
            );
            let raw = match decompressor(codec) {
                Some(c) => pipeline(seg, vec![c]),
                None => seg,
            };
            assert_eq!(
                m["segments"][k]["raw_size"].as_u64(),
                Some(raw.len() as u64),
                "{codec} segment {k}: raw_size is the decompressed size"
            );
            stream.extend(raw);
        }
        let out = fx.path("extracted");
        fs::create_dir(&out).unwrap();
        let mut tar = Command::new("tar");
        tar.arg("-x").arg("-C").arg(&out);
        pipeline(stream, vec![tar]);
        assert_tree(
            &before,
            &out,
            Compare {
                hardlinks: true,
                ..Compare::content()
            },
        );
    }
}

#[test]
fn escape_hatch_incremental_chain_in_order_with_plain_tar() {
    if !tools_present() {
        return;
    }
    for codec in ["zstd", "bzip2"] {
        let fx = Fixture::new(&format!("hatch-chain-{codec}"));
        let src = &fx.src;
        fs::create_dir_all(src.join("dir")).unwrap();
        fs::write(src.join("unchanged.txt"), b"unchanged\n").unwrap();
        fs::write(src.join("modified.txt"), b"version 1\n").unwrap();
        fs::write(src.join("dir/grows.bin"), random_bytes(1, 50_000)).unwrap();
        fs::write(src.join("deleted.txt"), b"deleted later\n").unwrap();
        std::os::unix::fs::symlink("unchanged.txt", src.join("link")).unwrap();
        let mut args = vec![
            "--compression".into(),
            codec.into(),
            "--max-level".into(),
            "3".into(),
        ];
        args.extend(fx.enc());
        let s0 = fx.backup(&args);

        fs::write(src.join("modified.txt"), b"version 2, longer\n").unwrap();
        fs::write(src.join("dir/grows.bin"), random_bytes(2, 80_000)).unwrap();
        fs::write(src.join("added.txt"), b"added in level 1\n").unwrap();
        fs::remove_file(src.join("deleted.txt")).unwrap();
        fs::remove_file(src.join("link")).unwrap();
        std::os::unix::fs::symlink("added.txt", src.join("link")).unwrap();
        let s1 = fx.backup(&args);
        assert_eq!(s1["level"], 1, "{s1}");

        fs::write(src.join("modified.txt"), b"version 3\n").unwrap();
        fs::create_dir(src.join("dir2")).unwrap();
        fs::write(src.join("dir2/level2.txt"), b"level 2\n").unwrap();
        let s2 = fx.backup(&args);
        assert_eq!(s2["level"], 2, "{s2}");

        let out = fx.path("extracted");
        for s in [&s0, &s1, &s2] {
            extract_with_standard_tools(&backup_dir(s), Some(&fx.pass), &out);
        }
        // Plain tar does not apply deletions: everything that exists now is right, deleted.txt may remain.
        let mut c = Compare::content();
        c.allow_extra = true;
        assert_tree(&snapshot(src), &out, c);
        // And the level-1 archive alone holds the changed file but not the unchanged one.
        let only1 = fx.path("level1-only");
        extract_with_standard_tools(&backup_dir(&s1), Some(&fx.pass), &only1);
        assert_eq!(
            fs::read(only1.join("modified.txt")).unwrap(),
            b"version 2, longer\n"
        );
        assert!(
            !only1.join("unchanged.txt").exists(),
            "level 1 archive does not repeat unchanged files"
        );
    }
}

#[test]
fn escape_hatch_with_default_kdf_iterations() {
    if !tools_present() {
        return;
    }
    let fx = Fixture::new("default-kdf");
    fs::write(fx.src.join("a.txt"), b"default kdf\n").unwrap();
    let mut cmd = worker();
    cmd.env_remove("FREEZER_KDF_ITERATIONS");
    cmd.args(fx.backup_args(&fx.src, &fx.enc()));
    let out = run_command(&mut cmd, DEFAULT_TIMEOUT);
    out.assert_code(0);
    let dir = backup_dir(&out.json());
    let m = read_manifest(&dir);
    let iter = m["encryption"]["iterations"].as_u64().expect("iterations");
    assert!(
        iter >= 100_000,
        "the default PBKDF2 iteration count is too low for a passphrase: {iter}"
    );
    assert_eq!(m["encryption"]["kdf"], "pbkdf2-hmac-sha256", "{m}");
    let x = fx.path("extracted");
    extract_with_standard_tools(&dir, Some(&fx.pass), &x);
    assert_eq!(fs::read(x.join("a.txt")).unwrap(), b"default kdf\n");
    // And Freezer itself restores it (reading the count from the manifest, not the environment).
    let target = fx.path("restored");
    fx.restore(&target, &fx.enc());
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"default kdf\n");
}

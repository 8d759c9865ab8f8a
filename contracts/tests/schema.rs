//! The committed JSON Schema (`contracts/schema/`) is the one the types generate, and it describes
//! a contract without secrets whose spec options are the CLI's.

use std::collections::BTreeSet;
use std::path::Path;

use freezer_contracts::schema::{event_schema, schema_files, task_schema};
use serde_json::Value;

const REGENERATE: &str = "regenerate with `cargo run -p freezer-contracts --example gen-schema` \
                          (or run this test with FREEZER_BLESS=1) and commit contracts/schema/";

#[test]
fn committed_schema_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let bless = std::env::var_os("FREEZER_BLESS").is_some_and(|v| v == "1");
    for (name, generated) in schema_files() {
        let path = dir.join(name);
        if bless {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; {REGENERATE}", path.display()));
        assert!(
            committed == generated,
            "{} differs from the schema the types generate; {REGENERATE}",
            path.display()
        );
    }
}

/// Every property name anywhere in a schema, with the definition (or `root`) it belongs to.
fn property_names(schema: &Value) -> BTreeSet<(String, String)> {
    fn walk(v: &Value, owner: &str, out: &mut BTreeSet<(String, String)>) {
        match v {
            Value::Object(map) => {
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("properties", Value::Object(props)) => {
                            for (name, sub) in props {
                                out.insert((owner.to_string(), name.clone()));
                                walk(sub, owner, out);
                            }
                        }
                        ("$defs", Value::Object(defs)) => {
                            for (def, sub) in defs {
                                walk(sub, def, out);
                            }
                        }
                        _ => walk(child, owner, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, owner, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(schema, "root", &mut out);
    out
}

#[test]
fn no_message_field_is_named_like_a_secret() {
    const SECRET_WORDS: [&str; 6] = ["pass", "secret", "token", "credential", "private", "auth"];
    for schema in [task_schema(), event_schema()] {
        let names = property_names(&schema);
        assert!(names.len() > 10, "walked the schema");
        for (owner, name) in names {
            let lower = name.to_lowercase();
            assert!(
                !SECRET_WORDS.iter().any(|w| lower.contains(w)),
                "{owner}.{name} looks like a secret: tasks carry names of secrets, never secrets"
            );
        }
    }
}

/// Options the specs have that the standalone CLI does not (yet): names of things in the worker's
/// configuration, fleet-only tuning, and the noop task's test hook.
const NOT_CLI_OPTIONS: [&str; 6] = [
    "encrypt_key",
    "hooks",
    "upload_limit",
    "download_limit",
    "queue_size",
    "sleep_ms",
];

/// The worker CLI's long options, as the snake_case names of its clap fields.
fn cli_options() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../worker/src/cli.rs");
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; this test checks spec fields against the worker's CLI options: point it at \
             the file that defines them",
            path.display()
        )
    });
    source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

#[test]
fn spec_fields_are_the_cli_option_names() {
    let cli = cli_options();
    assert!(
        cli.contains("path_to_backup") && cli.contains("keep_daily"),
        "{cli:?}"
    );
    let schema = task_schema();
    let mut checked = 0;
    for (owner, name) in property_names(&schema) {
        if !owner.ends_with("Spec") {
            continue;
        }
        checked += 1;
        assert!(
            cli.contains(&name) || NOT_CLI_OPTIONS.contains(&name.as_str()),
            "{owner}.{name} is neither a freezer-worker option nor a documented fleet-only option"
        );
    }
    assert!(checked > 50, "checked {checked} spec fields");
}

#[test]
fn specs_refuse_unknown_fields_and_the_envelope_allows_them() {
    let schema = task_schema();
    for def in [
        "BackupSpec",
        "RestoreSpec",
        "PruneSpec",
        "VerifySpec",
        "ListSpec",
        "NoopSpec",
    ] {
        assert_eq!(
            schema["$defs"][def]["additionalProperties"],
            Value::Bool(false),
            "{def}"
        );
    }
    assert!(schema.get("additionalProperties").is_none());
    assert!(schema["$defs"]["Session"]
        .get("additionalProperties")
        .is_none());
    assert!(event_schema().get("additionalProperties").is_none());
    assert_eq!(schema["properties"]["schema_version"]["const"], 1);
}

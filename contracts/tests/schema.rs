//! The committed JSON Schema (`contracts/schema/`) is the one the types generate, and it describes
//! a contract without secrets whose spec options are the CLI's.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use freezer_contracts::schema::{
    event_schema, schema_files, task_schema, EVENT_SCHEMA_FILE, TASK_SCHEMA_FILE,
};
use freezer_contracts::*;
use serde_json::{json, Value};

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

/// Spec fields that are no option of `freezer-worker`: hooks (names of commands in the worker's
/// configuration, which only the daemon runs) and the noop task's test hook.
const NOT_CLI_OPTIONS: [&str; 2] = ["hooks", "sleep_ms"];

/// The long options each spec type gives `freezer-worker`'s subcommand of its kind (the `clap`
/// feature), as snake_case names, keyed by the spec's name in the schema.
fn cli_options() -> Vec<(&'static str, BTreeSet<String>)> {
    use clap::Args;
    let longs = |cmd: clap::Command| -> BTreeSet<String> {
        cmd.get_arguments()
            .filter_map(|a| a.get_long())
            .map(|l| l.replace('-', "_"))
            .collect()
    };
    vec![
        (
            "BackupSpec",
            longs(BackupSpec::augment_args(clap::Command::new("backup"))),
        ),
        (
            "RestoreSpec",
            longs(RestoreSpec::augment_args(clap::Command::new("restore"))),
        ),
        (
            "PruneSpec",
            longs(PruneSpec::augment_args(clap::Command::new("prune"))),
        ),
        (
            "VerifySpec",
            longs(VerifySpec::augment_args(clap::Command::new("verify"))),
        ),
        (
            "ListSpec",
            longs(ListSpec::augment_args(clap::Command::new("list"))),
        ),
        ("NoopSpec", BTreeSet::new()),
    ]
}

#[test]
fn spec_fields_are_the_cli_option_names() {
    let cli = cli_options();
    let schema = task_schema();
    let mut checked = 0;
    for (owner, name) in property_names(&schema) {
        let Some((_, options)) = cli.iter().find(|(spec, _)| *spec == owner) else {
            continue;
        };
        checked += 1;
        assert!(
            options.contains(&name) || NOT_CLI_OPTIONS.contains(&name.as_str()),
            "{owner}.{name} is neither a freezer-worker option nor a documented fleet-only option"
        );
    }
    assert!(checked > 50, "checked {checked} spec fields");
    // And the other way: every option a spec gives the CLI is a field of the task.
    let fields = property_names(&schema);
    for (owner, options) in &cli {
        for option in options {
            assert!(
                fields.contains(&(owner.to_string(), option.clone())),
                "--{option} of {owner} is no field of the task"
            );
        }
    }
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

/// The keywords [`check`] understands; a schema using another one fails the tests instead of being
/// half-checked.
const KNOWN_KEYWORDS: [&str; 20] = [
    "$schema",
    "$defs",
    "$ref",
    "title",
    "description",
    "default",
    "type",
    "const",
    "oneOf",
    "anyOf",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "examples",
];

/// Fails on any keyword outside [`KNOWN_KEYWORDS`].
fn assert_known_keywords(schema: &Value) {
    let Value::Object(map) = schema else { return };
    for (key, child) in map {
        assert!(
            KNOWN_KEYWORDS.contains(&key.as_str()),
            "schema keyword {key} is not checked by these tests"
        );
        match key.as_str() {
            "properties" | "$defs" => child
                .as_object()
                .unwrap()
                .values()
                .for_each(assert_known_keywords),
            "oneOf" | "anyOf" => child
                .as_array()
                .unwrap()
                .iter()
                .for_each(assert_known_keywords),
            "items" => assert_known_keywords(child),
            _ => {}
        }
    }
}

/// A small JSON Schema validator for the keywords this crate's schemas use; returns the first
/// violation, with the instance path.
fn check(root: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let fail = |what: String| Err(format!("{at}: {what}"));
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").expect("local refs only");
        check(root, &root["$defs"][name], v, at)?;
    }
    if let Some(ty) = schema.get("type") {
        let types: Vec<&str> = match ty {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
            _ => panic!("type {ty}"),
        };
        let is = |t: &str| match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => panic!("type {t}"),
        };
        if !types.iter().any(|t| is(t)) {
            return fail(format!("{v} is not of type {ty}"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            return fail(format!("{v} is not {c}"));
        }
    }
    if let (Some(p), Some(s)) = (schema.get("pattern").and_then(Value::as_str), v.as_str()) {
        if !regex_lite::Regex::new(p).unwrap().is_match(s) {
            return fail(format!("{s:?} does not match {p}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            return fail(format!("{n} is below the minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            return fail(format!("{n} is above the maximum"));
        }
    }
    if let Some(items) = v.as_array() {
        if schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| (items.len() as u64) < m)
        {
            return fail("too few items".into());
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(root, item_schema, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !obj.contains_key(name.as_str().unwrap()) {
                return fail(format!("missing {name}"));
            }
        }
        for (key, value) in obj {
            match props.and_then(|p| p.get(key)) {
                Some(s) => check(root, s, value, &format!("{at}.{key}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return fail(format!("unknown property {key}"));
                }
                None => {}
            }
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        if !any.iter().any(|s| check(root, s, v, at).is_ok()) {
            return fail(format!("{v} matches none of anyOf"));
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let errors: Vec<String> = one
            .iter()
            .filter_map(|s| check(root, s, v, at).err())
            .collect();
        if errors.len() + 1 != one.len() {
            return fail(format!(
                "matches {} of oneOf, not exactly one ({errors:?})",
                one.len() - errors.len()
            ));
        }
    }
    Ok(())
}

fn committed(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sample_events() -> Vec<Event> {
    let at = t("2026-11-25T13:52:58.25Z");
    let mut events = Vec::new();
    for spec in every_spec() {
        let task = task(spec);
        for status in statuses() {
            events.push(Event::for_task(&task, "web1", at, status));
        }
    }
    let err = TaskEnvelope::from_json(b"garbage").unwrap_err();
    events.push(Event::rejected(b"garbage", Some("junk"), "web1", at, &err));
    events
}

#[test]
fn committed_schema_accepts_every_message_the_types_write() {
    let (task_schema, event_schema) = (committed(TASK_SCHEMA_FILE), committed(EVENT_SCHEMA_FILE));
    assert_known_keywords(&task_schema);
    assert_known_keywords(&event_schema);
    for spec in every_spec() {
        let mut task = task(spec);
        let v = serde_json::to_value(&task).unwrap();
        check(&task_schema, &task_schema, &v, "task").unwrap();
        task.session = None;
        task.not_before = None;
        task.expires_at = None;
        let v = serde_json::to_value(&task).unwrap();
        check(&task_schema, &task_schema, &v, "task").unwrap();
    }
    let noop = TaskEnvelope::new(id(ID), "j", "r", TaskSpec::Noop(NoopSpec::default()));
    check(
        &task_schema,
        &task_schema,
        &serde_json::to_value(&noop).unwrap(),
        "noop",
    )
    .unwrap();
    for event in sample_events() {
        let v = serde_json::to_value(&event).unwrap();
        check(&event_schema, &event_schema, &v, "event").unwrap();
    }
}

#[test]
fn committed_schema_refuses_what_the_types_refuse() {
    let schema = committed(TASK_SCHEMA_FILE);
    let cases: [(&str, Value); 11] = [
        ("/schema_version", json!(2)),
        ("/task_id", json!("01936A3E-7C1B-7000-8000-000000000001")),
        ("/kind", json!("defrag")),
        ("/kind", json!("restore")),
        ("/not_before", json!("2026-11-25T15:00:00+02:00")),
        ("/spec/keep_fortnightly", json!(2)),
        ("/spec/storage", json!("s3-main")),
        ("/spec/storage", json!([])),
        ("/spec/path_to_backup", json!("etc")),
        ("/spec/max_segment_size", json!("2X")),
        ("/session/members", json!(["web 1"])),
    ];
    for (pointer, value) in cases {
        let mut v = backup_task_json();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(parent).unwrap()[key] = value;
        assert!(
            check(&schema, &schema, &v, "task").is_err(),
            "the schema accepts {pointer} = {}",
            v.pointer(pointer).unwrap()
        );
        assert!(
            TaskEnvelope::from_json(v.to_string().as_bytes()).is_err(),
            "the types accept {pointer}"
        );
    }
    let mut v = backup_task_json();
    v.as_object_mut().unwrap().remove("job_id");
    assert!(check(&schema, &schema, &v, "task").is_err());
    // Unknown envelope fields are fine for both.
    let mut v = backup_task_json();
    v["priority"] = json!(7);
    check(&schema, &schema, &v, "task").unwrap();
    TaskEnvelope::from_json(v.to_string().as_bytes()).unwrap();
}

#[test]
fn patterns_agree_with_the_parsers() {
    let re = |p: &str| regex_lite::Regex::new(p).unwrap();
    let task_id = re(id::TASK_ID_PATTERN);
    for ms in [0, 1, 1_795_614_195_123, (1 << 48) - 1] {
        for random in [[0u8; 10], [0xff; 10], [0x5a; 10]] {
            assert!(task_id.is_match(TaskId::from_parts(ms, random).as_str()));
        }
    }
    let ident = re(id::IDENT_PATTERN);
    let long = "a".repeat(129);
    for s in [
        "web1",
        "_x",
        "a.b-c_d",
        "a:b",
        "",
        ".x",
        "-x",
        "a b",
        "é",
        long.as_str(),
    ] {
        assert_eq!(ident.is_match(s), check_ident("x", s).is_ok(), "{s:?}");
    }
    let utc = re(utc::UTC_TIME_PATTERN);
    for s in [
        "2026-11-25T13:00:00Z",
        "2026-11-25T13:00:00.5Z",
        "2026-11-25T13:00:00+00:00",
        "2026-11-25T13:00:00+02:00",
        "2026-11-25 13:00:00Z",
        "2026-11-25t13:00:00z",
    ] {
        assert_eq!(utc.is_match(s), UtcTime::parse(s).is_ok(), "{s:?}");
    }
    let size = re(task_schema()["$defs"]["ByteSize"]["oneOf"][1]["pattern"]
        .as_str()
        .unwrap());
    for s in ["0", "2M", "512k", " 1G ", "1000", "2X", "M", "1.5M", "-1"] {
        assert_eq!(size.is_match(s), ByteSize::parse(s).is_ok(), "{s:?}");
    }
}

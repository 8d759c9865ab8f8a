//! The JSON Schema of the messages, generated from the types so it cannot drift from them, and
//! committed under `contracts/schema/` for tools that do not link this crate (ops scripts, job-file
//! linters, other languages).

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::Value;

use crate::event::Event;
use crate::task::TaskEnvelope;

/// File name of the task envelope's schema in `contracts/schema/`.
pub const TASK_SCHEMA_FILE: &str = "task.schema.json";

/// File name of the event's schema in `contracts/schema/`.
pub const EVENT_SCHEMA_FILE: &str = "event.schema.json";

/// The schema of a task message ([`TaskEnvelope`]), as it is read (JSON Schema 2020-12).
pub fn task_schema() -> Value {
    schema_for::<TaskEnvelope>()
}

/// The schema of an event message ([`Event`]), as it is read (JSON Schema 2020-12).
pub fn event_schema() -> Value {
    schema_for::<Event>()
}

/// The committed schema files, name and content (pretty JSON ending in a newline), as
/// `cargo run -p freezer-contracts --example gen-schema` writes them and the tests compare them.
pub fn schema_files() -> [(&'static str, String); 2] {
    let render = |v: Value| {
        let mut text = serde_json::to_string_pretty(&v).expect("a schema serializes");
        text.push('\n');
        text
    };
    [
        (TASK_SCHEMA_FILE, render(task_schema())),
        (EVENT_SCHEMA_FILE, render(event_schema())),
    ]
}

fn schema_for<T: JsonSchema>() -> Value {
    let schema = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.to_value()
}

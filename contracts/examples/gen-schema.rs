//! Writes the JSON Schema of the wire messages to `contracts/schema/`; run it after changing a
//! message type (`cargo run -p freezer-contracts --example gen-schema`) and commit the result. The
//! test `committed_schema_is_current` fails until then.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    std::fs::create_dir_all(&dir)?;
    for (name, text) in freezer_contracts::schema::schema_files() {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

//! The specs' test-vector files (`specs/vectors/`): a test computes its
//! vectors from fixed inputs, as pretty-printed JSON, and compares them
//! with the file; with `MTOS_WRITE_VECTORS=1` it rewrites the file first,
//! after a deliberate format change (which must come with the spec's
//! text). Text, not parsed JSON, so this crate needs no JSON library.

use std::path::PathBuf;

/// Where the vector file `name` lives: beside the crate under test.
/// Read from the environment `cargo test` gives the test process, not
/// baked in when this crate compiles: a build shared between two
/// checkouts (one target directory) would otherwise read the other
/// checkout's files.
pub fn path(name: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../specs/vectors")
        .join(name)
}

/// Compares `computed` (pretty-printed JSON) with `specs/vectors/<name>`,
/// rewriting the file first when `MTOS_WRITE_VECTORS` is set; the error
/// names the file that differs or could not be read.
pub fn check(name: &str, computed: &str) -> Result<(), String> {
    let path = path(name);
    let computed = format!("{}\n", computed.trim_end());
    if std::env::var_os("MTOS_WRITE_VECTORS").is_some() {
        std::fs::write(&path, &computed).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let expected =
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if expected != computed {
        return Err(format!(
            "{}: the vectors differ from what the code computes",
            path.display()
        ));
    }
    Ok(())
}

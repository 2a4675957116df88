//! Where the benches find `../shared/data` (the real data beside the repository):
//! `$SLUICE_SHARED_DATA`, else `shared/data` next to the repository root.

use std::path::PathBuf;

/// The shared data directory.
pub fn shared_data() -> PathBuf {
    match std::env::var_os("SLUICE_SHARED_DATA") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    }
}

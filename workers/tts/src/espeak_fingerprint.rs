//! A fingerprint of an espeak-ng data directory, shared by build.rs (which
//! records the one the binary was built with) and the worker (which checks
//! the directory it is given).

use std::path::Path;

/// FNV-1a over the phoneme tables: they change with every espeak-ng version,
/// and the library must read the tables it was built with.
pub fn fingerprint(data_dir: &Path) -> std::io::Result<u64> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for name in ["phontab", "phonindex", "phondata"] {
        for byte in std::fs::read(data_dir.join(name))? {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(hash)
}

//! The free space of a file system, as the admission control of the coordinator's
//! journal and the worker's scratch guard both read it: one way of counting, so that
//! a reserve means the same on both sides.

use std::path::Path;

/// Returns the bytes an unprivileged process may still write on the file system that
/// holds `dir` (blocking: one `statvfs`).
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stats = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    // The field types differ between platforms (u32 or u64): widen both.
    #[allow(clippy::useless_conversion)]
    let free = u64::from(stats.blocks_available()).saturating_mul(u64::from(stats.fragment_size()));
    Ok(free)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_has_free_space_and_a_missing_one_is_an_error() {
        let dir = std::env::temp_dir();
        assert!(free_bytes(&dir).expect("statvfs of the temporary directory") > 0);
        assert!(free_bytes(&dir.join("essaim-no-such-directory")).is_err());
    }
}

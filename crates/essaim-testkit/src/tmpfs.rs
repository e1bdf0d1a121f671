//! A small private file system (a tmpfs of a fixed size) that a test fills to the last
//! byte and frees again: a real "no space left on device" for one process's directory,
//! without touching the disk every other process of the machine writes to.
//!
//! Mounting needs the right to mount (root, as the test machines' CI runs); where it is
//! missing, [`Tmpfs::mount`] fails and the caller says what it skipped. The mount is
//! lazily unmounted on drop (a process may still hold a file in it).

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The size of the blocks a fill writes.
const FILL_BLOCK: usize = 1 << 20;

/// A mounted tmpfs of a fixed size; unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` on `path` (created if missing).
    pub fn mount(path: &Path, bytes: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|error| format!("{}: {error}", path.display()))?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|error| format!("mount could not run: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Whether this process may mount a tmpfs at all (tried once in `dir`).
    pub fn can_mount(dir: &Path) -> bool {
        Tmpfs::mount(&dir.join("tmpfs-probe"), 1 << 20).is_ok()
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a file of zeros into it until the file system is full; returns the file
    /// (remove it to free the space) and the bytes written.
    pub fn fill(&self) -> std::io::Result<(PathBuf, u64)> {
        let filler = self.path.join("filler");
        let mut file = File::create(&filler)?;
        let block = vec![0u8; FILL_BLOCK];
        let mut written = 0u64;
        let mut size = FILL_BLOCK;
        // Whole blocks, then ever smaller ones: up to the last byte.
        while size > 0 {
            match file.write(&block[..size]) {
                Ok(0) => size /= 2,
                Ok(wrote) => written += wrote as u64,
                Err(error) if is_full(&error) => size /= 2,
                Err(error) => return Err(error),
            }
        }
        Ok((filler, written))
    }
}

fn is_full(error: &std::io::Error) -> bool {
    error.kind() == ErrorKind::StorageFull || error.raw_os_error() == Some(28)
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _best_effort = Command::new("umount").arg("-l").arg(&self.path).output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_leaves_no_byte_free_and_its_removal_frees_them() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        if !Tmpfs::can_mount(dir.path()) {
            eprintln!("skipped: no right to mount a tmpfs here");
            return;
        }
        let tmpfs = Tmpfs::mount(&dir.path().join("small"), 4 << 20).expect("mounted");
        let (filler, written) = tmpfs.fill().expect("filled");
        assert!(written > 3 << 20, "{written}");
        let error =
            std::fs::write(tmpfs.path().join("more"), b"x").expect_err("the file system is full");
        assert!(is_full(&error), "{error}");
        std::fs::remove_file(filler).expect("the filler is removed");
        std::fs::write(tmpfs.path().join("more"), b"x").expect("space again");
    }
}

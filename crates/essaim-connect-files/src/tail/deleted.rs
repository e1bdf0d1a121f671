//! Committing, and `delete_committed`: removing wholly committed files while keeping
//! positions stable, through the partition's `.essaim-deleted` record.
use std::fs::File;
use std::io::Write;
use std::path::Path;

use essaim_connect::ConnectorError;

use super::{DELETED_STATE_FILE, Finished, Tail};
use crate::names::list_log_files;
use crate::{CONNECTOR, io_error};

impl Tail {
    pub(super) fn commit(&mut self, position: u64) -> Result<(), ConnectorError> {
        if self
            .committed
            .is_some_and(|committed| committed >= position)
        {
            return Ok(());
        }
        self.committed = Some(position);
        if !self.config.delete_committed {
            return Ok(());
        }
        // Files ending at or before the committed line's position are wholly committed.
        let mut end = self.base;
        let mut count = 0;
        for file in &self.finished {
            if end + file.size > position {
                break;
            }
            end += file.size;
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        let removed: Vec<Finished> = self.finished.drain(..count).collect();
        let last = removed.last().map(|file| file.name.clone());
        // Record first, then remove: after a crash in between, the names recorded are
        // ignored (and removed again), so positions never shift.
        write_deleted_state(&self.dir, end, last.as_deref().unwrap_or_default())
            .map_err(|error| self.io("commit", "recording deleted files", error))?;
        self.base = end;
        self.deleted_through = last;
        for file in &removed {
            match std::fs::remove_file(self.dir.join(&file.name)) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(self.io("commit", &format!("removing `{}`", file.name), error));
                }
            }
        }
        // Leftovers of a crash between recording and removing.
        for (name, _) in list_log_files(&self.dir, &self.config.end_marker)
            .map_err(|error| self.io("commit", "listing", error))?
        {
            if self
                .deleted_through
                .as_ref()
                .is_some_and(|deleted| name <= *deleted)
            {
                let _ = std::fs::remove_file(self.dir.join(&name));
            }
        }
        Ok(())
    }
}

pub(super) fn read_deleted_state(dir: &Path) -> Result<(u64, Option<String>), ConnectorError> {
    let path = dir.join(DELETED_STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((0, None)),
        Err(error) => return Err(io_error("open", format!("`{}`", path.display()), error)),
    };
    let mut lines = text.lines();
    let base = lines
        .next()
        .and_then(|line| line.trim().parse::<u64>().ok());
    let name = lines.next().filter(|name| !name.is_empty());
    match (base, name) {
        (Some(base), Some(name)) => Ok((base, Some(name.to_owned()))),
        _ => Err(ConnectorError::permanent(
            CONNECTOR,
            "open",
            format!("`{}` is not `<bytes>\\n<file name>\\n`", path.display()),
        )),
    }
}

/// Writes the deleted state atomically (temporary file, fsync, rename, fsync of the
/// directory).
fn write_deleted_state(dir: &Path, base: u64, last: &str) -> std::io::Result<()> {
    let temporary = dir.join(format!("{DELETED_STATE_FILE}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(format!("{base}\n{last}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(DELETED_STATE_FILE))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deleted_state_round_trips() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(read_deleted_state(dir.path()).ok(), Some((0, None)));
        write_deleted_state(dir.path(), 1234, "a-0002.log")?;
        assert_eq!(
            read_deleted_state(dir.path()).ok(),
            Some((1234, Some("a-0002.log".to_owned())))
        );
        Ok(())
    }
}

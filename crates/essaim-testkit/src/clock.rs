//! A process's wall clock that a test can step, as NTP steps a real one: the process
//! runs with libfaketime preloaded (Debian's `libfaketime`, installed by the test
//! command), reading its offset from a file of its own that the test rewrites.
//!
//! Only the wall clock (`CLOCK_REALTIME`, what `SystemTime::now` reads) moves: the
//! monotonic clock (`Instant`, tokio's timers) never jumps on a real machine either,
//! so it is left alone (`FAKETIME_DONT_FAKE_MONOTONIC`). The file is read again at
//! most once a second (`FAKETIME_CACHE_DURATION`), so a jump reaches the process within
//! a second, without a read of the file at every clock call.

use std::path::{Path, PathBuf};

/// Where Debian installs the library.
const LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// One process's steppable wall clock.
#[derive(Debug)]
pub struct FakeClock {
    offset_file: PathBuf,
    offset_secs: i64,
}

impl FakeClock {
    /// Tells whether processes can be given a fake clock here (the library is
    /// installed).
    pub fn available() -> bool {
        Path::new(LIBRARY).is_file()
    }

    /// Returns a clock at the true time whose offset lives in `offset_file`.
    pub fn new(offset_file: PathBuf) -> std::io::Result<Self> {
        let clock = Self {
            offset_file,
            offset_secs: 0,
        };
        clock.write()?;
        Ok(clock)
    }

    /// The variables that put a process started with them on this clock.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("LD_PRELOAD", LIBRARY.to_string()),
            (
                "FAKETIME_TIMESTAMP_FILE",
                self.offset_file.display().to_string(),
            ),
            ("FAKETIME_CACHE_DURATION", "1".to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
            ("DONT_FAKE_MONOTONIC", "1".to_string()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }

    /// Steps the clock by `secs` (forward when positive) from where it is.
    pub fn jump(&mut self, secs: i64) -> std::io::Result<()> {
        self.offset_secs += secs;
        self.write()
    }

    /// Puts the clock back at the true time.
    pub fn reset(&mut self) -> std::io::Result<()> {
        self.offset_secs = 0;
        self.write()
    }

    /// The offset from the true time, in seconds.
    pub fn offset_secs(&self) -> i64 {
        self.offset_secs
    }

    fn write(&self) -> std::io::Result<()> {
        // Written aside and renamed: the process never reads half a line.
        let aside = self.offset_file.with_extension("tmp");
        std::fs::write(&aside, format!("{:+}\n", self.offset_secs))?;
        std::fs::rename(&aside, &self.offset_file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_on_a_fake_clock_sees_the_jumps_of_its_wall_clock() {
        if !FakeClock::available() {
            eprintln!("libfaketime is not installed: skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut clock = FakeClock::new(dir.path().join("clock")).unwrap();
        let wall = |clock: &FakeClock| -> i64 {
            let output = std::process::Command::new("date")
                .arg("+%s")
                .envs(clock.env())
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .unwrap()
        };
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
        };
        assert!((wall(&clock) - now()).abs() <= 2);
        clock.jump(3600).unwrap();
        clock.jump(-600).unwrap();
        assert_eq!(clock.offset_secs(), 3000);
        assert!(
            (wall(&clock) - now() - 3000).abs() <= 2,
            "{}",
            wall(&clock) - now()
        );
        clock.reset().unwrap();
        assert!((wall(&clock) - now()).abs() <= 2);
    }
}

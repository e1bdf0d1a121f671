//! CPU time of a process from `/proc/<pid>/stat`, for the cost figures (core-seconds per
//! GB): parsing without I/O in [`parse_cpu_ticks`], the read in [`cpu_seconds`].
//!
//! Why `/proc` rather than `getrusage(RUSAGE_CHILDREN)`: the children's rusage only
//! counts a process once it has exited and been reaped, and only all children together;
//! `/proc` gives each live process's time at any moment, so a measurement can start after
//! the cluster has started and stop as soon as the job is done.

use std::path::Path;

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`). Linux fixes it
/// at 100 in its user-space ABI on every architecture essaim builds for, whatever the
/// kernel's internal tick rate.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// Why a stat line could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProcStatError {
    /// The line has no `(comm)` field.
    #[error("no `(command)` field in the stat line")]
    NoCommand,
    /// The line stops before the field it needs.
    #[error("the stat line has no field {field}")]
    MissingField {
        /// The 1-based field number of `proc(5)`.
        field: usize,
    },
    /// A time field is not a number.
    #[error("field {field} of the stat line is not a number: `{text}`")]
    NotANumber {
        /// The 1-based field number of `proc(5)`.
        field: usize,
        /// What it holds.
        text: String,
    },
}

/// Returns the CPU time in clock ticks that a process used: user and system time
/// (fields 14 and 15 of `proc(5)`) plus those of its children that it waited for
/// (fields 16 and 17: the commands a worker runs).
///
/// The command name (field 2) is in parentheses and may itself hold spaces and
/// parentheses, so the fields are counted from the *last* `)`.
pub fn parse_cpu_ticks(stat_line: &str) -> Result<u64, ProcStatError> {
    let close = stat_line.rfind(')').ok_or(ProcStatError::NoCommand)?;
    // After the command come fields 3 (state), 4, … separated by spaces.
    let fields: Vec<&str> = stat_line[close + 1..].split_whitespace().collect();
    let mut total = 0u64;
    for field in [14, 15, 16, 17] {
        let text = fields
            .get(field - 3)
            .ok_or(ProcStatError::MissingField { field })?;
        // cutime and cstime are signed in the kernel's format; they are never negative
        // in practice, and a negative one would only mean "nothing to add".
        let ticks: i64 = text.parse().map_err(|_| ProcStatError::NotANumber {
            field,
            text: (*text).to_string(),
        })?;
        total += u64::try_from(ticks).unwrap_or(0);
    }
    Ok(total)
}

/// Returns the CPU seconds process `pid` used so far, or `None` when it is gone or its
/// stat line cannot be read.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let path = Path::new("/proc").join(pid.to_string()).join("stat");
    let line = std::fs::read_to_string(path).ok()?;
    let ticks = parse_cpu_ticks(&line).ok()?;
    Some(ticks as f64 / TICKS_PER_SECOND)
}

/// Returns the busy clock ticks of the whole machine, all cores together, from the
/// `cpu` line of `/proc/stat`: user, nice, system, irq, softirq and steal time (idle and
/// I/O wait are not busy).
pub fn parse_machine_busy_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal …
    let busy_fields = [0, 1, 2, 5, 6, 7];
    let mut busy = 0;
    for index in busy_fields {
        busy += fields.get(index).copied().unwrap_or(0);
    }
    Some(busy)
}

/// Returns the CPU seconds the whole machine has been busy since it booted, all cores
/// together, or `None` when `/proc/stat` cannot be read.
pub fn machine_busy_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    Some(parse_machine_busy_ticks(&text)? as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line of an `essaim worker` process (fields cut after 20).
    const WORKER: &str =
        "4242 (essaim) S 4200 4242 4200 0 -1 4194560 1520 0 0 0 250 37 4 1 20 0 12 0";

    #[test]
    fn user_system_and_waited_children_times_add_up() {
        assert_eq!(parse_cpu_ticks(WORKER), Ok(250 + 37 + 4 + 1));
    }

    #[test]
    fn command_names_with_spaces_and_parentheses_do_not_shift_the_fields() {
        let line = "7 (tokio (rt) worker) R 1 7 7 0 -1 0 0 0 0 0 11 22 33 44 20 0 1 0";
        assert_eq!(parse_cpu_ticks(line), Ok(11 + 22 + 33 + 44));
    }

    #[test]
    fn short_or_garbled_lines_are_refused_with_the_field() {
        assert_eq!(
            parse_cpu_ticks("7 essaim R 1"),
            Err(ProcStatError::NoCommand)
        );
        assert_eq!(
            parse_cpu_ticks("7 (essaim) R 1 7 7 0 -1 0 0 0 0 0 11"),
            Err(ProcStatError::MissingField { field: 15 })
        );
        assert_eq!(
            parse_cpu_ticks("7 (essaim) R 1 7 7 0 -1 0 0 0 0 0 11 x 0 0"),
            Err(ProcStatError::NotANumber {
                field: 15,
                text: "x".into()
            })
        );
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_io_wait() {
        let stat = "cpu  100 5 40 9000 300 7 3 2 0 0\ncpu0 50 2 20 4500 150 3 1 1 0 0\nintr 1\n";
        assert_eq!(
            parse_machine_busy_ticks(stat),
            Some(100 + 5 + 40 + 7 + 3 + 2)
        );
        assert_eq!(parse_machine_busy_ticks("intr 1\n"), None);
        assert_eq!(parse_machine_busy_ticks("cpu  1 x 3\n"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let seconds = cpu_seconds(std::process::id()).expect("our own stat line is readable");
        assert!(seconds >= 0.0);
        assert_eq!(cpu_seconds(u32::MAX), None);
    }
}

//! What every scraped process says about itself: the standard `process_*` metrics and
//! `essaim_build_info`.
//!
//! Operators' dashboards and alerts expect the names of the Prometheus process collector
//! (the one every official client library ships): `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
//! `process_max_fds`, `process_start_time_seconds`, plus `process_threads`. They are
//! read from `/proc/self` at each scrape by [`ProcessCollector`], with the `procfs`
//! crate, so a value is never older than the scrape. `prometheus-client` has no process
//! collector of its own, and the one crate that adds it to `prometheus-client` is pinned
//! to an older release of it.
//!
//! `essaim_build_info{version, revision, rustc} 1` says which build answers, so that a
//! dashboard can show a rolling upgrade and an alert can be traced to a release. The
//! binary records its [`BuildInfo`] once at start ([`BuildInfo::record_for_this_process`]);
//! a process that did not (a test of a library) says `unknown` for what it cannot know.
//!
//! Every role that serves `/metrics` registers both with [`ProcessMetrics::register`].
//! Reading `/proc/self` on the scrape path costs a few small file reads, well under the
//! 0.5 ms budget of an async task (the directory of open descriptors is the largest).

use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Which build of essaim a process runs: the labels of `essaim_build_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The crate version, e.g. `0.1.0`.
    pub version: String,
    /// The source revision it was built from (a git commit), or `unknown`.
    pub revision: String,
    /// The compiler that built it, e.g. `rustc 1.95.0 (…)`, or `unknown`.
    pub rustc: String,
}

/// `version (revision)`, as workers advertise it and jobs show it.
impl std::fmt::Display for BuildInfo {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} ({})", self.version, self.revision)
    }
}

/// The build recorded by the binary at start; see [`BuildInfo::record_for_this_process`].
static THIS_PROCESS: OnceLock<BuildInfo> = OnceLock::new();

impl BuildInfo {
    /// Records the build of this process, once: the binary calls it before it serves
    /// anything. Later calls are ignored (the first one told the truth).
    pub fn record_for_this_process(info: BuildInfo) {
        let _recorded_first = THIS_PROCESS.set(info);
    }

    /// Returns the build recorded for this process, or this crate's version with
    /// `unknown` revision and compiler when the binary recorded none.
    pub fn of_this_process() -> BuildInfo {
        THIS_PROCESS.get().cloned().unwrap_or_else(|| BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: "unknown".to_string(),
            rustc: "unknown".to_string(),
        })
    }

    /// The processing version of work this build plans: `essaim 0.1.0 (abc1234)`
    /// after `definition · ` when a job definition is named.
    pub fn processing_version(&self, definition: Option<&str>) -> String {
        match definition {
            Some(definition) => format!("{definition} · essaim {self}"),
            None => format!("essaim {self}"),
        }
    }

    fn labels(&self) -> Vec<(String, String)> {
        vec![
            ("version".to_string(), self.version.clone()),
            ("revision".to_string(), self.revision.clone()),
            ("rustc".to_string(), self.rustc.clone()),
        ]
    }
}

/// The process collector and the build gauge, registered together.
pub struct ProcessMetrics;

impl ProcessMetrics {
    /// Registers the `process_*` metrics and `essaim_build_info` in `registry`.
    pub fn register(registry: &mut Registry) {
        // An info metric: OpenMetrics `essaim_build_info{…} 1`, a gauge in the classic
        // format (see `classic_text.rs`).
        registry.register(
            "essaim_build",
            "Which build of essaim this process runs (always 1)",
            Info::new(BuildInfo::of_this_process().labels()),
        );
        registry.register_collector(Box::new(ProcessCollector::new()));
    }
}

/// Reads `/proc/self` at each scrape; see the module doc.
#[derive(Debug)]
pub(crate) struct ProcessCollector {
    /// When the process started, in seconds since the Unix epoch; read once, since it
    /// cannot change. `None` when `/proc` could not tell.
    start_time_seconds: Option<f64>,
}

impl ProcessCollector {
    pub(crate) fn new() -> Self {
        Self {
            start_time_seconds: proc_self::start_time_seconds(),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(start_time) = self.start_time_seconds {
            encode_gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                start_time,
            )?;
        }
        let Some(sample) = proc_self::sample() else {
            return Ok(());
        };
        let cpu = prometheus_client::metrics::counter::ConstCounter::new(sample.cpu_seconds);
        let metric = encoder.encode_descriptor(
            // The encoder appends `_total` to counters.
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        prometheus_client::encoding::EncodeMetric::encode(&cpu, metric)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                sample.resident_memory_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                sample.virtual_memory_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                sample.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                sample.max_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                sample.threads,
            ),
        ] {
            encode_gauge(&mut encoder, name, help, value)?;
        }
        Ok(())
    }
}

/// Writes one unlabelled gauge.
fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let gauge = prometheus_client::metrics::gauge::ConstGauge::new(value);
    let metric = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    prometheus_client::encoding::EncodeMetric::encode(&gauge, metric)
}

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcessSample {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: f64,
    pub virtual_memory_bytes: f64,
    pub open_fds: f64,
    pub max_fds: f64,
    pub threads: f64,
}

#[cfg(target_os = "linux")]
mod proc_self {
    use procfs::process::{LimitValue, Process};

    use super::ProcessSample;

    /// Returns the process's start time in seconds since the Unix epoch: the boot time
    /// plus the start offset `/proc/self/stat` gives in clock ticks.
    pub(super) fn start_time_seconds() -> Option<f64> {
        let stat = Process::myself().ok()?.stat().ok()?;
        let boot_time = procfs::boot_time_secs().ok()?;
        let ticks_per_second = procfs::ticks_per_second() as f64;
        Some(boot_time as f64 + stat.starttime as f64 / ticks_per_second)
    }

    /// Reads the process's CPU time, memory, descriptors and threads, or `None` (logged)
    /// when `/proc/self` cannot be read: a scrape then lacks them rather than failing.
    pub(super) fn sample() -> Option<ProcessSample> {
        let process = match Process::myself() {
            Ok(process) => process,
            Err(error) => {
                tracing::debug!(%error, "cannot read /proc/self");
                return None;
            }
        };
        let stat = match process.stat() {
            Ok(stat) => stat,
            Err(error) => {
                tracing::debug!(%error, "cannot read /proc/self/stat");
                return None;
            }
        };
        let ticks_per_second = procfs::ticks_per_second() as f64;
        // An unreadable descriptor table or limit is reported as 0 rather than dropping
        // the whole sample.
        let open_fds = process.fd_count().unwrap_or_default() as f64;
        let max_fds = process
            .limits()
            .map(|limits| match limits.max_open_files.soft_limit {
                LimitValue::Value(limit) => limit as f64,
                LimitValue::Unlimited => f64::INFINITY,
            })
            .unwrap_or_default();
        Some(ProcessSample {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks_per_second,
            resident_memory_bytes: (stat.rss * procfs::page_size()) as f64,
            virtual_memory_bytes: stat.vsize as f64,
            open_fds,
            max_fds,
            threads: stat.num_threads as f64,
        })
    }
}

/// Elsewhere than Linux there is no `/proc`: only `essaim_build_info` is exported.
#[cfg(not(target_os = "linux"))]
mod proc_self {
    use super::ProcessSample;

    pub(super) fn start_time_seconds() -> Option<f64> {
        None
    }

    pub(super) fn sample() -> Option<ProcessSample> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry)
            .expect("encoding to a String cannot fail");
        text
    }

    /// Returns the value of the unlabelled sample `name` in `text`.
    fn sample_value(text: &str, name: &str) -> f64 {
        let prefix = format!("{name} ");
        let line = text
            .lines()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"));
        line[prefix.len()..]
            .parse()
            .unwrap_or_else(|error| panic!("{line}: {error}"))
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_describe_this_very_process() {
        let mut registry = Registry::default();
        ProcessMetrics::register(&mut registry);
        // Hold a descriptor open and spend CPU until the kernel has counted some (in
        // clock ticks: on a loaded machine 30 ms of wall time may hold none), so both
        // are visibly non-zero.
        let _held_open = std::fs::File::open("/proc/self/stat").expect("/proc is mounted");
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let text = loop {
            let busy_until = std::time::Instant::now() + std::time::Duration::from_millis(30);
            while std::time::Instant::now() < busy_until {
                std::hint::black_box(0u64);
            }
            let text = exposition(&registry);
            let counted = sample_value(&text, "process_cpu_seconds_total") > 0.0;
            if counted || std::time::Instant::now() > give_up {
                break text;
            }
        };

        assert!(
            sample_value(&text, "process_cpu_seconds_total") > 0.0,
            "{text}"
        );
        assert!(
            text.contains("# TYPE process_cpu_seconds counter\n"),
            "{text}"
        );
        // A test binary holds a few MiB at least, and maps more than it holds.
        let resident = sample_value(&text, "process_resident_memory_bytes");
        assert!(resident > 1_000_000.0, "{text}");
        assert!(sample_value(&text, "process_virtual_memory_bytes") >= resident);
        let open_fds = sample_value(&text, "process_open_fds");
        assert!(
            open_fds >= 4.0,
            "stdin, stdout, stderr and the file: {text}"
        );
        assert!(sample_value(&text, "process_max_fds") >= open_fds, "{text}");
        assert!(sample_value(&text, "process_threads") >= 1.0, "{text}");
        // Started in the last day, not in the future: the clock ticks were converted.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs_f64();
        let started = sample_value(&text, "process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
    }

    #[test]
    fn build_info_is_one_with_the_build_as_labels() {
        let mut registry = Registry::default();
        ProcessMetrics::register(&mut registry);
        let text = exposition(&registry);
        let version = env!("CARGO_PKG_VERSION");
        assert!(text.contains("# TYPE essaim_build info\n"), "{text}");
        assert!(
            text.contains(&format!(
                "essaim_build_info{{version=\"{version}\",revision=\"unknown\",rustc=\"unknown\"}} 1\n"
            )),
            "{text}"
        );
    }
}

//! Progress bars of the commands that follow a job (`wait`, `submit --wait`, `run`): one
//! bar per stage with tasks done out of total, rate and ETA, and a status line with
//! what went wrong so far.
//!
//! The bars are drawn on standard error, and only when it is a terminal and the output
//! is text: a script that pipes the output, or asks for `--output json`, gets the final
//! document and nothing else.

use crate::output::OutputFormat;
use essaim_proto::v1;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// One bar per stage and a status line, all hidden when not drawing.
pub struct StageBars {
    _multi: MultiProgress,
    bars: Vec<ProgressBar>,
    status: ProgressBar,
}

/// Returns true when progress should be drawn: text output and a terminal on stderr.
pub fn should_draw(output: OutputFormat) -> bool {
    output == OutputFormat::Text && std::io::stderr().is_terminal()
}

impl StageBars {
    /// Prepares a bar per `(name, tasks)` stage; draws nothing unless `visible`.
    pub fn new(stages: &[(String, u64)], visible: bool) -> Self {
        let multi = MultiProgress::new();
        if !visible {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        let style = ProgressStyle::with_template(
            "{prefix:>9} [{bar:32}] {pos}/{len} {rate:>9} eta {eta:>4} {msg}",
        )
        .expect("the template is valid")
        .with_key(
            "rate",
            |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{:.1}/s", state.per_sec());
            },
        )
        .progress_chars("=> ");
        let bars = stages
            .iter()
            .map(|(name, total)| {
                let bar = multi.add(ProgressBar::new(*total));
                bar.set_style(style.clone());
                bar.set_prefix(name.clone());
                bar
            })
            .collect();
        let status = multi.add(ProgressBar::new_spinner());
        status.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .expect("the template is valid"),
        );
        if visible {
            status.enable_steady_tick(Duration::from_millis(120));
        }
        Self {
            _multi: multi,
            bars,
            status,
        }
    }

    /// Names the stages of a job of `stages` stages: `tasks` for one, else by the kind of
    /// their tasks (`map`, `reduce`, `commit` for MapReduce), or `stage N`.
    pub fn for_job(job: &v1::JobStatus, visible: bool) -> Self {
        let stages: Vec<(String, u64)> = if job.stages.len() <= 1 {
            vec![("tasks".to_string(), u64::from(job.total))]
        } else {
            job.stages
                .iter()
                .enumerate()
                .map(|(index, stage)| (stage_name(index, &stage.kind), u64::from(stage.total)))
                .collect()
        };
        Self::new(&stages, visible)
    }

    /// Shows the job's latest counts.
    pub fn update(&self, job: &v1::JobStatus) {
        // A coordinator that does not report stages: the job is one stage.
        if job.stages.is_empty()
            && let Some(bar) = self.bars.first()
        {
            bar.set_position(u64::from(job.succeeded + job.dead_lettered + job.skipped));
            bar.set_message(stage_message(job.running, job.dead_lettered + job.skipped));
        }
        for (bar, stage) in self.bars.iter().zip(&job.stages) {
            bar.set_position(u64::from(stage.succeeded + stage.failed));
            bar.set_message(stage_message(stage.running, stage.failed));
        }
        self.status.set_message(status_message(job));
    }

    /// Leaves the bars as they are, with the job's final state on the status line.
    pub fn finish(&self, job: &v1::JobStatus) {
        self.update(job);
        for bar in &self.bars {
            bar.finish();
        }
        self.status.finish_with_message(status_message(job));
    }

    /// Leaves the bars as they are, with `message` on the status line.
    pub fn abandon(&self, message: String) {
        for bar in &self.bars {
            bar.abandon();
        }
        self.status.abandon_with_message(message);
    }
}

fn stage_message(running: u32, failed: u32) -> String {
    match (running, failed) {
        (0, 0) => String::new(),
        (running, 0) => format!("{running} running"),
        (running, failed) => format!("{running} running, {failed} failed"),
    }
}

/// The job-wide line: its state and everything that went wrong so far.
fn status_message(job: &v1::JobStatus) -> String {
    let mut message = format!("job {} {}", job.job_id, job.state);
    if job.retrying > 0 {
        message.push_str(&format!(", {} retrying", job.retrying));
    }
    if job.attempts_failed > 0 {
        message.push_str(&format!(", {} failed attempts", job.attempts_failed));
    }
    if job.dead_lettered > 0 {
        message.push_str(&format!(", {} dead-lettered", job.dead_lettered));
    }
    if job.outputs_lost > 0 {
        message.push_str(&format!(", {} lost outputs recomputed", job.outputs_lost));
    }
    message
}

/// Names a stage by its task kind (`mapreduce.reduce` → `reduce`), or by its index when
/// the coordinator does not say.
fn stage_name(index: usize, kind: &str) -> String {
    match kind.rsplit('.').next() {
        Some(short) if !short.is_empty() => short.to_string(),
        _ => format!("stage {index}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_names_only_what_happened() {
        let mut job = v1::JobStatus {
            job_id: 4,
            state: "running".into(),
            ..Default::default()
        };
        assert_eq!(status_message(&job), "job 4 running");
        job.retrying = 1;
        job.attempts_failed = 3;
        job.dead_lettered = 2;
        assert_eq!(
            status_message(&job),
            "job 4 running, 1 retrying, 3 failed attempts, 2 dead-lettered"
        );
        assert_eq!(stage_message(0, 0), "");
        assert_eq!(stage_message(2, 1), "2 running, 1 failed");
    }

    #[test]
    fn hidden_bars_follow_the_counts() {
        let job = v1::JobStatus {
            job_id: 1,
            state: "running".into(),
            total: 10,
            succeeded: 6,
            stages: vec![
                v1::StageStatus {
                    total: 4,
                    succeeded: 4,
                    running: 0,
                    failed: 0,
                    kind: "mapreduce.map".into(),
                },
                v1::StageStatus {
                    total: 6,
                    succeeded: 2,
                    running: 3,
                    failed: 1,
                    kind: String::new(),
                },
            ],
            ..Default::default()
        };
        let bars = StageBars::for_job(&job, false);
        bars.update(&job);
        let positions: Vec<u64> = bars.bars.iter().map(ProgressBar::position).collect();
        assert_eq!(positions, [4, 3]);
        assert_eq!(bars.bars[1].message(), "3 running, 1 failed");
        assert_eq!(bars.bars[0].prefix(), "map");
        assert_eq!(bars.bars[1].prefix(), "stage 1");
        bars.finish(&job);
    }
}

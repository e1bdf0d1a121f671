//! The stream scenarios' part of `summary.md` (pure, like `summary.rs`, which calls
//! this).

use crate::Results;
use crate::summary::{number, yes_no};
use std::fmt::Write as _;

/// Appends the sections of the stream scenarios that ran, or why they did not.
pub fn stream_sections(out: &mut String, results: &Results) {
    if let Some(reason) = &results.streams_skipped {
        let _ = writeln!(out, "## Streaming\n\nSkipped: {reason}.\n");
        return;
    }
    if let Some(scaling) = &results.stream_scaling {
        let _ = writeln!(
            out,
            "## S1. Streaming throughput vs workers: flights pipeline, {} events, {} partitions\n",
            scaling.events, scaling.partitions
        );
        let units: Vec<String> = scaling
            .units_by_stage
            .iter()
            .map(|(stage, units)| format!("{units} {stage}"))
            .collect();
        let _ = writeln!(
            out,
            "Units: {}; replayed into NATS beforehand at {} events/s; every run's tables equal the oracle: {}.\n",
            units.join(", "),
            number(scaling.replay_events_per_s, 0),
            yes_no(scaling.oracle_matched)
        );
        let _ = writeln!(
            out,
            "| workers | events/s per run | median | speed-up | core-s per million events | coordinator's share | cores busy |\n|---|---|---|---|---|---|---|"
        );
        for (point, cost) in scaling.curve.points.iter().zip(&scaling.cost) {
            let runs: Vec<String> = point.runs.iter().map(|run| number(*run, 0)).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {}% | {} |",
                point.workers,
                runs.join(", "),
                number(point.median, 0),
                point.speedup.map_or_else(|| "–".into(), |s| number(s, 2)),
                number(cost.core_seconds_per_million, 1),
                number(cost.coordinator_share * 100.0, 1),
                number(cost.cores_used, 2)
            );
        }
        out.push('\n');
    }
    if let Some(balance) = &results.stream_balance {
        let _ = writeln!(
            out,
            "## S2. Load of a pipeline across {} workers ({} events)\n",
            balance.workers, balance.events
        );
        let _ = writeln!(
            out,
            "| worker | source records | share | shuffled records | share | CPU s | share |\n|---|---|---|---|---|---|---|"
        );
        for share in &balance.shares {
            let _ = writeln!(
                out,
                "| {} | {} | {}% | {} | {}% | {} | {}% |",
                share.name,
                share.source_records,
                number(share.source_share * 100.0, 1),
                share.shuffled_records,
                number(share.shuffled_share * 100.0, 1),
                number(share.cpu_s, 2),
                number(share.cpu_share * 100.0, 1)
            );
        }
        let cv = |spread: Option<crate::stats::Spread>| {
            spread.map_or_else(
                || "–".into(),
                |spread| number(spread.coefficient_of_variation, 3),
            )
        };
        let _ = writeln!(
            out,
            "\nCV over the workers: source records {}, shuffled records {}, CPU time {}. Tables equal the oracle: {}.\n",
            cv(balance.source_spread),
            cv(balance.shuffled_spread),
            cv(balance.cpu_spread),
            yes_no(balance.oracle_matched)
        );
    }
    if let Some(recovery) = &results.stream_recovery {
        let _ = writeln!(
            out,
            "## S3. A pipeline after SIGKILL of a worker, and of the coordinator\n\n{} events published at {} events/s on {} workers, `--worker-timeout-ms {}`, heartbeats every {} ms; a killed coordinator is started again at once on its journal. Tables equal the oracle after every kill: {}.\n",
            recovery.events,
            number(recovery.rate, 0),
            recovery.workers,
            recovery.worker_timeout_ms,
            recovery.heartbeat_ms,
            yes_no(recovery.oracle_matched)
        );
        let _ = writeln!(
            out,
            "| run | killed (units) | at (s) | normal lag | peak lag | kill → units back (s) | kill → lag normal (s) | job (s) |\n|---|---|---|---|---|---|---|---|"
        );
        let seconds = |value: Option<f64>| value.map_or_else(|| "–".into(), |v| number(v, 2));
        let runs = recovery.runs.iter().chain(&recovery.coordinator_runs);
        for (index, run) in runs.enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} ({}) | {} | {} | {} | {} | {} | {} |",
                index + 1,
                run.killed_worker,
                run.units_killed,
                number(run.killed_at_s, 1),
                run.normal_lag,
                run.peak_lag,
                seconds(run.units_back_s),
                seconds(run.lag_normal_s),
                number(run.job_seconds, 1)
            );
        }
        out.push('\n');
    }
    if let Some(elasticity) = &results.stream_elasticity {
        let _ = writeln!(
            out,
            "## S4. A pipeline while workers are added and drained\n\n{} events published at {} events/s; the job took {} s. Tables equal the oracle: {}.\n",
            elasticity.events,
            number(elasticity.rate, 0),
            number(elasticity.job_seconds, 1),
            yes_no(elasticity.oracle_matched)
        );
        let _ = writeln!(
            out,
            "| phase | from (s) | to (s) | median lag | most lag | median records/s |\n|---|---|---|---|---|---|"
        );
        for phase in &elasticity.phases {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                phase.label,
                number(phase.from_s, 1),
                number(phase.to_s, 1),
                phase
                    .median_lag
                    .map_or_else(|| "–".into(), |lag| number(lag, 0)),
                phase.max_lag,
                phase
                    .median_records_per_s
                    .map_or_else(|| "–".into(), |rate| number(rate, 0))
            );
        }
        out.push('\n');
    }
}

//! `essaim gen`: writes sample input for the built-in MapReduce jobs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::client::usage;
use crate::output::{FormatOrDirectory, OutputFormat, print_json};

/// Options of `essaim gen`: generates sample input for the built-in jobs.
#[derive(clap::Args, Debug)]
pub struct GenArgs {
    /// What to generate.
    #[arg(value_enum)]
    what: GenKind,
    /// Output directory (refused if it exists, unless --overwrite).
    #[arg(long, value_name = "DIR", required_unless_present = "output")]
    output_dir: Option<PathBuf>,
    /// Output format of the summary: text or json. Any other value names the output
    /// directory, as `-o DIR` did before --output-dir.
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = FormatOrDirectory::parse)]
    output: Option<FormatOrDirectory>,
    /// Output format of the summary, beside the old `--output DIR`.
    #[arg(long, value_enum, hide_short_help = true)]
    format: Option<OutputFormat>,
    /// Records (sort) to generate.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Files to spread them over.
    #[arg(long, default_value_t = 4)]
    files: u32,
    /// Seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Replace the output directory if it exists.
    #[arg(long)]
    overwrite: bool,
}

/// Sample inputs `essaim gen` writes.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum GenKind {
    /// TeraSort-style records for `sort` and `validate`: 100-byte lines, 10-byte keys.
    Sort,
}

/// Writes sample input.
pub fn generate(args: GenArgs) -> anyhow::Result<ExitCode> {
    let (output_dir, format) = FormatOrDirectory::resolve(
        args.output.as_ref(),
        args.output_dir.as_deref(),
        args.format,
    )
    .map_err(usage)?;
    let output =
        output_dir.ok_or_else(|| usage("--output-dir is required (-o names a format here)"))?;
    if output.exists() {
        if !args.overwrite {
            return Err(usage(format!(
                "output directory `{}` already exists (pass --overwrite to replace it)",
                output.display()
            )));
        }
        std::fs::remove_dir_all(&output)?;
    }
    if args.files == 0 {
        return Err(usage("--files must be at least 1"));
    }
    let started = Instant::now();
    match args.what {
        GenKind::Sort => {
            essaim_mapreduce::jobs::generate_sort_input(&output, args.rows, args.files, args.seed)?
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    match format {
        OutputFormat::Json => print_json(&serde_json::json!({
            "records": args.rows,
            "files": args.files,
            "output": output,
            "seconds": seconds,
        })),
        OutputFormat::Text => crate::outln!(
            "wrote {} records in {} files to {} in {seconds:.2} s",
            args.rows,
            args.files,
            output.display(),
        ),
    }
    Ok(ExitCode::SUCCESS)
}

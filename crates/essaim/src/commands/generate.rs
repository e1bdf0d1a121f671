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
    /// Records (sort) or matrix rows (matrix) to generate [default: 1000000 records,
    /// 10000 rows].
    #[arg(long)]
    rows: Option<u64>,
    /// matrix: columns of the matrix, which is the length of the vector.
    #[arg(long, default_value_t = 1000)]
    columns: u64,
    /// matrix: the share of the matrix's cells that hold an entry, above 0 and at most 1.
    #[arg(long, default_value_t = 0.01)]
    density: f64,
    /// Files to spread them over (matrix: this many for the matrix, as many for the
    /// vector).
    #[arg(long, default_value_t = 4)]
    files: u32,
    /// Seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Replace the output directory if it exists.
    #[arg(long)]
    overwrite: bool,
    /// sort: compress the files, `gz` or `zst` (`input-00000.zst`); a sort job reads
    /// each compressed file whole in one map task. Lets a sort larger than the disk
    /// holds as plain text fit.
    #[arg(long, value_name = "CODEC", value_parser = super::mapreduce::parse_output_codec)]
    compress_output: Option<essaim_storage::Codec>,
}

/// Sample inputs `essaim gen` writes.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum GenKind {
    /// TeraSort-style records for `sort` and `validate`: 100-byte lines, 10-byte keys.
    Sort,
    /// A sparse matrix (`DIR/matrix`, lines `i j a`) and a dense vector (`DIR/vector`,
    /// lines `j v`) for `matvec`, `rownorms` and `cosine`; values uniform in [-1, 1).
    Matrix,
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
    let (records, what) = match args.what {
        GenKind::Sort => {
            let rows = args.rows.unwrap_or(DEFAULT_SORT_RECORDS);
            let to = essaim_mapreduce::jobs::GeneratedFiles {
                out_dir: &output,
                files: args.files,
                codec: args.compress_output,
            };
            essaim_mapreduce::jobs::generate_sort_input(to, rows, args.seed)?;
            (rows, "records".to_string())
        }
        GenKind::Matrix => {
            if args.compress_output.is_some() {
                return Err(usage("--compress-output applies to `gen sort` only"));
            }
            let rows = args.rows.unwrap_or(DEFAULT_MATRIX_ROWS);
            if args.columns == 0 {
                return Err(usage("--columns must be at least 1"));
            }
            if !(args.density > 0.0 && args.density <= 1.0) {
                return Err(usage("--density must be above 0 and at most 1"));
            }
            let generated = essaim_mapreduce::jobs::matrix::generate::generate_matrix_input(
                &output,
                rows,
                args.columns,
                args.density,
                args.files,
                args.seed,
            )?;
            let what = format!(
                "matrix entries ({rows} rows × {} columns) and a vector of {}",
                args.columns, args.columns
            );
            (generated.entries, what)
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    match format {
        OutputFormat::Json => print_json(&serde_json::json!({
            "records": records,
            "files": args.files,
            "output": output,
            "seconds": seconds,
        })),
        OutputFormat::Text => crate::outln!(
            "wrote {records} {what} in {} files to {} in {seconds:.2} s",
            args.files,
            output.display(),
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Records `essaim gen sort` writes without --rows.
const DEFAULT_SORT_RECORDS: u64 = 1_000_000;
/// Rows `essaim gen matrix` writes without --rows.
const DEFAULT_MATRIX_ROWS: u64 = 10_000;

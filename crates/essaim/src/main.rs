//! `essaim`: one binary for every role — coordinator, worker, client — plus the embedded
//! local cluster and the demos. Everything lives in the library (see `lib.rs`), so that
//! programs with jobs of their own get the same command line.

fn main() -> std::process::ExitCode {
    essaim::main_with_jobs(Vec::new())
}

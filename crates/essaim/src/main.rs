//! `essaim`: one binary for every role — coordinator, worker, client — plus the embedded
//! local cluster and the demos. Everything lives in the library (see `lib.rs`), so that
//! programs with jobs of their own get the same command line.

/// Records, rows and messages are many small allocations: mimalloc serves them from
/// per-thread pages where glibc's malloc took a quarter of a stream worker's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    essaim::main_with_jobs(Vec::new())
}

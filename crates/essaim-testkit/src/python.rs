//! Python tools of tests (mrjob, schemathesis, kubernetes-validate), each in a virtual
//! environment that `scripts/python-env.sh PROFILE` creates once under `target/` and
//! whose interpreter it prints.
//!
//! `ESSAIM_SKIP_PYTHON=1` skips the tests that need Python: [`python_env`] then returns
//! `None`. Otherwise an environment that cannot be created fails the test.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::server::script_path;

/// Returns the interpreter of the profile's environment (`mrjob`, `schemathesis` or
/// `k8s`), creating it the first time; `None` when `ESSAIM_SKIP_PYTHON=1`.
pub fn python_env(profile: &str) -> Option<PathBuf> {
    if std::env::var_os("ESSAIM_SKIP_PYTHON").is_some_and(|value| value == "1") {
        eprintln!("ESSAIM_SKIP_PYTHON=1: skipping a test that needs Python ({profile})");
        return None;
    }
    // Tests of one process ask at once: one of them creates the environment, the
    // others wait for it.
    static CREATING: OnceLock<Mutex<()>> = OnceLock::new();
    let _one_at_a_time = CREATING
        .get_or_init(|| Mutex::new(()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let script = script_path("python-env.sh");
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(&script)
        .arg(profile)
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "scripts/python-env.sh {profile} failed: it needs CPython 3 with venv and pip, and \
         PyPI (set ESSAIM_SKIP_PYTHON=1 to skip the tests that need Python):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let python = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    eprintln!("python ({profile}): {python} ({:?})", started.elapsed());
    Some(PathBuf::from(python))
}

/// Returns the directory of the example jobs mrjob ships (`mrjob.examples`), given the
/// interpreter of the `mrjob` profile.
pub fn mrjob_examples(python: &std::path::Path) -> PathBuf {
    let output = Command::new(python)
        .args([
            "-c",
            "import os, mrjob.examples; print(os.path.dirname(mrjob.examples.__file__))",
        ])
        .output()
        .expect("the environment's python runs");
    assert!(output.status.success(), "mrjob.examples is missing");
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

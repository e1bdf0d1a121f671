//! The service-level objectives' rules: `deploy/prometheus/slo_rules.yml` is exactly what
//! `essaim slo rules slo.toml` prints (set `ESSAIM_REGENERATE=1` to write it anew after
//! editing the objectives), promtool accepts it, and its burn-rate alerts fire as
//! `slo_rules_test.yml` says.

use std::process::Command;

use crate::{ESSAIM, deploy_dir, run_promtool_in_deploy_dir};

#[test]
fn slo_rules_are_what_essaim_slo_rules_prints() {
    let output = Command::new(ESSAIM)
        .args(["slo", "rules", "slo.toml"])
        .current_dir(deploy_dir())
        .output()
        .expect("essaim slo rules runs");
    assert!(
        output.status.success(),
        "essaim slo rules slo.toml failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated = String::from_utf8(output.stdout).expect("the rules are UTF-8");
    let path = deploy_dir().join("slo_rules.yml");
    if std::env::var("ESSAIM_REGENERATE").is_ok_and(|value| value == "1") {
        std::fs::write(&path, &generated).expect("write slo_rules.yml");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "deploy/prometheus/slo_rules.yml is not the output of `essaim slo rules slo.toml`: \
         run the promtool tests with ESSAIM_REGENERATE=1 to write it anew"
    );
}

#[test]
fn slo_rules_are_valid() {
    run_promtool_in_deploy_dir(&["check", "rules", "slo_rules.yml"]);
}

#[test]
fn slo_rules_pass_their_unit_tests() {
    run_promtool_in_deploy_dir(&["test", "rules", "slo_rules_test.yml"]);
}

#[test]
fn a_bad_objectives_file_is_refused_with_its_name_and_the_field() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("slo.toml");
    std::fs::write(
        &file,
        "version = 1\n[[objective]]\nname = \"late\"\nsubject = \"jobs\"\n\
         indicator = \"latency\"\ntarget = 0.9\nthreshold_seconds = 700\n",
    )
    .expect("write the file");
    let output = Command::new(ESSAIM)
        .args(["slo", "rules"])
        .arg(&file)
        .output()
        .expect("essaim slo rules runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("slo.toml"), "{stderr}");
    assert!(
        stderr.contains("objective 1 (`late`): `threshold_seconds` 700 is not a bucket bound"),
        "{stderr}"
    );
}

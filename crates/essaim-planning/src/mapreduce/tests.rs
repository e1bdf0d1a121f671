use super::*;
use essaim_mapreduce::payload::{SUCCESS_MARKER, TEMPORARY_DIR};

fn registry() -> JobRegistry {
    let mut jobs = JobRegistry::new();
    for job in essaim_mapreduce::jobs::builtin_jobs() {
        jobs.register(job);
    }
    jobs
}

fn wordcount(dir: &Path, output: &Path) -> MapReduceRequest {
    for (name, text) in [("a.txt", "the cat\n"), ("b.txt", "the dog\n")] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    MapReduceRequest {
        kind: Default::default(),
        job: "wordcount".into(),
        inputs: vec![dir.join("*.txt").display().to_string()],
        output: output.display().to_string(),
        params: Default::default(),
        reducers: Some(3),
        split_bytes: None,
        open_cost_bytes: None,
        sort_buffer_bytes: None,
        merge_factor: None,
        compress_output: None,
        overwrite: false,
        max_attempts: None,
        slow_start: None,
        s3: None,
        files: Default::default(),
        required_labels: Default::default(),
    }
}

#[test]
fn a_request_becomes_map_reduce_and_commit_tasks_with_the_output_ready() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let planned = plan(
        &registry(),
        &wordcount(dir.path(), &output),
        Overwrite::Anything,
    )
    .unwrap();
    // The two small files are packed into one map task; three reducers; one commit.
    assert_eq!(planned.map_tasks, 1);
    let spec = job_spec(0, 0.05, &planned);
    assert_eq!(spec.tasks.len(), 1 + 3 + 1);
    assert_eq!(spec.slow_start, Some(0.05));
    assert_eq!(
        output_of_job_name(&spec.name),
        Some(output.to_str().unwrap())
    );
    assert_eq!(output_of_job_name("e2e"), None);
    assert!(output.join(TEMPORARY_DIR).is_dir());
    let summary = summary(&planned);
    assert_eq!(summary["input_files"], 2);
    assert_eq!(summary["reducers"], 3);
}

#[test]
fn an_open_cost_of_zero_gives_every_file_its_own_map_task() {
    let dir = tempfile::tempdir().unwrap();
    let mut request = wordcount(dir.path(), &dir.path().join("out"));
    request.open_cost_bytes = Some(0);
    let planned = plan(&registry(), &request, Overwrite::Anything).unwrap();
    assert_eq!(planned.map_tasks, 2);
}

#[test]
fn the_api_overwrites_an_earlier_output_but_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("thesis.tex"), "years of work").unwrap();
    let mut request = wordcount(dir.path(), &precious);
    request.overwrite = true;
    let refused = plan(&registry(), &request, Overwrite::EarlierOutputOnly).unwrap_err();
    assert!(
        matches!(refused, MapReducePlanError::NotAnOutput(_)),
        "{refused}"
    );
    assert!(precious.join("thesis.tex").is_file(), "nothing was removed");
    // A `_temporary` directory does not make a directory an output: anyone can make one.
    std::fs::create_dir(precious.join(TEMPORARY_DIR)).unwrap();
    let refused = plan(&registry(), &request, Overwrite::EarlierOutputOnly).unwrap_err();
    assert!(
        matches!(refused, MapReducePlanError::NotAnOutput(_)),
        "{refused}"
    );
    assert!(precious.join("thesis.tex").is_file(), "nothing was removed");

    let earlier = dir.path().join("earlier");
    std::fs::create_dir(&earlier).unwrap();
    std::fs::write(earlier.join(SUCCESS_MARKER), "").unwrap();
    std::fs::write(earlier.join("part-00000"), "old\t1\n").unwrap();
    request.output = earlier.display().to_string();
    plan(&registry(), &request, Overwrite::EarlierOutputOnly).unwrap();
    assert!(
        !earlier.join("part-00000").exists(),
        "the earlier output is replaced"
    );
}

#[test]
fn unknown_jobs_and_codecs_are_refused_with_what_would_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut request = wordcount(dir.path(), &dir.path().join("out"));
    request.job = "wordcuont".into();
    let error = plan(&registry(), &request, Overwrite::Anything).unwrap_err();
    assert!(error.to_string().contains("wordcount"), "{error}");
    request.job = "wordcount".into();
    request.compress_output = Some("bz2".into());
    let error = plan(&registry(), &request, Overwrite::Anything).unwrap_err();
    assert!(error.to_string().contains("gz or zst"), "{error}");
    assert!(
        !dir.path().join("out").exists(),
        "nothing is prepared for a refused job"
    );
}

#[test]
fn skipping_needs_an_attempt_after_the_failures_it_waits_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut request = wordcount(dir.path(), &dir.path().join("out"));
    request.params.insert("skip.records.max".into(), "5".into());
    request.max_attempts = Some(2);
    let refused = plan(&registry(), &request, Overwrite::Anything).unwrap_err();
    assert!(
        matches!(
            refused,
            MapReducePlanError::NoAttemptToSkip {
                start: 2,
                needed: 3
            }
        ),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("--max-attempts 3"),
        "{refused}"
    );
    // The default of 4 attempts leaves two to isolate.
    request.max_attempts = None;
    let planned = plan(&registry(), &request, Overwrite::Anything).unwrap();
    assert_eq!(planned.config.skip.max_records, 5);
    assert!(planned.config.params.get("skip.records.max").is_none());
    // A budget that is not a number is refused before anything is planned.
    let mut request = wordcount(dir.path(), &dir.path().join("out2"));
    request
        .params
        .insert("skip.records.max".into(), "lots".into());
    let refused = plan(&registry(), &request, Overwrite::Anything).unwrap_err();
    assert!(
        refused.to_string().contains("skip.records.max"),
        "{refused}"
    );
    assert!(!dir.path().join("out2").exists());
}

//! `--files`: the client's half of jobs that bring their code. The files are checked
//! and hashed before anything is planned (a missing one is a usage error, exit code 2,
//! before any cluster is touched), named in the job by their SHA-256, and uploaded,
//! streamed, to the coordinator's artifact store just before the job is submitted.
//! Workers fetch them from there (see `essaim_worker::job_files`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use essaim_registry::client::RegistryClient;
use essaim_worker::job_files::{JobFiles, check_job_file_name};

use crate::client::usage;

/// The `--files` option of MapReduce jobs.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JobFilesArgs {
    /// Files the job brings to the workers (comma-separated or repeated): each appears
    /// under its file name, or NAME for `PATH#NAME`, in the working directory of the
    /// streaming commands, so that they need not be installed on any worker. Uploaded
    /// once to the coordinator; each worker fetches and caches them by hash. With
    /// --mrjob, the script is shipped too.
    #[arg(long = "files", value_delimiter = ',', value_name = "PATH[#NAME]")]
    pub files: Vec<String>,
}

/// One file to ship: where it is here, the name it gets there, its hash.
#[derive(Debug, Clone)]
struct LocalJobFile {
    name: String,
    path: PathBuf,
    sha256: String,
}

/// The files a job ships, checked and hashed.
#[derive(Debug, Clone, Default)]
pub struct ShippedFiles(Vec<LocalJobFile>);

impl ShippedFiles {
    /// Checks and hashes the files of `--files` (and `extra`, an mrjob script, unless it
    /// is listed already); refuses a missing file, a directory, or two files of one
    /// name.
    pub fn hash(args: &JobFilesArgs, extra: Option<&Path>) -> anyhow::Result<Self> {
        let mut specs: Vec<(String, PathBuf)> = Vec::new();
        for spec in &args.files {
            let spec = spec.trim();
            if spec.is_empty() {
                continue;
            }
            let (path, name) = match spec.rsplit_once('#') {
                Some((path, name)) => (PathBuf::from(path), name.to_string()),
                None => (PathBuf::from(spec), file_name(Path::new(spec))?),
            };
            specs.push((name, path));
        }
        if let Some(script) = extra {
            let name = file_name(script)?;
            // Listed already under its name: only if it is the same file, else the
            // workers would run the other one.
            let same_file = |listed: &Path| {
                std::fs::canonicalize(listed).ok() == std::fs::canonicalize(script).ok()
            };
            match specs.iter().find(|(listed, _)| *listed == name) {
                None => specs.push((name, script.to_path_buf())),
                Some((_, listed)) if same_file(listed) => {}
                Some((_, listed)) => {
                    return Err(usage(format!(
                        "--mrjob {} and --files {} would both appear as `{name}`",
                        script.display(),
                        listed.display()
                    )));
                }
            }
        }
        let mut files: Vec<LocalJobFile> = Vec::new();
        for (name, path) in specs {
            check_job_file_name(&name).map_err(|error| usage(format!("--files: {error}")))?;
            if let Some(other) = files.iter().find(|file| file.name == name) {
                return Err(usage(format!(
                    "--files: `{}` and `{}` would both appear as `{name}`; rename one with \
                     PATH#NAME",
                    other.path.display(),
                    path.display()
                )));
            }
            let sha256 = hash_file(&path)?;
            files.push(LocalJobFile { name, path, sha256 });
        }
        Ok(Self(files))
    }

    /// Returns true when the job ships nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns what the job's configuration names: name → SHA-256.
    pub fn names_to_hashes(&self) -> JobFiles {
        self.0
            .iter()
            .map(|file| (file.name.clone(), file.sha256.clone()))
            .collect::<BTreeMap<_, _>>()
    }

    /// Uploads every file, streamed, to the artifact store of the first coordinator of
    /// `coordinators` (comma-separated URLs) that takes it. An artifact already stored
    /// is stored again at no harm (same name, same bytes).
    pub async fn upload(
        &self,
        coordinators: &str,
        token: Option<&str>,
        trust: &essaim_tls::ClientTrust,
    ) -> anyhow::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let actor = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        let mut clients = Vec::new();
        for url in coordinators
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
        {
            clients.push(RegistryClient::new_trusting(url, token, &actor, trust)?);
        }
        for file in &self.0 {
            upload_one(&clients, file).await?;
        }
        Ok(())
    }
}

/// Uploads one file to the first coordinator that takes it (a standby refuses).
async fn upload_one(clients: &[RegistryClient], file: &LocalJobFile) -> anyhow::Result<()> {
    let mut last_error = None;
    for client in clients {
        match client.upload_file(&file.path).await {
            Ok(stored) if stored.sha256 == file.sha256 => return Ok(()),
            Ok(stored) => anyhow::bail!(
                "job file `{}` changed while the job was submitted (sha256 {} when planned, \
                 {} when uploaded)",
                file.path.display(),
                file.sha256,
                stored.sha256
            ),
            Err(error) => last_error = Some(error),
        }
    }
    let error = last_error.map_or_else(|| anyhow::anyhow!("no coordinator URL given"), Into::into);
    Err(error.context(format!(
        "failed to upload job file `{}` to the coordinator's artifact store",
        file.path.display()
    )))
}

/// Returns the last component of `path` as the name a file appears under.
fn file_name(path: &Path) -> anyhow::Result<String> {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .ok_or_else(|| usage(format!("--files: `{}` names no file", path.display())))
}

/// Returns the SHA-256 of a regular file, read in chunks; a usage error when it is
/// missing or not a file.
fn hash_file(path: &Path) -> anyhow::Result<String> {
    let metadata = std::fs::metadata(path)
        .map_err(|error| usage(format!("--files: `{}`: {error}", path.display())))?;
    if !metadata.is_file() {
        return Err(usage(format!(
            "--files: `{}` is not a regular file (ship the files of a directory one by one)",
            path.display()
        )));
    }
    let file = std::fs::File::open(path)
        .map_err(|error| usage(format!("--files: `{}`: {error}", path.display())))?;
    let hashed = essaim_registry::artifacts::hash_reader(file)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    Ok(hashed.sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(files: &[&str]) -> JobFilesArgs {
        JobFilesArgs {
            files: files.iter().map(|file| file.to_string()).collect(),
        }
    }

    #[test]
    fn files_are_named_hashed_and_refused_when_missing_or_ambiguous() {
        let dir = tempfile::tempdir().unwrap();
        let map = dir.path().join("map.py");
        std::fs::write(&map, "print('hi')\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let other = dir.path().join("sub/map.py");
        std::fs::write(&other, "other\n").unwrap();
        let map_arg = map.to_str().unwrap();
        let other_arg = other.to_str().unwrap();

        let renamed = format!("{other_arg}#helper.py");
        let shipped = ShippedFiles::hash(&args(&[map_arg, &renamed]), Some(&map)).unwrap();
        let names = shipped.names_to_hashes();
        assert_eq!(names.keys().collect::<Vec<_>>(), ["helper.py", "map.py"]);
        assert_eq!(
            names["map.py"],
            essaim_registry::artifacts::sha256_hex(b"print('hi')\n")
        );

        let missing = dir.path().join("nope.py");
        let sub = dir.path().join("sub");
        let refused = [
            (vec![missing.to_str().unwrap()], "nope.py"),
            (vec![map_arg, other_arg], "would both appear as `map.py`"),
            (vec![sub.to_str().unwrap()], "not a regular file"),
        ];
        for (files, fragment) in refused {
            let error = ShippedFiles::hash(&args(&files), None).unwrap_err();
            assert!(error.is::<crate::client::UsageError>(), "{error}");
            assert!(error.to_string().contains(fragment), "{error}");
        }
        let bad_name = format!("{map_arg}#..");
        let error = ShippedFiles::hash(&args(&[&bad_name]), None).unwrap_err();
        assert!(error.to_string().contains("not allowed"), "{error}");
    }
}

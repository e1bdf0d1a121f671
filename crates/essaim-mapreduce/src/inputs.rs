//! The input files of a job, with their sizes and whether the split size may cut them:
//! local files, directories and globs ([`crate::plan::expand_inputs`]), and object
//! prefixes (`s3://bucket/prefix`, listed with [`essaim_storage::object::list_inputs`]
//! under the same rules: markers and hidden names skipped).
//!
//! A compressed file is never cut (see [`essaim_storage::codec`]). Its name says so, or
//! else its first bytes, which are read only for files the split size would cut: a
//! smaller file is one split anyway, and 100,000 small files cost no extra read.

use std::path::PathBuf;

use essaim_storage::object::{list_inputs, object_codec};
use essaim_storage::{Location, S3Options};

use crate::packing::InputFile;
use crate::plan::{PlanError, expand_inputs};

/// Expands `inputs` (local ones first, in path order, then object prefixes in the order
/// given, each listed in key order) into sized input files.
pub fn expand_input_files(
    inputs: &[String],
    storage: &S3Options,
    split_bytes: u64,
) -> Result<Vec<InputFile>, PlanError> {
    let (objects, local): (Vec<&String>, Vec<&String>) = inputs
        .iter()
        .partition(|input| input.starts_with(essaim_storage::location::S3_SCHEME));
    if inputs.is_empty() {
        return Err(PlanError::NoInput);
    }
    let mut files = Vec::new();
    if !local.is_empty() {
        let local: Vec<String> = local.into_iter().cloned().collect();
        for path in expand_inputs(&local)? {
            files.push(local_file(path, split_bytes)?);
        }
    }
    for input in objects {
        let Location::S3 { bucket, key } = Location::parse(input)? else {
            unreachable!("an s3:// input parses as an object location");
        };
        let listed = list_inputs(&bucket, &key, storage)?;
        if listed.is_empty() {
            return Err(PlanError::MissingInput(input.clone()));
        }
        for object in listed {
            let could_be_cut = object.size > split_bytes;
            let codec = object_codec(&bucket, &object.key, could_be_cut, storage)?;
            let location = Location::S3 {
                bucket: bucket.clone(),
                key: object.key,
            };
            files.push(InputFile {
                path: location.to_path(),
                size: object.size,
                splittable: codec.is_none(),
            });
        }
    }
    Ok(files)
}

/// Sizes a local file and finds whether it is compressed.
fn local_file(path: PathBuf, split_bytes: u64) -> Result<InputFile, PlanError> {
    let size = std::fs::metadata(&path)
        .map_err(|error| PlanError::UnreadableInput {
            path: path.clone(),
            error,
        })?
        .len();
    let could_be_cut = size > split_bytes;
    let codec = essaim_storage::input::local_codec(&path, could_be_cut)?;
    Ok(InputFile {
        path,
        size,
        splittable: codec.is_none(),
    })
}

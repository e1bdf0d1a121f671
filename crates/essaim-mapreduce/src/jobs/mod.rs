//! The built-in jobs every worker knows, each a [`JobDefinition`] registered under its
//! command-line name by [`builtin_jobs`].
//!
//! | job | what it does | output line |
//! |---|---|---|
//! | [`wordcount`] | counts words (runs of non-whitespace bytes) | `word<TAB>count` |
//! | [`grep`] | lines matching a regex, numbered within their file | `path:line:text` |
//! | [`index`] | inverted index | `term<TAB>path1,path2,…` |
//! | [`dedup`] | groups of identical files or lines | `signature<TAB>count<TAB>members` |
//! | [`join`] | reduce-side equi-join of two CSV inputs | joined row |
//! | [`rollup`] | sales totals at a taxonomy level, in exact cents | `category<TAB>total` |
//! | [`matvec`] | sparse matrix × vector, in two steps | `i<TAB>y_i` |
//! | [`rownorms`] | the Euclidean norm of every row of a sparse matrix | `i<TAB>‖A_i‖` |
//! | [`cosine`] | cosine similarity of a vector and every row, in two steps | `i<TAB>cos_i` |
//! | [`sort`] | total order of lines by key, range-partitioned | the line |
//! | [`validate`] (`sort-validate`) | checks sortedness, fingerprints the lines | report |
//!
//! The three matrix jobs share their input format and exact sums in [`matrix`].
//! [`teragen`] writes the sort benchmark's input, [`matrix::generate`] a matrix and a
//! vector. Each job's module documents its parameters, its output format, and why it
//! is built the way it is; each is tested
//! against [`crate::testing::run_in_memory`] on small inputs. Jobs refuse missing or
//! malformed parameters in [`JobDefinition::validate`] with a permanent error naming
//! the parameter, and malformed input with a permanent error naming the file and
//! offset; none panics on bad input.

pub mod common;
pub mod csv;
pub mod dedup;
pub mod grep;
pub mod index;
pub mod join;
pub mod matrix;
pub mod rollup;
pub mod sort;
pub mod teragen;
pub mod validate;
pub mod wordcount;

use std::sync::Arc;

use crate::api::JobDefinition;

pub use matrix::{cosine, matvec, rownorms};
pub use sort::sample_cut_points;
pub use teragen::{GeneratedFiles, generate_sort_input};

/// Returns one instance of every built-in job, each under its command-line name.
pub fn builtin_jobs() -> Vec<Arc<dyn JobDefinition>> {
    vec![
        Arc::new(wordcount::WordCount),
        Arc::new(grep::Grep),
        Arc::new(index::InvertedIndex),
        Arc::new(dedup::Dedup),
        Arc::new(join::Join),
        Arc::new(rollup::Rollup),
        Arc::new(matvec::MatVec),
        Arc::new(rownorms::RowNorms),
        Arc::new(cosine::Cosine),
        Arc::new(sort::Sort),
        Arc::new(validate::SortValidate),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::api::JobParams;

    #[test]
    fn builtin_job_names_are_unique_and_described() {
        let jobs = builtin_jobs();
        let names: BTreeSet<&str> = jobs.iter().map(|job| job.name()).collect();
        assert_eq!(names.len(), jobs.len());
        assert_eq!(
            names,
            BTreeSet::from([
                "cosine",
                "dedup",
                "grep",
                "index",
                "join",
                "matvec",
                "rollup",
                "rownorms",
                "sort",
                "sort-validate",
                "wordcount"
            ])
        );
        assert!(jobs.iter().all(|job| !job.description().is_empty()));
    }

    #[test]
    fn jobs_with_required_parameters_refuse_an_empty_parameter_set() {
        for job in builtin_jobs() {
            let needs_parameters =
                ["grep", "join", "rollup", "matvec", "cosine"].contains(&job.name());
            let result = job.validate(&JobParams::default());
            assert_eq!(result.is_err(), needs_parameters, "{}", job.name());
            if let Err(error) = result {
                assert!(!error.retryable);
                assert!(error.message.contains('`'), "names the parameter: {error}");
            }
        }
    }
}

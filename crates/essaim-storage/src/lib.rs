//! Where essaim's batch jobs read and write their data.
//!
//! One owner for "how do I read this input" and "how do I write this output", so that
//! the MapReduce data path never asks what kind of file it holds:
//!
//! | module | concept |
//! |---|---|
//! | [`codec`] | gzip, Zstandard and bzip2: detection by name or magic number, decoders, encoders |
//! | [`location`] | [`Location`]: a local path or `s3://bucket/prefix` |
//! | [`input`] | an input (file or object) opened at a byte offset, decoded when compressed; corrupt data told apart from I/O errors |
//! | [`output`] | [`OutputDir`]: parts written aside, published all at once with `_SUCCESS`, on a file system or in a bucket |
//! | [`side_files`] | files published beside the parts, in a folder of the output, by the same steps |
//! | [`object`] | S3 and S3-compatible stores: configuration from `AWS_*` and the job's [`S3Options`], listing, the storage runtime |
//! | [`error`] | [`StorageError`], retryable or not |
//!
//! The data path of a MapReduce task is synchronous (it runs on blocking threads), so
//! this crate's API is too; object-store calls run on a small runtime of its own (see
//! [`object`]).
#![warn(missing_docs)]

pub mod codec;
pub mod error;
pub mod input;
pub mod location;
pub mod object;
mod object_read;
pub mod output;
pub mod side_files;

pub use codec::Codec;
pub use error::StorageError;
pub use input::InputReader;
pub use location::Location;
pub use object::S3Options;
pub use output::OutputDir;

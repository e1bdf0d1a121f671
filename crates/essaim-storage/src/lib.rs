//! Where essaim's batch jobs read and write their data.
//!
//! One owner for "how do I read this input" and "how do I write this output", so that
//! the MapReduce data path never asks what kind of file it holds:
//!
//! | module | concept |
//! |---|---|
//! | [`codec`] | gzip, Zstandard and bzip2: detection by name or magic number, decoders, encoders |
//! | [`input`] | an input opened at a byte offset, decoded when compressed; corrupt data told apart from I/O errors |
//! | [`error`] | [`StorageError`], retryable or not |
#![warn(missing_docs)]

pub mod codec;
pub mod error;
pub mod input;

pub use codec::Codec;
pub use error::StorageError;
pub use input::InputReader;

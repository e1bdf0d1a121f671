//! A streaming pipeline spec (TOML) is accepted or refused with an error, never a panic,
//! and the error has something to say; a spec that is accepted has a canonical text (its
//! fingerprint's input), the same for every run.
#![no_main]
use essaim_stream::spec::{PipelineSpec, canonical_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match PipelineSpec::from_toml(text) {
        Err(error) => assert!(!error.to_string().is_empty()),
        Ok(_) => {
            let canonical = canonical_text(text).expect("an accepted spec is TOML");
            assert_eq!(canonical_text(text).ok(), Some(canonical));
        }
    }
});

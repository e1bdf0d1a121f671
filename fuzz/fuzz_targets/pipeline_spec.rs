//! A streaming pipeline spec (TOML) is accepted or refused with an error, never a panic,
//! and the error has something to say.
#![no_main]
use essaim_stream::spec::PipelineSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(error) = PipelineSpec::from_toml(text) {
        assert!(!error.to_string().is_empty());
    }
});

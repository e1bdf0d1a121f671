//! A journal record read back from disk must decode or fail cleanly, never panic, and a
//! decoded event must re-encode to bytes that decode and re-encode identically (bytes,
//! not values, are compared: a NaN multiplier is not equal to itself).
#![no_main]
use essaim_core::JournalEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = postcard::from_bytes::<JournalEvent>(data) {
        let bytes = postcard::to_allocvec(&event).expect("a decoded event encodes");
        let again: JournalEvent = postcard::from_bytes(&bytes).expect("re-encoded event decodes");
        let bytes_again = postcard::to_allocvec(&again).expect("a decoded event encodes");
        assert_eq!(bytes, bytes_again);
    }
});

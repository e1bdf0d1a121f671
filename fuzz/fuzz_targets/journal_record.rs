//! A journal record read back from disk must decode or fail cleanly, never panic, and a
//! decoded event must re-encode to bytes that decode to the same event.
#![no_main]
use essaim_core::JournalEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = postcard::from_bytes::<JournalEvent>(data) {
        let bytes = postcard::to_allocvec(&event).expect("a decoded event encodes");
        let again: JournalEvent = postcard::from_bytes(&bytes).expect("re-encoded event decodes");
        assert_eq!(event, again);
    }
});

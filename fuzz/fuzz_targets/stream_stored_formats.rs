//! Stream checkpoints come back from PostgreSQL and shuffle batches from JetStream,
//! possibly written by another build: their decoders must accept or refuse any bytes
//! (a wrong magic, an unknown version, a corrupt body, headerless data), never panic,
//! and a batch they accept must encode, decode and encode to the same bytes (bytes, not
//! values: a record may hold NaN, which is not equal to itself).
#![no_main]
use essaim_stream_runtime::shuffle;
use essaim_stream_runtime::unit::state::decode_checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_checkpoint(data);
    if let Ok(batch) = shuffle::decode(data) {
        let encoded = shuffle::encode(&batch).expect("a decoded batch encodes");
        let again = shuffle::decode(&encoded).expect("an encoded batch decodes");
        let encoded_again = shuffle::encode(&again).expect("a decoded batch encodes");
        assert_eq!(encoded_again, encoded);
    }
});

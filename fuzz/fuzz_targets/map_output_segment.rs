//! Map output bytes come from other workers' disks and networks: a segment, a stream of
//! chunks, or a footer must decode or fail with an error, never panic, and never
//! allocate more than the bytes justify. A segment the streaming verifier accepts must
//! also be accepted block by block by the reader, unless its LZ4 data is invalid.
#![no_main]
use essaim_mapreduce::format::{
    FormatError, SegmentReader, SegmentVerifier, decode_footer, footer_len,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut read_error = None;
    match SegmentReader::new(data, "fuzz".into()) {
        Ok(mut reader) => loop {
            match reader.advance() {
                Ok(true) => {
                    let _ = (reader.key().len(), reader.value().len());
                }
                Ok(false) => break,
                Err(error) => {
                    read_error = Some(error);
                    break;
                }
            }
        },
        Err(error) => read_error = Some(error),
    }

    // The same bytes in two chunks, cut where the first byte says.
    let cut = data
        .first()
        .map_or(0, |first| usize::from(*first) % (data.len() + 1));
    let mut verifier = SegmentVerifier::new("fuzz".into());
    let verified = verifier
        .update(&data[..cut])
        .and_then(|()| verifier.update(&data[cut..]))
        .and_then(|()| verifier.finish());
    if verified.is_ok() {
        // Only record framing and LZ4 are checked by the reader alone.
        assert!(
            matches!(read_error, None | Some(FormatError::Malformed { .. })),
            "verified but unreadable: {read_error:?}"
        );
    }

    if let Some((first, rest)) = data.split_first() {
        let partitions = u32::from(*first % 8) + 1;
        let footer_bytes = footer_len(partitions) as usize;
        if rest.len() >= footer_bytes {
            let _ = decode_footer(
                &rest[rest.len() - footer_bytes..],
                partitions,
                rest.len() as u64,
                "fuzz",
            );
        }
    }
});

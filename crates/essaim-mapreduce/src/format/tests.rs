use std::io::Cursor;

use super::*;
use essaim_core::rng::SeededRng;

/// Records of a file: (partition, key, value), sorted by partition.
type Records = Vec<(u32, Vec<u8>, Vec<u8>)>;

fn random_records(rng: &mut SeededRng, partitions: u32, count: usize) -> Records {
    let mut records: Records = (0..count)
        .map(|_| {
            let key_len = rng.below(20) as usize;
            // Mostly small values, sometimes one larger than a block.
            let value_len = if rng.below(500) == 0 {
                TARGET_BLOCK_BYTES + rng.below(1000) as usize
            } else {
                rng.below(200) as usize
            };
            (
                rng.below(u64::from(partitions)) as u32,
                rng.bytes(key_len, b"abcdefgh"),
                rng.bytes(value_len, b"0123456789 xyz\n\t\0\xff"),
            )
        })
        .collect();
    records.sort_by_key(|record| record.0);
    records
}

fn write_file(records: &Records, partitions: u32) -> (Vec<u8>, Vec<SegmentEntry>) {
    let mut writer = MapOutputWriter::new(Vec::new(), partitions);
    for (partition, key, value) in records {
        writer.write_record(*partition, key, value).unwrap();
    }
    let (bytes, entries, len) = writer.finish().unwrap();
    assert_eq!(len, bytes.len() as u64);
    (bytes, entries)
}

/// Reads every partition of a file through its footer, or returns the first error.
fn read_file(bytes: &[u8], partitions: u32) -> Result<Records, FormatError> {
    let footer_start = bytes.len().saturating_sub(footer_len(partitions) as usize);
    let entries = decode_footer(&bytes[footer_start..], partitions, bytes.len() as u64, "f")?;
    let mut records = Vec::new();
    for (partition, entry) in entries.iter().enumerate() {
        let segment = &bytes[entry.offset as usize..(entry.offset + entry.length) as usize];
        let mut reader = SegmentReader::new(Cursor::new(segment), format!("p{partition}"))?;
        while reader.advance()? {
            records.push((
                partition as u32,
                reader.key().to_vec(),
                reader.value().to_vec(),
            ));
        }
        if reader.records_read() != entry.records {
            return Err(FormatError::BadFooter {
                segment: "f".into(),
                reason: "record count".into(),
            });
        }
        let mut verifier = SegmentVerifier::new(format!("p{partition}"));
        for chunk in segment.chunks(7) {
            verifier.update(chunk)?;
        }
        assert_eq!(verifier.finish()?, entry.records);
    }
    Ok(records)
}

#[test]
fn records_round_trip_through_blocks_segments_and_footer() {
    for seed in 0..20 {
        let mut rng = SeededRng::new(seed);
        let partitions = 1 + rng.below(6) as u32;
        let count = rng.below(3000) as usize;
        let records = random_records(&mut rng, partitions, count);
        let (bytes, entries) = write_file(&records, partitions);
        assert_eq!(entries.len(), partitions as usize, "seed {seed}");
        assert_eq!(
            read_file(&bytes, partitions).unwrap(),
            records,
            "seed {seed}"
        );
    }
}

#[test]
fn an_empty_file_has_one_empty_segment_per_partition() {
    let (bytes, entries) = write_file(&Vec::new(), 3);
    assert!(
        entries
            .iter()
            .all(|entry| entry.records == 0 && entry.length == EMPTY_SEGMENT_BYTES)
    );
    assert_eq!(bytes.len() as u64, 3 * EMPTY_SEGMENT_BYTES + footer_len(3));
    assert!(read_file(&bytes, 3).unwrap().is_empty());
}

#[test]
fn every_flipped_byte_is_detected() {
    let mut rng = SeededRng::new(7);
    // Compressible and incompressible blocks, several partitions, an empty one.
    let mut records = random_records(&mut rng, 3, 300);
    records.retain(|record| record.0 != 1);
    records.extend((0..50).map(|index| (2, b"k".to_vec(), vec![b'a'; index * 30])));
    records.sort_by_key(|record| record.0);
    let (bytes, _) = write_file(&records, 3);
    // Every byte of the (small) file, several flip patterns.
    assert!(bytes.len() < 200_000);
    for position in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut corrupt = bytes.clone();
            corrupt[position] ^= flip;
            assert!(
                read_file(&corrupt, 3).is_err(),
                "flip {flip:#x} at byte {position} of {} was not detected",
                bytes.len()
            );
        }
    }
}

#[test]
fn truncation_at_any_length_is_an_error() {
    let mut rng = SeededRng::new(3);
    let records = random_records(&mut rng, 1, 200);
    let (bytes, entries) = write_file(&records, 1);
    let segment = &bytes[..entries[0].length as usize];
    for cut in 0..segment.len() {
        let truncated = &segment[..cut];
        let mut reader = SegmentReader::new(Cursor::new(truncated), "s".into());
        let read_error = loop {
            match reader.as_mut().map(|reader| reader.advance()) {
                Err(_) | Ok(Err(_)) => break true,
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => break false,
            }
        };
        assert!(read_error, "reader accepted a segment cut at {cut}");
        let mut verifier = SegmentVerifier::new("s".into());
        let verified = verifier.update(truncated).and_then(|()| verifier.finish());
        assert!(
            verified.is_err(),
            "verifier accepted a segment cut at {cut}"
        );
    }
}

#[test]
fn errors_name_the_segment_and_the_problem() {
    let (bytes, entries) = write_file(&vec![(0, b"k".to_vec(), b"v".to_vec())], 1);
    let segment = &bytes[..entries[0].length as usize];

    let mut wrong_magic = segment.to_vec();
    wrong_magic[0] = b'X';
    let error = SegmentReader::new(Cursor::new(wrong_magic), "map 3 partition 1".into())
        .err()
        .unwrap();
    assert!(matches!(error, FormatError::BadMagic { .. }));
    assert!(error.to_string().contains("map 3 partition 1"), "{error}");

    let mut wrong_version = segment.to_vec();
    wrong_version[4] = 9;
    let error = SegmentReader::new(Cursor::new(wrong_version), "s".into())
        .err()
        .unwrap();
    assert!(matches!(
        error,
        FormatError::UnsupportedVersion { found: 9, .. }
    ));

    let mut flipped = segment.to_vec();
    flipped[SEGMENT_HEADER_BYTES + BLOCK_HEADER_BYTES] ^= 1;
    let mut reader = SegmentReader::new(Cursor::new(flipped), "s".into()).unwrap();
    let error = reader.advance().unwrap_err();
    assert!(
        matches!(error, FormatError::Checksum { block: 0, .. }),
        "{error}"
    );
}

#[test]
fn varints_round_trip_and_refuse_overlong_input() {
    for value in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
        let mut bytes = Vec::new();
        put_varint(&mut bytes, value);
        let mut position = 0;
        assert_eq!(get_varint(&bytes, &mut position), Some(value));
        assert_eq!(position, bytes.len());
    }
    let mut position = 0;
    assert_eq!(get_varint(&[0x80; 11], &mut position), None);
    let mut position = 0;
    assert_eq!(get_varint(&[0x80], &mut position), None);
}

#[test]
fn the_writer_refuses_partitions_out_of_order() {
    let mut writer = MapOutputWriter::new(Vec::new(), 3);
    writer.write_record(2, b"a", b"").unwrap();
    assert!(writer.write_record(1, b"a", b"").is_err());
    assert!(writer.write_record(3, b"a", b"").is_err());
}

#[test]
fn the_footer_must_tile_the_file() {
    let (bytes, _) = write_file(&vec![(1, b"k".to_vec(), b"v".to_vec())], 2);
    let footer_start = bytes.len() - footer_len(2) as usize;
    let footer = &bytes[footer_start..];
    assert!(decode_footer(footer, 2, bytes.len() as u64, "f").is_ok());
    assert!(decode_footer(footer, 3, bytes.len() as u64, "f").is_err());
    assert!(decode_footer(footer, 2, bytes.len() as u64 + 1, "f").is_err());
    assert!(decode_footer(footer, 2, 10, "f").is_err());
}

/// What the fuzz target checks, on a budget the default suite can afford: mutated
/// segments (flips, cuts, insertions) never panic, and a segment with flipped bytes is
/// never read back as valid.
#[test]
fn twenty_thousand_mutated_segments_fail_cleanly() {
    let mut rng = SeededRng::new(11);
    let mut records = random_records(&mut rng, 1, 400);
    records.extend((0..100).map(|index| (0, b"same".to_vec(), vec![b'z'; index])));
    let (bytes, entries) = write_file(&records, 1);
    let segment = bytes[..entries[0].length as usize].to_vec();
    for round in 0..20_000 {
        let mut mutated = segment.clone();
        let only_flips = rng.below(3) != 0;
        if only_flips {
            for _ in 0..1 + rng.below(4) {
                let position = rng.below(mutated.len() as u64) as usize;
                mutated[position] ^= 1 + rng.below(255) as u8;
            }
        } else if rng.below(2) == 0 {
            mutated.truncate(rng.below(mutated.len() as u64) as usize);
        } else {
            let position = rng.below(mutated.len() as u64) as usize;
            mutated.insert(position, rng.below(256) as u8);
        }
        let mut verifier = SegmentVerifier::new("m".into());
        let verified = verifier.update(&mutated).and_then(|()| verifier.finish());
        let read = SegmentReader::new(mutated.as_slice(), "m".into()).and_then(|mut reader| {
            while reader.advance()? {}
            Ok(())
        });
        if only_flips && mutated != segment {
            assert!(
                verified.is_err(),
                "round {round}: verifier accepted flipped bytes"
            );
            assert!(
                read.is_err(),
                "round {round}: reader accepted flipped bytes"
            );
        }
    }
}

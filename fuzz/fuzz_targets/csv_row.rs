//! One CSV line (RFC 4180 quoting) splits into fields or is refused as malformed, never
//! a panic; unquoting never makes the fields longer than the line, and only an empty line
//! has no field.
#![no_main]
use essaim_mapreduce::jobs::csv::CsvSplitter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&separator, line)) = data.split_first() else { return };
    if separator == b'\n' || separator == b'"' || line.contains(&b'\n') {
        return;
    }
    let mut splitter = CsvSplitter::new(separator);
    if let Ok(fields) = splitter.split(line) {
        let total: usize = fields.iter().map(<[u8]>::len).sum();
        assert!(total <= line.len());
        // An empty line has no field (as Python's csv reads it); any other has one.
        assert!(!fields.is_empty() || line.is_empty());
    }
});

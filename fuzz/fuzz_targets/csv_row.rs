//! One CSV line (RFC 4180 quoting) splits into fields or is refused as malformed, never
//! a panic; unquoting never makes the fields longer than the line.
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
        assert!(!fields.is_empty());
    }
});

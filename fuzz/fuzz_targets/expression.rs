//! The expression language of pipeline operators: any text parses or is refused with an
//! error, never a panic, and a parsed expression names its fields sorted and once each.
#![no_main]
use essaim_stream::expr::Expr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(expr) = Expr::parse(text) {
        let fields = expr.fields();
        assert!(fields.windows(2).all(|pair| pair[0] < pair[1]));
    }
});

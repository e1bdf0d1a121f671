use super::*;
use essaim_core::rng::SeededRng;

fn eval(source: &str, record: &Record) -> Result<Value, EvalError> {
    Expr::parse(source).unwrap().eval(record)
}

fn flight() -> Record {
    Record::new(1, 0)
        .with("delay", 20)
        .with("distance", 1000)
        .with("ratio", 0.5)
        .with("origin", "ATL")
        .with("cancelled", false)
        .with("missing", Value::Null)
}

#[test]
fn precedence_is_or_then_and_then_not_then_comparison_then_arithmetic() {
    let expr = Expr::parse("a + b * c > 3 and not x or y").unwrap();
    assert_eq!(expr.to_string(), "((((a + (b * c)) > 3) and (not x)) or y)");
    let expr = Expr::parse("-a - -2 % 3").unwrap();
    assert_eq!(expr.to_string(), "((-a) - ((-2) % 3))");
}

#[test]
fn arithmetic_keeps_integers_exact_and_divides_as_floats() {
    let record = flight();
    assert_eq!(eval("delay + 1", &record), Ok(Value::Int(21)));
    assert_eq!(
        eval("delay * distance - 5", &record),
        Ok(Value::Int(19_995))
    );
    assert_eq!(eval("delay / 8", &record), Ok(Value::Float(2.5)));
    assert_eq!(eval("delay % 7", &record), Ok(Value::Int(6)));
    assert_eq!(eval("delay + ratio", &record), Ok(Value::Float(20.5)));
    assert_eq!(
        eval("origin + '-' + \"x\"", &record),
        Ok(Value::from("ATL-x"))
    );
    assert_eq!(eval("abs(0 - delay)", &record), Ok(Value::Int(20)));
    assert_eq!(eval("1.5e2 + 1e-1", &record), Ok(Value::Float(150.1)));
}

#[test]
fn overflow_division_by_zero_and_type_mismatches_are_errors() {
    let record = flight();
    for source in [
        "9223372036854775807 + 1",
        "-(0 - 9223372036854775807 - 1)",
        "delay / 0",
        "delay % 0",
        "ratio % 0.0",
        "origin > 3",
        "origin - 'a'",
        "not delay",
        "delay and true",
        "abs(origin)",
    ] {
        assert!(eval(source, &record).is_err(), "{source} should fail");
    }
}

#[test]
fn null_propagates_and_logic_is_three_valued() {
    let record = flight();
    assert_eq!(eval("missing + 1", &record), Ok(Value::Null));
    assert_eq!(eval("missing > 1", &record), Ok(Value::Null));
    assert_eq!(eval("absent_field == 1", &record), Ok(Value::Null));
    assert_eq!(eval("missing > 1 or true", &record), Ok(Value::Bool(true)));
    assert_eq!(
        eval("missing > 1 and false", &record),
        Ok(Value::Bool(false))
    );
    assert_eq!(eval("missing > 1 and true", &record), Ok(Value::Null));
    assert_eq!(eval("not (missing > 1)", &record), Ok(Value::Null));
    assert_eq!(
        eval("is_null(missing) and not is_null(delay)", &record),
        Ok(Value::Bool(true))
    );
    assert_eq!(
        eval("coalesce(missing, delay, 3)", &record),
        Ok(Value::Int(20))
    );
    // Short-circuit: the right side would be a type error.
    assert_eq!(
        eval("false and origin > 3", &record),
        Ok(Value::Bool(false))
    );
    assert_eq!(eval("true or origin > 3", &record), Ok(Value::Bool(true)));
}

#[test]
fn predicates_pass_only_on_true() {
    let record = flight();
    let test = |source: &str| Expr::parse(source).unwrap().test(&record);
    assert_eq!(test("delay > 15 and not cancelled"), Ok(true));
    assert_eq!(test("delay > 25"), Ok(false));
    assert_eq!(test("missing > 1"), Ok(false));
    assert!(test("delay").is_err());
}

#[test]
fn comparisons_cover_every_type() {
    let record = flight();
    assert_eq!(eval("origin == 'ATL'", &record), Ok(Value::Bool(true)));
    assert_eq!(eval("origin < 'BOS'", &record), Ok(Value::Bool(true)));
    assert_eq!(eval("delay >= 20.0", &record), Ok(Value::Bool(true)));
    assert_eq!(eval("cancelled != true", &record), Ok(Value::Bool(true)));
    assert_eq!(eval("ratio <= 0.25", &record), Ok(Value::Bool(false)));
}

#[test]
fn fields_lists_every_field_read_once() {
    let expr = Expr::parse("coalesce(b, a) + a > c and not is_null(b)").unwrap();
    assert_eq!(expr.fields(), vec!["a", "b", "c"]);
}

#[test]
fn parse_errors_say_where() {
    let cases = [
        ("delay >", 7, "unexpected end"),
        ("(a + b", 6, "expected `)`"),
        ("a + * b", 4, "expected a value"),
        ("a b", 2, "unexpected `b`"),
        ("'abc", 0, "unterminated string"),
        ("a # b", 2, "unexpected character"),
        ("nope(a)", 5, "unknown function"),
        ("is_null(a, b)", 13, "does not take 2"),
        ("1.2.3", 0, "malformed number"),
        ("99999999999999999999", 0, "malformed number"),
        ("a and or b", 6, "found `or`"),
    ];
    for (source, position, message) in cases {
        let error = Expr::parse(source).unwrap_err();
        assert_eq!(error.position, position, "{source}: {error}");
        assert!(error.message.contains(message), "{source}: {error}");
    }
}

#[test]
fn deep_nesting_and_long_chains_are_refused_not_overflowed() {
    let deep = format!("{}a{}", "(".repeat(1_000), ")".repeat(1_000));
    assert!(
        Expr::parse(&deep)
            .unwrap_err()
            .message
            .contains("nested deeper")
    );
    let nots = "not ".repeat(1_000) + "a";
    assert!(Expr::parse(&nots).is_err());
    let chain = vec!["a"; 1_000].join(" + ");
    assert!(
        Expr::parse(&chain)
            .unwrap_err()
            .message
            .contains("nested deeper")
    );
    let long = "a".repeat(MAX_SOURCE_LEN + 1);
    assert!(Expr::parse(&long).is_err());
    // Chains within the limit are fine.
    assert!(Expr::parse(&vec!["a"; 100].join(" and ")).is_ok());
}

/// Garbage of every kind: the parser returns, and so does evaluating what it accepts.
#[test]
fn random_garbage_never_panics_the_parser() {
    let pieces = [
        "a",
        "b",
        "1",
        "2.5",
        "1e",
        "e-",
        "'x",
        "\"y\"",
        "\\",
        "(",
        ")",
        ",",
        "+",
        "-",
        "*",
        "/",
        "%",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "=",
        "!",
        "and",
        "or",
        "not",
        "is_null",
        "coalesce",
        "abs",
        "true",
        "null",
        " ",
        "é",
        "\u{0}",
        "9223372036854775808",
        "0.",
    ];
    let record = flight().with("a", 3).with("b", "s");
    for seed in 0..20_000u64 {
        let mut rng = SeededRng::new(seed);
        let count = rng.below(16);
        let source: String = (0..count)
            .map(|_| pieces[rng.below(pieces.len() as u64) as usize])
            .collect();
        if let Ok(expr) = Expr::parse(&source) {
            let _ = expr.eval(&record);
            let reparsed = Expr::parse(&expr.to_string());
            assert_eq!(reparsed.as_ref(), Ok(&expr), "seed {seed}: `{source}`");
        }
        let bytes: Vec<u8> = (0..count * 2).map(|_| rng.next_u64() as u8).collect();
        let _ = Expr::parse(&String::from_utf8_lossy(&bytes));
    }
}

fn random_expr(rng: &mut SeededRng, depth: u32) -> Expr {
    let leaf = depth == 0 || rng.below(3) == 0;
    if leaf {
        return match rng.below(6) {
            0 => Expr::Literal(Value::Int(rng.below(1_000) as i64)),
            1 => Expr::Literal(Value::Float(rng.below(1_000) as f64 / 8.0)),
            2 => Expr::Literal(Value::Str(
                ["", "a\"b", "c\\d", "x\ny", "it's"][rng.below(5) as usize].into(),
            )),
            3 => Expr::Literal(
                [Value::Null, Value::Bool(true), Value::Bool(false)][rng.below(3) as usize].clone(),
            ),
            _ => Expr::Field(["a", "b", "delay", "_x1"][rng.below(4) as usize].into()),
        };
    }
    match rng.below(5) {
        0 => Expr::Not(Box::new(random_expr(rng, depth - 1))),
        1 => Expr::Neg(Box::new(random_expr(rng, depth - 1))),
        2 => {
            let arguments = (0..1 + rng.below(3))
                .map(|_| random_expr(rng, depth - 1))
                .collect();
            Expr::Call(Function::Coalesce, arguments)
        }
        3 => Expr::Call(Function::IsNull, vec![random_expr(rng, depth - 1)]),
        _ => {
            let ops = [
                BinaryOp::Or,
                BinaryOp::And,
                BinaryOp::Eq,
                BinaryOp::Ne,
                BinaryOp::Lt,
                BinaryOp::Le,
                BinaryOp::Gt,
                BinaryOp::Ge,
                BinaryOp::Add,
                BinaryOp::Sub,
                BinaryOp::Mul,
                BinaryOp::Div,
                BinaryOp::Rem,
            ];
            let op = ops[rng.below(ops.len() as u64) as usize];
            Expr::Binary(
                op,
                Box::new(random_expr(rng, depth - 1)),
                Box::new(random_expr(rng, depth - 1)),
            )
        }
    }
}

#[test]
fn printing_then_parsing_gives_back_the_same_tree() {
    for seed in 0..5_000 {
        let mut rng = SeededRng::new(seed);
        let expr = random_expr(&mut rng, 5);
        let printed = expr.to_string();
        assert_eq!(Expr::parse(&printed), Ok(expr), "seed {seed}: `{printed}`");
    }
}

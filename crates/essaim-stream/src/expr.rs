//! Expressions: the small, safe language of predicates and computed fields.
//!
//! Pipeline specs come from users, so an expression must not be able to loop, allocate
//! without bound, reach the outside world or crash the worker. This language has no
//! loops, no variables and no calls other than a fixed list; its parser is a
//! hand-written recursive descent with a nesting limit ([`MAX_DEPTH`]) and a length
//! limit ([`MAX_SOURCE_LEN`]), so garbage input is an error, never a panic or a stack
//! overflow. (A general-purpose crate such as an embedded scripting language would bring
//! loops, closures and a sandbox to configure; this grammar fits in one file and is easy
//! to audit.)
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | compare
//! compare := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum)?
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/" | "%") unary)*
//! unary   := "-" unary | primary
//! primary := INT | FLOAT | STRING | "true" | "false" | "null"
//!          | FIELD | FUNCTION "(" expr ("," expr)* ")" | "(" expr ")"
//! ```
//!
//! Functions: `is_null(e)`, `coalesce(e1, e2, …)` (the first non-null), `abs(e)`.
//! Strings take single or double quotes with `\\`, `\'`, `\"`, `\n`, `\t` escapes.
//!
//! Semantics, decided once here: null propagates through arithmetic and comparisons;
//! `and`, `or` and `not` follow three-valued (SQL) logic; a filter or a splitter branch
//! takes a record only when its predicate is exactly `true`. Integers stay integers under
//! `+ - * %` (overflow is an error, not a wrap); `/` always divides as floats; an integer
//! meets a float as a float; `+` concatenates strings. Type mismatches, division by zero
//! and overflow are [`EvalError`]s: the operator sends the record to its `error` output.

use std::fmt;

use crate::record::{Record, Value};

/// The deepest nesting the parser accepts: parentheses, calls and the operators of a
/// chain (`a + b + c` is two levels) count together.
pub const MAX_DEPTH: usize = 128;
/// The longest expression source the parser accepts, in bytes.
pub const MAX_SOURCE_LEN: usize = 4096;

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `or`
    Or,
    /// `and`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

impl BinaryOp {
    fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
        }
    }
}

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `is_null(e)`: whether `e` is null.
    IsNull,
    /// `coalesce(e1, …)`: the first non-null argument.
    Coalesce,
    /// `abs(e)`: the absolute value of a number.
    Abs,
}

impl Function {
    fn name(self) -> &'static str {
        match self {
            Function::IsNull => "is_null",
            Function::Coalesce => "coalesce",
            Function::Abs => "abs",
        }
    }

    fn from_name(name: &str) -> Option<Function> {
        match name {
            "is_null" => Some(Function::IsNull),
            "coalesce" => Some(Function::Coalesce),
            "abs" => Some(Function::Abs),
            _ => None,
        }
    }

    /// Returns whether `count` arguments suit the function.
    fn accepts(self, count: usize) -> bool {
        match self {
            Function::IsNull | Function::Abs => count == 1,
            Function::Coalesce => count >= 1,
        }
    }
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A constant.
    Literal(Value),
    /// The value of a field (null when absent).
    Field(String),
    /// `not e`
    Not(Box<Expr>),
    /// `-e`
    Neg(Box<Expr>),
    /// `a op b`
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `f(args)`
    Call(Function, Vec<Expr>),
}

/// An expression that does not parse. `position` is a byte offset in the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {position}: {message}")]
pub struct ParseError {
    /// Where the problem was found.
    pub position: usize,
    /// What was wrong.
    pub message: String,
}

/// An expression that failed on a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

impl Expr {
    /// Parses an expression.
    pub fn parse(source: &str) -> Result<Expr, ParseError> {
        if source.len() > MAX_SOURCE_LEN {
            return Err(ParseError {
                position: MAX_SOURCE_LEN,
                message: format!("expression longer than {MAX_SOURCE_LEN} bytes"),
            });
        }
        let tokens = tokenize(source)?;
        let mut parser = Parser {
            tokens,
            next: 0,
            depth: 0,
            source_len: source.len(),
        };
        let expr = parser.expr()?;
        match parser.peek() {
            None => Ok(expr),
            Some((position, token)) => Err(ParseError {
                position,
                message: format!("unexpected {token} after the end of the expression"),
            }),
        }
    }

    /// Returns the names of the fields the expression reads, sorted and without repeats.
    pub fn fields(&self) -> Vec<&str> {
        let mut names = Vec::new();
        self.collect_fields(&mut names);
        names.sort_unstable();
        names.dedup();
        names
    }

    fn collect_fields<'a>(&'a self, names: &mut Vec<&'a str>) {
        match self {
            Expr::Literal(_) => {}
            Expr::Field(name) => names.push(name),
            Expr::Not(inner) | Expr::Neg(inner) => inner.collect_fields(names),
            Expr::Binary(_, left, right) => {
                left.collect_fields(names);
                right.collect_fields(names);
            }
            Expr::Call(_, arguments) => {
                for argument in arguments {
                    argument.collect_fields(names);
                }
            }
        }
    }

    /// Evaluates the expression on a record.
    pub fn eval(&self, record: &Record) -> Result<Value, EvalError> {
        match self {
            Expr::Literal(value) => Ok(value.clone()),
            Expr::Field(name) => Ok(record.get(name).clone()),
            Expr::Not(inner) => match inner.eval(record)? {
                Value::Null => Ok(Value::Null),
                Value::Bool(boolean) => Ok(Value::Bool(!boolean)),
                other => Err(type_error("not", &other)),
            },
            Expr::Neg(inner) => match inner.eval(record)? {
                Value::Null => Ok(Value::Null),
                Value::Int(int) => int
                    .checked_neg()
                    .map(Value::Int)
                    .ok_or_else(|| EvalError(format!("integer overflow in -{int}"))),
                Value::Float(float) => Ok(Value::Float(-float)),
                other => Err(type_error("-", &other)),
            },
            Expr::Binary(BinaryOp::And, left, right) => logic(record, left, right, false),
            Expr::Binary(BinaryOp::Or, left, right) => logic(record, left, right, true),
            Expr::Binary(op, left, right) => binary(*op, left.eval(record)?, right.eval(record)?),
            Expr::Call(function, arguments) => call(*function, arguments, record),
        }
    }

    /// Evaluates a predicate: `Ok(true)` only when the expression is exactly `true`
    /// (null and `false` both reject; any other type is an error).
    pub fn test(&self, record: &Record) -> Result<bool, EvalError> {
        match self.eval(record)? {
            Value::Bool(boolean) => Ok(boolean),
            Value::Null => Ok(false),
            other => Err(EvalError(format!(
                "a predicate gave {}, not a bool",
                other.type_name()
            ))),
        }
    }
}

fn type_error(operation: &str, value: &Value) -> EvalError {
    EvalError(format!(
        "`{operation}` does not apply to {}",
        value.type_name()
    ))
}

/// `and` (`is_or` false) and `or` (`is_or` true) in three-valued logic, short-circuited
/// on the deciding value so that `not is_null(x) and x > 3` never compares a null.
fn logic(record: &Record, left: &Expr, right: &Expr, is_or: bool) -> Result<Value, EvalError> {
    let symbol = if is_or { "or" } else { "and" };
    let as_logic = |value: Value| match value {
        Value::Bool(boolean) => Ok(Some(boolean)),
        Value::Null => Ok(None),
        other => Err(type_error(symbol, &other)),
    };
    let left_value = as_logic(left.eval(record)?)?;
    // `true or …` is true and `false and …` is false whatever follows.
    if left_value == Some(is_or) {
        return Ok(Value::Bool(is_or));
    }
    let right_value = as_logic(right.eval(record)?)?;
    Ok(match (left_value, right_value) {
        (_, Some(deciding)) if deciding == is_or => Value::Bool(is_or),
        (Some(_), Some(_)) => Value::Bool(!is_or),
        _ => Value::Null,
    })
}

fn binary(op: BinaryOp, left: Value, right: Value) -> Result<Value, EvalError> {
    use std::cmp::Ordering;
    if left.is_null() || right.is_null() {
        return Ok(Value::Null);
    }
    let mismatch = || {
        EvalError(format!(
            "`{}` does not apply to {} and {}",
            op.symbol(),
            left.type_name(),
            right.type_name()
        ))
    };
    let overflow = || {
        EvalError(format!(
            "integer overflow in {left} {} {right}",
            op.symbol()
        ))
    };
    let ordering: Option<Ordering> = match (&left, &right) {
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => match (left.as_f64(), right.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => None,
        },
    };
    let compare = |accept: fn(Ordering) -> bool| match ordering {
        Some(found) => Ok(Value::Bool(accept(found))),
        None => Err(mismatch()),
    };
    match op {
        BinaryOp::Eq => compare(Ordering::is_eq),
        BinaryOp::Ne => compare(Ordering::is_ne),
        BinaryOp::Lt => compare(Ordering::is_lt),
        BinaryOp::Le => compare(Ordering::is_le),
        BinaryOp::Gt => compare(Ordering::is_gt),
        BinaryOp::Ge => compare(Ordering::is_ge),
        BinaryOp::Add => match (&left, &right) {
            (Value::Str(a), Value::Str(b)) => Ok(Value::Str(format!("{a}{b}"))),
            (Value::Int(a), Value::Int(b)) => {
                a.checked_add(*b).map(Value::Int).ok_or_else(overflow)
            }
            _ => float_op(&left, &right, |a, b| a + b).ok_or_else(mismatch),
        },
        BinaryOp::Sub => match (&left, &right) {
            (Value::Int(a), Value::Int(b)) => {
                a.checked_sub(*b).map(Value::Int).ok_or_else(overflow)
            }
            _ => float_op(&left, &right, |a, b| a - b).ok_or_else(mismatch),
        },
        BinaryOp::Mul => match (&left, &right) {
            (Value::Int(a), Value::Int(b)) => {
                a.checked_mul(*b).map(Value::Int).ok_or_else(overflow)
            }
            _ => float_op(&left, &right, |a, b| a * b).ok_or_else(mismatch),
        },
        BinaryOp::Div => {
            let (Some(a), Some(b)) = (left.as_f64(), right.as_f64()) else {
                return Err(mismatch());
            };
            if b == 0.0 {
                return Err(EvalError(format!("division by zero in {left} / {right}")));
            }
            Ok(Value::Float(a / b))
        }
        BinaryOp::Rem => match (&left, &right) {
            (Value::Int(_), Value::Int(0)) => {
                Err(EvalError(format!("division by zero in {left} % {right}")))
            }
            (Value::Int(a), Value::Int(b)) => {
                a.checked_rem(*b).map(Value::Int).ok_or_else(overflow)
            }
            _ => match (left.as_f64(), right.as_f64()) {
                (Some(_), Some(0.0)) => {
                    Err(EvalError(format!("division by zero in {left} % {right}")))
                }
                _ => float_op(&left, &right, |a, b| a % b).ok_or_else(mismatch),
            },
        },
        BinaryOp::And | BinaryOp::Or => unreachable!("logic operators are evaluated by `logic`"),
    }
}

/// Applies a float operation when both values are numbers; `None` otherwise.
fn float_op(left: &Value, right: &Value, apply: fn(f64, f64) -> f64) -> Option<Value> {
    Some(Value::Float(apply(left.as_f64()?, right.as_f64()?)))
}

fn call(function: Function, arguments: &[Expr], record: &Record) -> Result<Value, EvalError> {
    match function {
        Function::IsNull => {
            let [argument] = arguments else {
                return Err(EvalError("is_null takes one argument".into()));
            };
            Ok(Value::Bool(argument.eval(record)?.is_null()))
        }
        Function::Coalesce => {
            for argument in arguments {
                let value = argument.eval(record)?;
                if !value.is_null() {
                    return Ok(value);
                }
            }
            Ok(Value::Null)
        }
        Function::Abs => {
            let [argument] = arguments else {
                return Err(EvalError("abs takes one argument".into()));
            };
            match argument.eval(record)? {
                Value::Null => Ok(Value::Null),
                Value::Int(int) => int
                    .checked_abs()
                    .map(Value::Int)
                    .ok_or_else(|| EvalError(format!("integer overflow in abs({int})"))),
                Value::Float(float) => Ok(Value::Float(float.abs())),
                other => Err(type_error("abs", &other)),
            }
        }
    }
}

/// Prints an expression fully parenthesized, so that printing and parsing round-trip.
impl fmt::Display for Expr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(Value::Str(text)) => {
                formatter.write_str("\"")?;
                for character in text.chars() {
                    match character {
                        '"' => formatter.write_str("\\\"")?,
                        '\\' => formatter.write_str("\\\\")?,
                        '\n' => formatter.write_str("\\n")?,
                        '\t' => formatter.write_str("\\t")?,
                        other => write!(formatter, "{other}")?,
                    }
                }
                formatter.write_str("\"")
            }
            Expr::Literal(Value::Float(float)) => write!(formatter, "{float:?}"),
            Expr::Literal(value) => write!(formatter, "{value}"),
            Expr::Field(name) => formatter.write_str(name),
            Expr::Not(inner) => write!(formatter, "(not {inner})"),
            Expr::Neg(inner) => write!(formatter, "(-{inner})"),
            Expr::Binary(op, left, right) => write!(formatter, "({left} {} {right})", op.symbol()),
            Expr::Call(function, arguments) => {
                write!(formatter, "{}(", function.name())?;
                for (index, argument) in arguments.iter().enumerate() {
                    if index > 0 {
                        formatter.write_str(", ")?;
                    }
                    write!(formatter, "{argument}")?;
                }
                formatter.write_str(")")
            }
        }
    }
}

/// A lexical token.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    Symbol(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Int(int) => write!(formatter, "number {int}"),
            Token::Float(float) => write!(formatter, "number {float}"),
            Token::Str(_) => formatter.write_str("a string"),
            Token::Ident(name) => write!(formatter, "`{name}`"),
            Token::Symbol(symbol) => write!(formatter, "`{symbol}`"),
        }
    }
}

/// Symbols, longest first so that `<=` is not read as `<` then `=`.
const SYMBOLS: [&str; 14] = [
    "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "(", ")", ",",
];

fn tokenize(source: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = source.char_indices().peekable();
    while let Some(&(start, character)) = chars.peek() {
        if character.is_whitespace() {
            chars.next();
        } else if character.is_ascii_digit() {
            let mut end = start;
            let mut is_float = false;
            while let Some(&(index, next)) = chars.peek() {
                let exponent_sign = matches!(next, '+' | '-')
                    && source[..index].ends_with(['e', 'E'])
                    && is_float_exponent(&source[start..index]);
                if next.is_ascii_digit()
                    || next == '.'
                    || next == 'e'
                    || next == 'E'
                    || exponent_sign
                {
                    is_float |= !next.is_ascii_digit();
                    end = index + next.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let text = &source[start..end];
            let bad_number = || ParseError {
                position: start,
                message: format!("malformed number `{text}`"),
            };
            let token = if is_float {
                Token::Float(
                    text.parse()
                        .ok()
                        .filter(|float: &f64| float.is_finite())
                        .ok_or_else(bad_number)?,
                )
            } else {
                Token::Int(text.parse().map_err(|_| bad_number())?)
            };
            tokens.push((start, token));
        } else if character.is_alphabetic() || character == '_' {
            let mut end = start;
            while let Some(&(index, next)) = chars.peek() {
                if next.is_alphanumeric() || next == '_' {
                    end = index + next.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push((start, Token::Ident(source[start..end].to_owned())));
        } else if character == '"' || character == '\'' {
            chars.next();
            let mut text = String::new();
            loop {
                let Some((_, next)) = chars.next() else {
                    return Err(ParseError {
                        position: start,
                        message: "unterminated string".into(),
                    });
                };
                match next {
                    '\\' => {
                        let Some((escape_at, escaped)) = chars.next() else {
                            return Err(ParseError {
                                position: start,
                                message: "unterminated string".into(),
                            });
                        };
                        text.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            '\\' | '"' | '\'' => escaped,
                            other => {
                                return Err(ParseError {
                                    position: escape_at,
                                    message: format!("unknown escape `\\{other}`"),
                                });
                            }
                        });
                    }
                    closing if closing == character => break,
                    other => text.push(other),
                }
            }
            tokens.push((start, Token::Str(text)));
        } else {
            let rest = &source[start..];
            let Some(symbol) = SYMBOLS.iter().find(|symbol| rest.starts_with(**symbol)) else {
                return Err(ParseError {
                    position: start,
                    message: format!("unexpected character `{character}`"),
                });
            };
            for _ in 0..symbol.len() {
                chars.next();
            }
            tokens.push((start, Token::Symbol(symbol)));
        }
    }
    Ok(tokens)
}

/// Whether `text` (a number up to an `e`) may take a signed exponent next.
fn is_float_exponent(text: &str) -> bool {
    text.matches(['e', 'E']).count() == 1
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    depth: usize,
    source_len: usize,
}

impl Parser {
    fn peek(&self) -> Option<(usize, &Token)> {
        self.tokens
            .get(self.next)
            .map(|(position, token)| (*position, token))
    }

    fn position(&self) -> usize {
        self.peek()
            .map_or(self.source_len, |(position, _)| position)
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            position: self.position(),
            message: message.into(),
        }
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found = matches!(self.peek(), Some((_, Token::Symbol(found))) if *found == symbol);
        self.next += usize::from(found);
        found
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = matches!(self.peek(), Some((_, Token::Ident(found))) if found == keyword);
        self.next += usize::from(found);
        found
    }

    /// Enters one level of nesting. Every recursive rule and every operator of a chain
    /// goes through here, so the depth of the tree (which evaluation, printing and
    /// dropping walk recursively) is bounded, not only the depth of parentheses.
    fn descend(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("expression nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.descend()?;
        let entered_at = self.depth;
        let mut left = self.and()?;
        while self.eat_keyword("or") {
            self.descend()?;
            let right = self.and()?;
            left = Expr::Binary(BinaryOp::Or, Box::new(left), Box::new(right));
        }
        self.depth = entered_at - 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let entered_at = self.depth;
        let mut left = self.not()?;
        while self.eat_keyword("and") {
            self.descend()?;
            let right = self.not()?;
            left = Expr::Binary(BinaryOp::And, Box::new(left), Box::new(right));
        }
        self.depth = entered_at;
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.eat_keyword("not") {
            self.descend()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Expr, ParseError> {
        let left = self.sum()?;
        let operators = [
            ("==", BinaryOp::Eq),
            ("!=", BinaryOp::Ne),
            ("<=", BinaryOp::Le),
            (">=", BinaryOp::Ge),
            ("<", BinaryOp::Lt),
            (">", BinaryOp::Gt),
        ];
        for (symbol, op) in operators {
            if self.eat_symbol(symbol) {
                let right = self.sum()?;
                return Ok(Expr::Binary(op, Box::new(left), Box::new(right)));
            }
        }
        Ok(left)
    }

    fn sum(&mut self) -> Result<Expr, ParseError> {
        let entered_at = self.depth;
        let mut left = self.product()?;
        loop {
            let op = if self.eat_symbol("+") {
                BinaryOp::Add
            } else if self.eat_symbol("-") {
                BinaryOp::Sub
            } else {
                self.depth = entered_at;
                return Ok(left);
            };
            self.descend()?;
            let right = self.product()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn product(&mut self) -> Result<Expr, ParseError> {
        let entered_at = self.depth;
        let mut left = self.unary()?;
        loop {
            let op = if self.eat_symbol("*") {
                BinaryOp::Mul
            } else if self.eat_symbol("/") {
                BinaryOp::Div
            } else if self.eat_symbol("%") {
                BinaryOp::Rem
            } else {
                self.depth = entered_at;
                return Ok(left);
            };
            self.descend()?;
            let right = self.unary()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat_symbol("-") {
            self.descend()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Neg(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let Some((_, token)) = self.peek() else {
            return Err(self.error("unexpected end of expression"));
        };
        let token = token.clone();
        self.next += 1;
        match token {
            Token::Int(int) => Ok(Expr::Literal(Value::Int(int))),
            Token::Float(float) => Ok(Expr::Literal(Value::Float(float))),
            Token::Str(text) => Ok(Expr::Literal(Value::Str(text))),
            Token::Symbol("(") => {
                let inner = self.expr()?;
                if !self.eat_symbol(")") {
                    return Err(self.error("expected `)`"));
                }
                Ok(inner)
            }
            Token::Ident(name) => match name.as_str() {
                "true" => Ok(Expr::Literal(Value::Bool(true))),
                "false" => Ok(Expr::Literal(Value::Bool(false))),
                "null" => Ok(Expr::Literal(Value::Null)),
                "and" | "or" | "not" => {
                    self.next -= 1;
                    Err(self.error(format!("expected a value, found `{name}`")))
                }
                _ if self.eat_symbol("(") => self.call(&name),
                _ => Ok(Expr::Field(name)),
            },
            other => {
                self.next -= 1;
                Err(self.error(format!("expected a value, found {other}")))
            }
        }
    }

    /// Parses a call's arguments, the opening parenthesis already eaten.
    fn call(&mut self, name: &str) -> Result<Expr, ParseError> {
        let Some(function) = Function::from_name(name) else {
            return Err(self.error(format!("unknown function `{name}`")));
        };
        let mut arguments = vec![self.expr()?];
        while self.eat_symbol(",") {
            arguments.push(self.expr()?);
        }
        if !self.eat_symbol(")") {
            return Err(self.error("expected `,` or `)`"));
        }
        if !function.accepts(arguments.len()) {
            return Err(self.error(format!(
                "`{name}` does not take {} arguments",
                arguments.len()
            )));
        }
        Ok(Expr::Call(function, arguments))
    }
}

#[cfg(test)]
mod tests;

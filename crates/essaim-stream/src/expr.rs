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
        parse::parse(source)
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

mod parse;

#[cfg(test)]
mod tests;

//! The lexer and the recursive-descent parser of expressions (grammar in the parent
//! module's doc). Every recursive rule and every operator of a chain counts against
//! [`MAX_DEPTH`], so no input can overflow the stack here or in evaluation.

use std::fmt;

use super::{BinaryOp, Expr, Function, MAX_DEPTH, MAX_SOURCE_LEN, ParseError};
use crate::record::Value;

/// Parses an expression (see [`Expr::parse`]).
pub(super) fn parse(source: &str) -> Result<Expr, ParseError> {
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

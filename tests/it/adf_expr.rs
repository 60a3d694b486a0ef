//! Data Factory's expression language, as much of it as the shipped pipeline and
//! trigger use: the tests evaluate their expressions (the date a trigger passes, the
//! properties an activity receives, the If Condition on its outcome) the way Data
//! Factory would, instead of replacing them with values picked by hand.
//!
//! Supported: `@expr` (the whole value) and `@{expr}` interpolated in a string;
//! string and integer literals; `pipeline().parameters.X`, `trigger().outputs.X`,
//! `activity('name').output.…`; `formatDateTime(t, 'yyyy-MM-dd')`, `addDays(t, n)`,
//! `concat`, `string`, `equals`, `empty`, `if`. Anything else panics, so a new
//! expression in the shipped files has to be taught here before a test passes.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};

/// What an expression can see.
#[derive(Debug, Default, Clone)]
pub struct Scope {
    /// `pipeline().parameters`.
    pub parameters: Value,
    /// `trigger().outputs`.
    pub trigger_outputs: Value,
    /// Activity name → its `output` (e.g. `{"customOutput": …}`).
    pub activities: Value,
}

/// The value of a property as Data Factory evaluates it: `@expr`, a string with
/// `@{expr}` parts, or a literal.
pub fn evaluate(value: &Value, scope: &Scope) -> Value {
    match value {
        Value::String(s) if s.starts_with("@@") => json!(s[1..].to_string()),
        Value::String(s) if s.starts_with("@{") || s.contains("@{") => json!(interpolate(s, scope)),
        Value::String(s) if s.starts_with('@') => expression(&s[1..], scope),
        Value::Object(map) if map.get("type") == Some(&json!("Expression")) => {
            evaluate(&map["value"], scope)
        }
        other => other.clone(),
    }
}

fn interpolate(text: &str, scope: &Scope) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // The matching brace: none of the shipped expressions hold a `}` in a literal.
        let end = after.find('}').expect("`@{` without `}`");
        out.push_str(&to_text(&expression(&after[..end], scope)));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Int(i64),
    Open,
    Close,
    Comma,
    Dot,
}

fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1
            }
            ')' => {
                out.push(Token::Close);
                i += 1
            }
            ',' => {
                out.push(Token::Comma);
                i += 1
            }
            '.' => {
                out.push(Token::Dot);
                i += 1
            }
            '?' if chars.get(i + 1) == Some(&'.') => {
                out.push(Token::Dot);
                i += 2
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match (chars.get(i), chars.get(i + 1)) {
                        (Some('\''), Some('\'')) => {
                            s.push('\'');
                            i += 2
                        }
                        (Some('\''), _) => {
                            i += 1;
                            break;
                        }
                        (Some(ch), _) => {
                            s.push(*ch);
                            i += 1
                        }
                        (None, _) => panic!("unterminated string in `{text}`"),
                    }
                }
                out.push(Token::Str(s));
            }
            '-' | '0'..='9' => {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                let n: String = chars[start..i].iter().collect();
                out.push(Token::Int(
                    n.parse().unwrap_or_else(|_| panic!("number `{n}`")),
                ));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Token::Ident(chars[start..i].iter().collect()));
            }
            other => panic!("unexpected `{other}` in `{text}`"),
        }
    }
    out
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    scope: &'a Scope,
}

impl Parser<'_> {
    fn next(&mut self) -> Token {
        let t = self
            .tokens
            .get(self.at)
            .cloned()
            .expect("expression ends early");
        self.at += 1;
        t
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn expr(&mut self) -> Value {
        let mut value = match self.next() {
            Token::Str(s) => json!(s),
            Token::Int(n) => json!(n),
            Token::Ident(name) => {
                assert_eq!(self.next(), Token::Open, "`{name}` is called");
                let mut args = Vec::new();
                if self.peek() != Some(&Token::Close) {
                    loop {
                        args.push(self.expr());
                        match self.next() {
                            Token::Comma => continue,
                            Token::Close => break,
                            t => panic!("{t:?} in the arguments of `{name}`"),
                        }
                    }
                } else {
                    self.next();
                }
                self.call(&name, args)
            }
            t => panic!("unexpected {t:?}"),
        };
        while self.peek() == Some(&Token::Dot) {
            self.next();
            let Token::Ident(field) = self.next() else {
                panic!("a property name after `.`")
            };
            value = value
                .get(&field)
                .cloned()
                .unwrap_or_else(|| panic!("no property `{field}` in {value}"));
        }
        value
    }

    fn call(&self, name: &str, args: Vec<Value>) -> Value {
        let text = |v: &Value| to_text(v);
        match (name, args.as_slice()) {
            ("pipeline", []) => json!({"parameters": self.scope.parameters}),
            ("trigger", []) => json!({"outputs": self.scope.trigger_outputs}),
            ("activity", [n]) => {
                let output = self.scope.activities.get(text(n)).cloned();
                json!({"output": output.unwrap_or_else(|| panic!("no output of activity {n}"))})
            }
            ("formatDateTime", [t, f]) => {
                assert_eq!(text(f), "yyyy-MM-dd", "only this format is taught");
                json!(instant(&text(t)).format("%Y-%m-%d").to_string())
            }
            ("addDays", [t, n]) => {
                let days = n.as_i64().expect("addDays takes a whole number");
                // Data Factory writes seven fractional digits.
                let t = instant(&text(t)) + chrono::Duration::days(days);
                json!(format!("{}0Z", t.format("%Y-%m-%dT%H:%M:%S%.6f")))
            }
            ("concat", parts) => json!(parts.iter().map(text).collect::<String>()),
            ("string", [v]) => json!(text(v)),
            ("equals", [a, b]) => json!(a == b),
            ("empty", [v]) => json!(match v {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                _ => false,
            }),
            ("if", [c, a, b]) => {
                if c.as_bool().expect("if takes a boolean") {
                    a.clone()
                } else {
                    b.clone()
                }
            }
            _ => panic!("`{name}` with {} arguments is not taught here", args.len()),
        }
    }
}

/// A timestamp as Data Factory reads one: ISO 8601 with or without a time. An
/// unparseable one is an error there too (the activity fails before it starts).
fn instant(text: &str) -> DateTime<Utc> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return t.with_timezone(&Utc);
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .unwrap_or_else(|_| panic!("`{text}` is not a timestamp Data Factory reads"));
    day.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

fn expression(text: &str, scope: &Scope) -> Value {
    let mut p = Parser {
        tokens: tokens(text),
        at: 0,
        scope,
    };
    let v = p.expr();
    assert_eq!(p.at, p.tokens.len(), "left over in `{text}`");
    v
}

#[test]
fn the_evaluator_follows_data_factorys_rules() {
    let scope = Scope {
        parameters: json!({"date": "2024-03-11"}),
        trigger_outputs: json!({"windowStartTime": "2024-03-11T00:00:00Z"}),
        activities: json!({"a": {"customOutput": {"exit_code": 3, "status": "quality_gate_failed"}}}),
    };
    let e = |s: &str| evaluate(&json!(s), &scope);
    assert_eq!(e("@{pipeline().parameters.date}"), json!("2024-03-11"));
    assert_eq!(
        e("@{formatDateTime(addDays(pipeline().parameters.date, -13), 'yyyy-MM-dd')}"),
        json!("2024-02-27"),
        "13 days before 11 March 2024 (a leap year) is 27 February"
    );
    assert_eq!(
        e("@{formatDateTime(trigger().outputs.windowStartTime, 'yyyy-MM-dd')}"),
        json!("2024-03-11")
    );
    assert_eq!(
        e("@equals(activity('a').output.customOutput.exit_code, 0)"),
        json!(false)
    );
    assert_eq!(
        e("@{concat('x ', activity('a').output.customOutput.status, ' ', string(activity('a').output.customOutput.exit_code))}"),
        json!("x quality_gate_failed 3")
    );
    assert_eq!(
        e("run @{pipeline().parameters.date}!"),
        json!("run 2024-03-11!")
    );
    assert_eq!(e("@if(empty(''), 'a', 'b')"), json!("a"));
    assert_eq!(
        e("@addDays('2024-03-01', -1)"),
        json!("2024-02-29T00:00:00.0000000Z")
    );
    assert_eq!(e("plain"), json!("plain"));
}

//! Layout templates (`telemetry/{yyyy}/{MM}/{dd}/{HH}/`): which prefixes hold a time window, and which partition a blob is in.
//!
//! Listing is driven by the template so a run lists only the time-partition
//! prefixes it needs, never the whole container. Besides the time tokens, a
//! template may hold name tokens (`{iothub}`, `{partition}`, `{*}`), each one
//! whole folder whose names are found by listing its parent folder, as IoT Hub
//! routing's `{iothub}/{partition}/{yyyy}/{MM}/{dd}/{HH}/{mm}` needs.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Timelike, Utc};

#[derive(Debug, thiserror::Error)]
#[error("layout `{layout}`: {message}")]
pub struct LayoutError {
    layout: String,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Token {
    Year,
    Month,
    Day,
    Hour,
    Minute,
}

impl Token {
    fn width(self) -> usize {
        match self {
            Token::Year => 4,
            _ => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Time(Token),
    /// One whole folder name, any value (`{iothub}`, `{partition}`, `{*}`).
    Name(String),
}

/// Name tokens: folders a template does not fix.
const NAME_TOKENS: [&str; 3] = ["iothub", "partition", "*"];

/// A parsed layout template.
#[derive(Debug, Clone)]
pub struct Layout {
    segments: Vec<Segment>,
    finest: Token,
}

/// A blob's time partition: `[start, start + width)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Its first instant.
    pub start: DateTime<Utc>,
    /// How long it spans (an hour, a day…, as the layout's finest token).
    pub width: Duration,
}

impl Partition {
    /// The instant after it: `start + width`.
    pub fn end(&self) -> DateTime<Utc> {
        self.start + self.width
    }
}

/// A template stays inside its source: relative, no `.` or `..` folders, no
/// empty folder names, no backslashes (which some stores read as separators).
fn check_segments(template: &str) -> Result<(), String> {
    if template.starts_with('/') {
        return Err("must be relative to the source (it starts with `/`)".into());
    }
    if template.contains('\\') {
        return Err("holds a `\\`; folders are separated by `/`".into());
    }
    let folders = template.strip_suffix('/').unwrap_or(template);
    for segment in folders.split('/') {
        match segment {
            "" => return Err("has an empty folder name (`//`)".into()),
            "." | ".." => {
                return Err(format!(
                    "has a `{segment}` folder; it must stay inside the source"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The template's literal text, folder-name tokens and time tokens, in order.
fn segments_of(template: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            segments.push(Segment::Literal(rest[..open].to_string()));
        }
        let close = rest[open..].find('}').ok_or("a `{` has no closing `}`")? + open;
        let inner = &rest[open + 1..close];
        if NAME_TOKENS.contains(&inner) {
            let before = &template[..template.len() - rest.len() + open];
            let before_ok = before.is_empty() || before.ends_with('/');
            let after_ok = rest[close + 1..].starts_with('/');
            if !before_ok || !after_ok {
                return Err(format!(
                    "{{{inner}}} must be a whole folder (`…/{{{inner}}}/…`)"
                ));
            }
            segments.push(Segment::Name(inner.to_string()));
        } else {
            let token = time_token(inner)?;
            if segments.contains(&Segment::Time(token)) {
                return Err(format!("token {token:?} appears twice"));
            }
            segments.push(Segment::Time(token));
        }
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Literal(rest.to_string()));
    }
    Ok(segments)
}

/// The time token `{inner}` names.
fn time_token(inner: &str) -> Result<Token, String> {
    match inner {
        "yyyy" => Ok(Token::Year),
        "MM" => Ok(Token::Month),
        "dd" => Ok(Token::Day),
        "HH" => Ok(Token::Hour),
        "mm" => Ok(Token::Minute),
        other => Err(format!(
            "unknown token `{{{other}}}` (known: {{yyyy}} {{MM}} {{dd}} {{HH}} {{mm}}, and folder names {{iothub}} {{partition}} {{*}})"
        )),
    }
}

/// The finest time token of a layout that has a year, a month and a day (and an
/// hour where it has minutes).
fn finest_of(segments: &[Segment]) -> Result<Token, String> {
    let has = |t| segments.contains(&Segment::Time(t));
    for (t, name) in [
        (Token::Year, "{yyyy}"),
        (Token::Month, "{MM}"),
        (Token::Day, "{dd}"),
    ] {
        if !has(t) {
            return Err(format!("needs {name}"));
        }
    }
    if has(Token::Minute) && !has(Token::Hour) {
        return Err("{mm} needs {HH}".into());
    }
    Ok(if has(Token::Minute) {
        Token::Minute
    } else if has(Token::Hour) {
        Token::Hour
    } else {
        Token::Day
    })
}

impl Layout {
    pub fn parse(template: &str) -> Result<Layout, LayoutError> {
        let err = |message: String| LayoutError {
            layout: template.to_string(),
            message,
        };
        check_segments(template).map_err(err)?;
        let segments = segments_of(template).map_err(err)?;
        let finest = finest_of(&segments).map_err(err)?;
        Ok(Layout { segments, finest })
    }

    /// The width of one time partition of this layout.
    pub fn partition_width(&self) -> Duration {
        match self.finest {
            Token::Minute => Duration::minutes(1),
            Token::Hour => Duration::hours(1),
            _ => Duration::days(1),
        }
    }

    /// The step between listed prefixes: hourly for hour and minute layouts (a
    /// minute layout is listed an hour at a time), daily for day layouts.
    fn list_step(&self) -> (Token, Duration) {
        if self.finest >= Token::Hour {
            (Token::Hour, Duration::hours(1))
        } else {
            (Token::Day, Duration::days(1))
        }
    }

    /// The distinct directory prefixes (relative to the source) that hold every
    /// partition overlapping `[from, to)`, in time order. Name tokens stay in
    /// them as `{name}`, for [`split_name`] and a listing to fill in.
    pub fn prefixes(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
        let (level, step) = self.list_step();
        let mut t = truncate(from, level);
        let mut out: Vec<String> = Vec::new();
        while t < to {
            let p = self.render_prefix(t, level);
            if out.last() != Some(&p) {
                out.push(p);
            }
            t += step;
        }
        out.dedup();
        out
    }

    /// Renders the template up to the first token finer than `level`, cut back to a directory.
    fn render_prefix(&self, t: DateTime<Utc>, level: Token) -> String {
        let mut s = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => s.push_str(l),
                Segment::Name(n) => {
                    s.push('{');
                    s.push_str(n);
                    s.push('}');
                }
                Segment::Time(tok) if *tok > level => break,
                Segment::Time(tok) => s.push_str(&render(t, *tok)),
            }
        }
        match s.rfind('/') {
            Some(i) => s.truncate(i + 1),
            None => s.clear(),
        }
        s
    }

    /// The time partition of a blob at `path` (relative to the source), or None
    /// when the path does not follow the layout.
    pub fn partition_of(&self, path: &str) -> Option<Partition> {
        let mut rest = path;
        let (mut y, mut mo, mut d, mut h, mut mi) = (0i32, 1u32, 1u32, 0u32, 0u32);
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Segment::Name(_) => {
                    let end = rest.find('/')?;
                    if end == 0 {
                        return None;
                    }
                    rest = &rest[end..];
                }
                Segment::Time(tok) => {
                    let w = tok.width();
                    let digits = rest.get(..w)?;
                    if !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let n: u32 = digits.parse().ok()?;
                    match tok {
                        Token::Year => y = n as i32,
                        Token::Month => mo = n,
                        Token::Day => d = n,
                        Token::Hour => h = n,
                        Token::Minute => mi = n,
                    }
                    rest = &rest[w..];
                }
            }
        }
        let start = NaiveDate::from_ymd_opt(y, mo, d)?.and_hms_opt(h, mi, 0)?;
        Some(Partition {
            start: Utc.from_utc_datetime(&start),
            width: self.partition_width(),
        })
    }
}

/// A prefix with a name token split at its first one: the folder to list, and
/// the rest of the prefix after the token (`hub/{partition}/2024/` →
/// `("hub/", "/2024/")`). None when the prefix has no name token left.
pub fn split_name(prefix: &str) -> Option<(&str, &str)> {
    let open = prefix.find('{')?;
    let close = prefix[open..].find('}')? + open;
    Some((&prefix[..open], &prefix[close + 1..]))
}

fn truncate(t: DateTime<Utc>, level: Token) -> DateTime<Utc> {
    let t = t.with_nanosecond(0).unwrap_or(t);
    let t = t.with_second(0).unwrap_or(t).with_minute(0).unwrap_or(t);
    if level == Token::Day {
        t.with_hour(0).unwrap_or(t)
    } else {
        t
    }
}

fn render(t: DateTime<Utc>, tok: Token) -> String {
    match tok {
        Token::Year => t.format("%Y").to_string(),
        Token::Month => t.format("%m").to_string(),
        Token::Day => t.format("%d").to_string(),
        Token::Hour => t.format("%H").to_string(),
        Token::Minute => t.format("%M").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn hourly_prefixes_cover_the_day_and_look_ahead() {
        let l = Layout::parse("telemetry/{yyyy}/{MM}/{dd}/{HH}/").unwrap();
        let p = l.prefixes(at("2024-03-11T00:00:00Z"), at("2024-03-12T02:00:00Z"));
        assert_eq!(p.len(), 26);
        assert_eq!(p[0], "telemetry/2024/03/11/00/");
        assert_eq!(p[23], "telemetry/2024/03/11/23/");
        assert_eq!(p[25], "telemetry/2024/03/12/01/");
    }

    #[test]
    fn hive_day_layout_lists_days() {
        let l = Layout::parse("telemetry/year={yyyy}/month={MM}/day={dd}/").unwrap();
        let p = l.prefixes(at("2024-03-11T00:00:00Z"), at("2024-03-12T02:00:00Z"));
        assert_eq!(
            p,
            vec![
                "telemetry/year=2024/month=03/day=11/",
                "telemetry/year=2024/month=03/day=12/"
            ]
        );
        let part = l
            .partition_of("telemetry/year=2024/month=03/day=12/part-0.json")
            .unwrap();
        assert_eq!(part.start, at("2024-03-12T00:00:00Z"));
        assert_eq!(part.width, Duration::days(1));
    }

    #[test]
    fn minute_layout_is_listed_hourly() {
        let l = Layout::parse("hub/{yyyy}/{MM}/{dd}/{HH}/{mm}").unwrap();
        let p = l.prefixes(at("2024-03-11T00:00:00Z"), at("2024-03-11T02:00:00Z"));
        assert_eq!(p, vec!["hub/2024/03/11/00/", "hub/2024/03/11/01/"]);
        let part = l.partition_of("hub/2024/03/11/01/07").unwrap();
        assert_eq!(part.start, at("2024-03-11T01:07:00Z"));
        assert_eq!(part.end(), at("2024-03-11T01:08:00Z"));
    }

    #[test]
    fn iot_hub_routing_layout_has_folder_name_tokens() {
        let l = Layout::parse("{iothub}/{partition}/{yyyy}/{MM}/{dd}/{HH}/{mm}").unwrap();
        let p = l.prefixes(at("2024-03-11T23:00:00Z"), at("2024-03-12T01:00:00Z"));
        assert_eq!(
            p,
            vec![
                "{iothub}/{partition}/2024/03/11/23/",
                "{iothub}/{partition}/2024/03/12/00/"
            ]
        );
        assert_eq!(split_name(&p[0]), Some(("", "/{partition}/2024/03/11/23/")));
        assert_eq!(
            split_name("plant-hub/{partition}/2024/"),
            Some(("plant-hub/", "/2024/"))
        );
        assert_eq!(split_name("plant-hub/3/2024/"), None);
        let part = l.partition_of("plant-hub/3/2024/03/12/00/59").unwrap();
        assert_eq!(part.start, at("2024-03-12T00:59:00Z"));
        assert_eq!(part.width, Duration::minutes(1));
        assert!(l.partition_of("plant-hub/2024/03/12/00/59").is_none());
        assert!(l.partition_of("plant-hub//3/2024/03/12/00/59").is_none());
        // A name token is a whole folder.
        assert!(Layout::parse("hub-{partition}/{yyyy}/{MM}/{dd}/").is_err());
        assert!(Layout::parse("hub/{partition}{yyyy}/{MM}/{dd}/").is_err());
        assert!(Layout::parse("raw/{*}/{yyyy}/{MM}/{dd}/").is_ok());
    }

    #[test]
    fn partition_of_reads_the_hour() {
        let l = Layout::parse("telemetry/{yyyy}/{MM}/{dd}/{HH}/").unwrap();
        let p = l
            .partition_of("telemetry/2024/03/11/23/0_abc_1.json")
            .unwrap();
        assert_eq!(p.start, at("2024-03-11T23:00:00Z"));
        assert_eq!(p.end(), at("2024-03-12T00:00:00Z"));
        assert!(l.partition_of("telemetry/2024/3/11/23/x.json").is_none());
        assert!(l.partition_of("reference/maintenance.csv").is_none());
        assert!(l.partition_of("telemetry/2024/02/30/01/x.json").is_none());
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(Layout::parse("telemetry/{yyyy}/{MM}/").is_err());
        assert!(Layout::parse("t/{yyyy}/{MM}/{dd}/{mm}").is_err());
        assert!(Layout::parse("t/{yyyy}/{MM}/{dd}/{hh}").is_err());
        assert!(Layout::parse("t/{yyyy}/{MM}/{dd").is_err());
    }

    #[test]
    fn templates_that_leave_the_source_are_refused_by_name() {
        for (template, says) in [
            ("telemetry/../{yyyy}/{MM}/{dd}/", "`..`"),
            ("../{yyyy}/{MM}/{dd}/", "`..`"),
            ("t/./{yyyy}/{MM}/{dd}/", "`.`"),
            ("/telemetry/{yyyy}/{MM}/{dd}/", "starts with `/`"),
            ("t//{yyyy}/{MM}/{dd}/", "empty folder"),
            ("t\\{yyyy}/{MM}/{dd}/", "`\\`"),
        ] {
            let err = Layout::parse(template).unwrap_err().to_string();
            assert!(
                err.contains(template) && err.contains(says),
                "{template}: {err}"
            );
        }
        // Hive folders and a trailing slash stay fine.
        assert!(Layout::parse("t/year={yyyy}/month={MM}/day={dd}/").is_ok());
        assert!(Layout::parse("t/{yyyy}/{MM}/{dd}").is_ok());
    }
}

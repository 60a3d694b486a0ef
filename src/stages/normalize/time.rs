//! Timestamps as producers write them → microseconds since the epoch, UTC.
//!
//! ISO-8601 with `Z`, an offset, or none (= UTC), `T` or a space, 0-9 fractional
//! digits (truncated to microseconds); or epoch seconds / milliseconds, as a
//! number or a numeric string (|value| ≥ 1e11 reads as milliseconds).

use super::trimmed;

/// Epoch values at or above this magnitude are milliseconds (1e11 s is the year 5138).
const MILLIS_THRESHOLD: f64 = 1e11;

/// Parses a timestamp string to µs since the epoch.
pub fn parse_str(s: &str) -> Result<i64, String> {
    let us = parse_any(s)?;
    within_years(us).ok_or_else(|| format!("`{}` is outside years 1 to 9999 (UTC)", trimmed(s)))
}

/// [`parse_str`] without the bound of years 1 to 9999.
fn parse_any(s: &str) -> Result<i64, String> {
    if let Some(us) = parse_utc_z(s.as_bytes()) {
        return Ok(us);
    }
    let t = trimmed(s);
    if t.is_empty() {
        return Err("empty timestamp".into());
    }
    if t.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && !t[1..].contains('-')
    {
        let v: f64 = t.parse().map_err(|_| format!("`{t}` is not a timestamp"))?;
        return from_epoch(v);
    }
    parse_iso(t).ok_or_else(|| format!("`{t}` is not an ISO-8601 timestamp"))
}

/// [`parse_str`], or Event Hubs Capture's .NET form ([`parse_dotnet_us`]): for
/// every timestamp but `event_time`, whose forms the contract lists (ISO-8601
/// or epoch). A day-first `11/3/2024` there would read as 3 November.
pub fn parse_str_or_dotnet(s: &str) -> Result<i64, String> {
    parse_str(s).or_else(|e| parse_dotnet_us(trimmed(s)).and_then(within_years).ok_or(e))
}

/// Event Hubs Capture's `EnqueuedTimeUtc`, .NET's invariant-culture UTC format:
/// `3/11/2024 10:15:30 AM` (month/day/year, 12-hour clock, optional fraction).
fn parse_dotnet_us(t: &str) -> Option<i64> {
    let (date, rest) = t.split_once(' ')?;
    let (clock, ampm) = rest.rsplit_once(' ')?;
    let mut d = date.split('/');
    let (mo, day, y) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || y.len() != 4 || mo.len() > 2 || day.len() > 2 {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(mo) || !digits(day) || !digits(y) {
        return None;
    }
    let mut c = clock.split(':');
    let (h, mi, sec) = (c.next()?, c.next()?, c.next()?);
    let (sec, frac) = sec.split_once('.').unwrap_or((sec, ""));
    if c.next().is_some() || !digits(h) || h.len() > 2 || mi.len() != 2 || sec.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    if !(1..=12).contains(&h) {
        return None;
    }
    let h = match ampm {
        "AM" | "am" => h % 12,
        "PM" | "pm" => h % 12 + 12,
        _ => return None,
    };
    // The date and time, in ISO form, through the one parser that knows every rule.
    let iso = format!(
        "{y}-{:0>2}-{:0>2}T{h:02}:{mi}:{sec}{}{frac}Z",
        mo,
        day,
        if frac.is_empty() { "" } else { "." }
    );
    parse_iso(&iso)
}

/// Parses an ISO-8601 timestamp only (no epoch numbers) to µs: for reference data and flags,
/// where `20240311` is far more likely a mistyped date than a 1970 instant.
pub fn parse_iso_only(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if !t.contains(':') {
        return Err(format!(
            "`{t}` is not an ISO-8601 timestamp (e.g. 2024-03-11T20:00:00Z)"
        ));
    }
    parse_iso(t).ok_or_else(|| format!("`{t}` is not an ISO-8601 timestamp"))
}

/// Epoch seconds or milliseconds (by magnitude) to µs.
pub fn from_epoch(v: f64) -> Result<i64, String> {
    if !v.is_finite() {
        return Err(format!("epoch value {v} is not finite"));
    }
    let us = if v.abs() >= MILLIS_THRESHOLD {
        v * 1e3
    } else {
        v * 1e6
    };
    // Year 1 to 9999 in µs, so the value fits every downstream timestamp type.
    if !(FIRST_US as f64..=LAST_US as f64).contains(&us) {
        return Err(format!("epoch value {v} is out of range"));
    }
    Ok(us.round() as i64)
}

/// Days from 1970-01-01 to a proleptic Gregorian date, `None` for a date that
/// does not exist (month 13, 30 February). Howard Hinnant's `days_from_civil`:
/// chrono's `NaiveDate::from_ymd_opt` and the instant built from it were 1.5 %
/// of a plant run's samples for the two timestamps of every record.
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > month_days {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The layout nearly every producer writes, `YYYY-MM-DDTHH:MM:SS[.f]Z` with 0-9
/// fractional digits, read at fixed offsets: the two timestamps of every record
/// were 6.2 % of a run's instructions through [`parse_str`]'s general path
/// (BENCHMARKS.md). `None` for anything else, valid or not: [`parse_str`] then
/// takes the general path, so this only ever gives what [`parse_iso`] would.
fn parse_utc_z(b: &[u8]) -> Option<i64> {
    if !(20..=30).contains(&b.len())
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[b.len() - 1] != b'Z'
    {
        return None;
    }
    let year = two(b, 0)? * 100 + two(b, 2)?;
    let (hour, minute, second) = (two(b, 11)?, two(b, 14)?, two(b, 17)?);
    let days = days_from_civil(i64::from(year), two(b, 5)?, two(b, 8)?)?;
    let mut micros = 0i64;
    if b.len() > 20 {
        // `.` and 1-9 digits before the `Z`; the first six are the microseconds.
        let fraction = &b[20..b.len() - 1];
        if b[19] != b'.' || fraction.is_empty() || fraction.len() > 9 {
            return None;
        }
        const SCALE: [i64; 6] = [100_000, 10_000, 1_000, 100, 10, 1];
        for (i, &c) in fraction.iter().enumerate() {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            micros += SCALE.get(i).map_or(0, |s| i64::from(d) * s);
        }
    }
    instant_us(days, [hour, minute, second], 0, micros)
}

/// The two ASCII digits at `b[i..i + 2]` as a number.
#[inline(always)]
fn two(b: &[u8], i: usize) -> Option<u32> {
    let (x, y) = (b[i].wrapping_sub(b'0'), b[i + 1].wrapping_sub(b'0'));
    (x < 10 && y < 10).then(|| u32::from(x) * 10 + u32::from(y))
}

fn parse_iso(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    // Two timestamps a record: digits are read in place, never through a `String`.
    let num = |from: usize, len: usize| -> Option<u32> {
        b.get(from..from + len)?.iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    // Date: YYYY-MM-DD
    if b.len() < 16 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let days = days_from_civil(i64::from(num(0, 4)?), num(5, 2)?, num(8, 2)?)?;
    if !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let (hour, minute) = (num(11, 2)?, num(14, 2)?);
    let mut i = 16;
    let mut second = 0;
    if b.get(i) == Some(&b':') {
        second = num(i + 1, 2)?;
        i += 3;
    }
    let mut micros: i64 = 0;
    if matches!(b.get(i), Some(b'.') | Some(b',')) {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        let digits = end - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        // Microseconds: the first six digits, padded with zeros (the rest cut off).
        let kept = digits.min(6);
        micros = i64::from(num(start, kept)?) * 10i64.pow(6 - kept as u32);
        i = end;
    }
    let offset_secs: i64 = match &t[i..] {
        "" | "Z" | "z" => 0,
        rest => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let r = &rest[1..];
            if !r.is_ascii() {
                return None;
            }
            let (h, m): (i64, i64) = match r.len() {
                2 => (r.parse().ok()?, 0),
                4 => (r[..2].parse().ok()?, r[2..].parse().ok()?),
                5 if r.as_bytes()[2] == b':' => (r[..2].parse().ok()?, r[3..].parse().ok()?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    instant_us(days, [hour, minute, second], offset_secs, micros)
}

/// The first and the last µs of years 1 to 9999 (UTC): every timestamp a record
/// gives lies between them, so that it fits every downstream timestamp type
/// (Synapse's `datetime2`, Python's `datetime`, which pyarrow and pandas hand
/// back). Reference logs and flags are not bound by it: a .NET "no date" with an
/// offset (`0001-01-01T00:00:00+01:00`) there is only a time long past.
const FIRST_US: i64 = -62_135_596_800_000_000;
const LAST_US: i64 = 253_402_300_799_999_999;

/// `us` when it lies within years 1 to 9999 in UTC (not year 0, nor an offset past either end).
fn within_years(us: i64) -> Option<i64> {
    (FIRST_US..=LAST_US).contains(&us).then_some(us)
}

/// µs since the epoch of a day, a clock time at `offset_secs` east of UTC and
/// the microseconds; `None` for a clock time that does not exist.
fn instant_us(
    days: i64,
    [hour, minute, second]: [u32; 3],
    offset_secs: i64,
    micros: i64,
) -> Option<i64> {
    // A leap second (:60) is refused, as chrono refuses it: it is not a valid instant.
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let clock = i64::from(hour * 3600 + minute * 60 + second);
    Some((days * 86_400 + clock - offset_secs) * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn us(s: &str) -> i64 {
        chrono_us(s).unwrap()
    }

    /// chrono's reading of an RFC 3339 timestamp, in µs since the epoch.
    fn chrono_us(text: &str) -> Option<i64> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_micros())
    }

    #[test]
    fn iso_variants() {
        let base = us("2024-03-11T10:15:30Z");
        assert_eq!(parse_str("2024-03-11T10:15:30Z").unwrap(), base);
        assert_eq!(
            parse_str("2024-03-11T10:15:30").unwrap(),
            base,
            "naive is UTC"
        );
        assert_eq!(parse_str("2024-03-11 10:15:30").unwrap(), base);
        assert_eq!(parse_str("2024-03-11T11:15:30+01:00").unwrap(), base);
        assert_eq!(parse_str("2024-03-11T05:15:30-0500").unwrap(), base);
        assert_eq!(parse_str("2024-03-11T12:15:30+02").unwrap(), base);
        assert_eq!(parse_str("2024-03-11T10:15Z").unwrap(), base - 30_000_000);
        assert_eq!(
            parse_str("2024-03-11T10:15:30.1234567Z").unwrap(),
            base + 123_456,
            "7 digits truncate to µs"
        );
        assert_eq!(parse_str("2024-03-11T10:15:30.5Z").unwrap(), base + 500_000);
        assert_eq!(parse_str("2024-03-11T10:15:30.Z").ok(), None);
    }

    /// A `.` and fewer than `max` random digits, or nothing (no digits).
    fn fraction(next: &mut impl FnMut(u64) -> u64, max: u64) -> String {
        let digits: String = (0..next(max))
            .map(|_| char::from(b'0' + next(10) as u8))
            .collect();
        if digits.is_empty() {
            digits
        } else {
            format!(".{digits}")
        }
    }

    #[test]
    fn iso_timestamps_agree_with_chrono_at_every_fraction_length() {
        let mut rng = crate::testing::Lcg(0x005E_ED0F_7135);
        let mut next = |n: u64| rng.below(n);
        for _ in 0..5_000 {
            let (y, mo, d) = (1970 + next(130), 1 + next(12), 1 + next(28));
            let (h, mi, sec) = (next(24), next(60), next(60));
            let fraction = fraction(&mut next, 10);
            let zone = ["Z", "+01:00", "-05:30", "+00:00"][next(4) as usize];
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}{fraction}{zone}");
            assert_eq!(Some(parse_str(&text).unwrap()), chrono_us(&text), "{text}");
        }
    }

    /// The fixed-offset path gives what the general one gives, or nothing: on
    /// the layouts it reads, and on each of them with one byte changed.
    #[test]
    fn the_fixed_layout_gives_the_general_answer_or_none() {
        let mut rng = crate::testing::Lcg(0x0F1C_5ED0);
        let mut next = |n: u64| rng.below(n);
        let bytes = b"0123456789-:.TZt +x";
        let mut taken = 0;
        for _ in 0..20_000 {
            let (y, mo, d) = (next(10_000), next(14), next(33));
            let (h, mi, sec) = (next(26), next(62), next(62));
            let fraction = fraction(&mut next, 11);
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}{fraction}Z");
            let mut variants = vec![text.clone().into_bytes()];
            let mut changed = text.into_bytes();
            let at = next(changed.len() as u64) as usize;
            changed[at] = bytes[next(bytes.len() as u64) as usize];
            variants.push(changed);
            for v in variants {
                let text = std::str::from_utf8(&v).unwrap();
                if let Some(us) = parse_utc_z(&v) {
                    taken += 1;
                    assert_eq!(parse_iso(text), Some(us), "{text}");
                    assert_eq!(chrono_us(text), Some(us), "{text}");
                }
            }
        }
        assert!(taken > 10_000, "the fixed layout was read {taken} times");
        for other in [
            "2024-03-11T10:15:30+00:00",
            " 2024-03-11T10:15:30Z",
            "2024-03-11t10:15:30Z",
            "2024-03-11T10:15:30.Z",
            "2024-03-11T10:15:30.1234567890Z",
        ] {
            assert_eq!(parse_utc_z(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn civil_days_agree_with_chrono_for_every_date_and_refuse_what_it_refuses() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let years = (0..=9999).filter(|y| y % 97 == 0 || (1890..=2110).contains(y));
        for y in years {
            for m in 0..=13 {
                for d in 0..=32 {
                    let want = chrono::NaiveDate::from_ymd_opt(y, m, d)
                        .map(|date| (date - epoch).num_days());
                    assert_eq!(days_from_civil(i64::from(y), m, d), want, "{y}-{m}-{d}");
                }
            }
        }
    }

    #[test]
    fn clock_edges_are_refused_as_chrono_refuses_them() {
        for bad in [
            "2024-03-11T24:00:00Z",
            "2024-03-11T23:60:00Z",
            "2024-03-11T23:59:60Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
        ] {
            assert!(parse_str(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            parse_str("2000-02-29T23:59:59Z").unwrap(),
            us("2000-02-29T23:59:59Z")
        );
        assert_eq!(
            parse_str("0001-01-01T00:00:00Z").unwrap(),
            us("0001-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_str("9999-12-31T23:59:59.999999Z").unwrap(),
            us("9999-12-31T23:59:59.999999Z")
        );
        assert_eq!(
            parse_str(" 2024-03-11T10:15:30Z\t").unwrap(),
            us("2024-03-11T10:15:30Z")
        );
    }

    /// Only years 1 to 9999 in UTC: year 0, and an offset that takes an instant
    /// past either end, are refused (Synapse's `datetime2` and Python's `datetime`
    /// hold neither), by every path; the two ends themselves are read.
    #[test]
    fn instants_outside_years_1_to_9999_are_refused() {
        for bad in [
            "0000-01-01T00:00:00Z",
            "0000-12-31T23:59:59.999999Z",
            "0001-01-01T00:59:59+01:00",
            "9999-12-31T23:30:00-01:00",
            "0000-06-01 12:00:00",
        ] {
            assert!(parse_str(bad).is_err(), "{bad:?} should be refused");
            assert!(parse_str_or_dotnet(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_str("0001-01-01T01:00:00+01:00").unwrap(), FIRST_US);
        assert_eq!(parse_str("0001-01-01T00:00:00Z").unwrap(), FIRST_US);
        assert_eq!(parse_str("9999-12-31T23:59:59.999999Z").unwrap(), LAST_US);
        assert_eq!(
            parse_str("9999-12-31T22:59:59.999999-01:00").unwrap(),
            LAST_US
        );
        assert!(parse_str_or_dotnet("1/1/0000 12:00:00 AM").is_err());
        let why = parse_str("0000-01-01T00:00:00Z").unwrap_err();
        assert!(why.contains("outside years 1 to 9999"), "{why}");
        // Reference logs and flags read it: a .NET "no date" with its offset is a time long past.
        assert!(parse_iso_only("0001-01-01T00:00:00.0000000+01:00").unwrap() < FIRST_US);
        assert_eq!(FIRST_US, us("0001-01-01T00:00:00Z"));
        assert_eq!(LAST_US, us("9999-12-31T23:59:59.999999Z"));
    }

    #[test]
    fn event_hubs_capture_enqueued_time() {
        let dotnet = parse_str_or_dotnet;
        assert_eq!(
            dotnet("3/11/2024 10:15:30 AM").unwrap(),
            us("2024-03-11T10:15:30Z")
        );
        assert_eq!(
            dotnet(" 12/1/2024 12:00:05 AM").unwrap(),
            us("2024-12-01T00:00:05Z")
        );
        assert_eq!(
            dotnet("3/11/2024 12:15:30 PM").unwrap(),
            us("2024-03-11T12:15:30Z")
        );
        assert_eq!(
            dotnet("3/11/2024 1:15:30.25 PM").unwrap(),
            us("2024-03-11T13:15:30.25Z")
        );
        assert_eq!(
            dotnet("2024-03-11T10:15:30Z").unwrap(),
            us("2024-03-11T10:15:30Z")
        );
        for bad in [
            "13/11/2024 1:15:30 PM",
            "3/11/2024 13:15:30 PM",
            "3/11/2024 1:15:30",
        ] {
            assert!(dotnet(bad).is_err(), "{bad:?} should be refused");
        }
        // The contract's forms alone (event_time's): not this one.
        let refused = parse_str("3/11/2024 10:15:30 AM").unwrap_err();
        assert!(refused.contains("not an ISO-8601 timestamp"), "{refused}");
    }

    #[test]
    fn epoch_seconds_and_millis() {
        let base = us("2024-03-11T10:15:30Z");
        assert_eq!(parse_str("1710152130").unwrap(), base);
        assert_eq!(parse_str("1710152130000").unwrap(), base);
        assert_eq!(parse_str("1710152130.25").unwrap(), base + 250_000);
        assert_eq!(from_epoch(1_710_152_130_000.0).unwrap(), base);
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-03-11T25:00:00Z",
            "2024-03-11T10:15:30+25:00",
            "2024-03-11",
            "2024-03-11T10:15:30 UTC",
            "1e400",
            "2024-03-11T10:15:30+1€",
            "2024-03-11T10:15:30+€1:00",
            "2024-03-11T10:15:3€Z",
            "2024-03-11T10:15:30.5€",
        ] {
            assert!(parse_str(bad).is_err(), "{bad:?} should be refused");
        }
    }
}

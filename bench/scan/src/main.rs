//! Parses every line of a JSON-lines file into coldpath's `Flat` (members borrowed
//! from the line) four ways, and prints each one's speed on one core:
//! coldpath's scanner (`Flat::parse_after`, the keys of the lines before kept as
//! for a blob; and `Flat::parse`, each line alone), serde_json (what the scanner falls back
//! to), sonic-rs and simd-json (both through `Flat`'s serde `Deserialize`, so
//! the first four give the same members, numbers included), and how many lines each
//! parsed to a different result than serde_json.

#[path = "../../../src/stages/source/flat.rs"]
#[allow(dead_code)]
mod flat;

use flat::{Flat, Keys};
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("usage: coldpath-scan-bench FILE [ROUNDS]");
    let rounds: usize = std::env::args().nth(2).map_or(3, |r| r.parse().expect("ROUNDS"));
    let text = std::fs::read_to_string(&path).expect("read FILE");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    println!("{path}: {} lines, {:.1} MB", lines.len(), bytes as f64 / 1e6);

    let reference: Vec<Option<Flat>> = lines.iter().map(|l| serde_json::from_str(l).ok()).collect();
    let differ = |parsed: &[Option<Flat>]| parsed.iter().zip(&reference).filter(|(a, b)| a != b).count();

    let mut buf = Vec::new();
    let mut simd = |l: &str| {
        // simd-json parses in place: each line is copied into a buffer first.
        buf.clear();
        buf.extend_from_slice(l.as_bytes());
        simd_json::serde::from_slice::<Flat>(&mut buf).ok().map(|f| members(&f))
    };

    for round in 0..rounds {
        let mut keys = Keys::default();
        report(round, "coldpath scanner", bytes, || count(&lines, |l| scanner(l, &mut keys)));
        report(round, "coldpath scanner, alone", bytes, || count(&lines, alone));
        report(round, "serde_json", bytes, || count(&lines, serde));
        report(round, "sonic-rs", bytes, || count(&lines, sonic));
        report(round, "sonic-rs lazy (no Flat)", bytes, || lines.iter().map(|l| sonic_lazy(l)).sum());
        let t = Instant::now();
        let n: usize = lines.iter().map(|l| simd(l).unwrap_or(0)).sum();
        print_speed(round, "simd-json (with the copy)", bytes, t, n);
    }
    let mut keys = Keys::default();
    let parsed: Vec<Option<Flat>> = lines.iter().map(|l| scanner(l, &mut keys)).collect::<Vec<_>>();
    println!("lines where the scanner differs from serde_json: {}", differ(&parsed));
    let parsed: Vec<Option<Flat>> = lines.iter().map(|l| alone(l)).collect::<Vec<_>>();
    println!("lines where the scanner, alone, differs from serde_json: {}", differ(&parsed));
    let parsed: Vec<Option<Flat>> = lines.iter().map(|l| sonic(l)).collect();
    println!("lines where sonic-rs differs from serde_json: {}", differ(&parsed));
}

fn scanner<'a>(l: &'a str, keys: &mut Keys) -> Option<Flat<'a>> {
    Flat::parse_after(l, keys).ok()
}

fn alone(l: &str) -> Option<Flat<'_>> {
    Flat::parse(l).ok()
}

fn serde(l: &str) -> Option<Flat<'_>> {
    serde_json::from_str(l).ok()
}

fn sonic(l: &str) -> Option<Flat<'_>> {
    sonic_rs::from_str(l).ok()
}

/// sonic-rs's own lazy object iterator, reading each member's key and its string
/// or number (the work a `Flat` needs, without building one): its best case.
fn sonic_lazy(l: &str) -> usize {
    use sonic_rs::{JsonType, JsonValueTrait};
    let mut n = 0;
    for member in sonic_rs::to_object_iter(l) {
        let Ok((key, value)) = member else { return 0 };
        let seen = match value.get_type() {
            JsonType::String => value.as_str().map_or(0, str::len),
            JsonType::Number => value.as_f64().map_or(0, |v| v.to_bits() as usize & 1),
            _ => 0,
        };
        std::hint::black_box((key.len(), seen));
        n += 1;
    }
    n
}

fn members(f: &Flat) -> usize {
    f.members.len()
}

fn count<'a>(lines: &[&'a str], mut parse: impl FnMut(&'a str) -> Option<Flat<'a>>) -> usize {
    lines.iter().map(|l| parse(l).map_or(0, |f| members(&f))).sum()
}

fn report(round: usize, name: &str, bytes: usize, run: impl FnOnce() -> usize) {
    let t = Instant::now();
    let n = run();
    print_speed(round, name, bytes, t, n);
}

fn print_speed(round: usize, name: &str, bytes: usize, t: Instant, members: usize) {
    let s = t.elapsed().as_secs_f64();
    println!("round {round}  {name:<28} {:>7.0} MB/s  ({s:.2} s, {members} members)", bytes as f64 / 1e6 / s);
}

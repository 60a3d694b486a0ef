//! Writes a Stream Analytics raw container at a chosen scale for coldpath's benchmark.
//!
//! `telemetry/{yyyy}/{MM}/{dd}/{HH}/<n>_<hex>_<w>.json`: line-separated JSON with
//! the metadata fields Stream Analytics adds (`EventProcessedUtcTime`, `PartitionId`,
//! `EventEnqueuedUtcTime`), one blob per input partition and hour,
//! foldered by enqueued hour. Devices report every `--interval` seconds with a
//! little jitter; some readings arrive up to ~90 minutes late, a small share are
//! resent (the same message id in another blob, enqueued later), and a few are
//! broken (cut lines, out-of-range values, missing ids), so every stage of the
//! job does its real work. Also writes reference/maintenance.csv and
//! reference/failures.csv.
//!
//! Standard library only; deterministic for a seed.
//!
//!     generate --out DIR --date 2024-03-11 --devices 250 --interval 4 [--days-before 1]
//!              [--partitions 4] [--seed 1] [--iothub-metadata]
//!
//! Records carry what Stream Analytics writes for an Event Hubs input (about 330
//! bytes each); `--iothub-metadata` adds the `IoTHub` object an IoT Hub input gets.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// xorshift64*: fast, deterministic, good enough for synthetic telemetry.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Args {
    out: PathBuf,
    date: (i32, u32, u32),
    devices: u32,
    interval: u32,
    days_before: u32,
    partitions: u32,
    seed: u64,
    /// Add Stream Analytics' `IoTHub` object (an IoT Hub input); off: an Event Hubs input.
    iothub: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        out: PathBuf::new(),
        date: (2024, 3, 11),
        devices: 250,
        interval: 4,
        days_before: 1,
        partitions: 4,
        seed: 1,
        iothub: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|_| format!("`{s}` is not a number"));
        match flag.as_str() {
            "--out" => a.out = PathBuf::from(value()?),
            "--date" => {
                let v = value()?;
                let p: Vec<&str> = v.split('-').collect();
                let bad = || format!("--date `{v}` is not YYYY-MM-DD");
                if p.len() != 3 {
                    return Err(bad());
                }
                a.date = (
                    p[0].parse().map_err(|_| bad())?,
                    p[1].parse().map_err(|_| bad())?,
                    p[2].parse().map_err(|_| bad())?,
                );
            }
            "--devices" => a.devices = num(value()?)? as u32,
            "--interval" => a.interval = num(value()?)?.max(1) as u32,
            "--days-before" => a.days_before = num(value()?)? as u32,
            "--partitions" => a.partitions = num(value()?)?.max(1) as u32,
            "--seed" => a.seed = num(value()?)?,
            "--iothub-metadata" => a.iothub = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.out.as_os_str().is_empty() {
        return Err("--out DIR is required".into());
    }
    Ok(a)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y } as i64;
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2024-03-11T10:15:30.1234567Z` from µs since the epoch (7 digits, as Stream Analytics writes).
fn iso(out: &mut String, us: i64) {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}0Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
}

fn uuid(out: &mut String, rng: &mut Rng) {
    let (a, b) = (rng.next(), rng.next());
    let _ = write!(
        out,
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    );
}

const KINDS: [&str; 4] = ["pump", "compressor", "fan", "conveyor"];
const PRIORITIES: [&str; 3] = ["low", "normal", "high"];
const HOUR_US: i64 = 3_600_000_000;

/// One reading as it will be written: where it lands and its line.
struct Line {
    enqueued: i64,
    text: String,
}

/// Every reading whose event time falls in `[hour, hour + 1h)`, with its resends.
fn readings_of_hour(a: &Args, hour: i64, rng: &mut Rng, lines: &mut Vec<Vec<Line>>) {
    let interval_us = a.interval as i64 * 1_000_000;
    for dev in 0..a.devices {
        let partition = (dev % a.partitions) as usize;
        let kind = KINDS[(dev % 4) as usize];
        // The device's phase within its interval, stable over the day: it reads at
        // phase + k * interval, so with an interval over an hour it skips hours.
        let phase = (dev as i64 * 7_919_000) % interval_us;
        let mut t = hour + (phase - hour).rem_euclid(interval_us);
        while t < hour + HOUR_US {
            let event = t + rng.below(200_000) as i64; // jitter under 0.2 s
            t += interval_us;
            let roll = rng.unit();
            // Most arrive within 2 s; 0.1 % up to ~90 minutes late (a gateway catching up).
            let delay = if roll < 0.001 {
                rng.below(5_400_000_000) as i64
            } else {
                200_000 + rng.below(1_800_000) as i64
            };
            let enqueued = event + delay;
            let mut text = String::with_capacity(460);
            let mut msg = String::with_capacity(36);
            uuid(&mut msg, rng);
            let day_phase = (event.rem_euclid(86_400_000_000) as f64) / 86_400e6;
            let wave = (day_phase * std::f64::consts::TAU).sin();
            let temp = 45.0 + (dev % 17) as f64 + 8.0 * wave + rng.unit() * 2.0;
            let pressure = 100.0 + (dev % 5) as f64 * 10.0 + rng.unit() * 5.0;
            let vibration = 10.0 + (dev % 9) as f64 * 4.0 + rng.unit() * 6.0;
            let _ = write!(text, "{{\"deviceId\":\"dev-{dev:05}\",\"deviceType\":\"{kind}\",\"timestamp\":\"");
            iso(&mut text, event);
            text.push_str("\",");
            // 1 in 20,000 out of range, 1 in 50,000 without a device id, 1 in 100,000 cut short.
            let bad = rng.below(100_000);
            let temp = if bad < 5 { 400.0 } else { temp };
            let _ = write!(
                text,
                "\"temperature\":{temp:.2},\"pressure\":{pressure:.2},\"vibration\":{vibration:.2},\"priority\":\"{}\",\"messageId\":\"{msg}\",\"EventProcessedUtcTime\":\"",
                PRIORITIES[rng.below(3) as usize]
            );
            iso(&mut text, enqueued + 3_000_000);
            let _ = write!(text, "\",\"PartitionId\":{partition},\"EventEnqueuedUtcTime\":\"");
            let enq_at = text.len();
            iso(&mut text, enqueued);
            if a.iothub {
                let enq = text[enq_at..].to_string();
                let _ = write!(
                    text,
                    "\",\"IoTHub\":{{\"MessageId\":\"{msg}\",\"CorrelationId\":null,\"ConnectionDeviceId\":\"dev-{dev:05}\",\"ConnectionDeviceGenerationId\":\"6384567890{dev:08}\",\"EnqueuedTime\":\"{enq}\"}}}}"
                );
            } else {
                text.push_str("\"}");
            }
            if (5..7).contains(&bad) {
                text = text.replacen(&format!("\"deviceId\":\"dev-{dev:05}\","), "", 1);
                text = text.replacen(&format!("\"ConnectionDeviceId\":\"dev-{dev:05}\","), "", 1);
            } else if bad == 7 {
                text.truncate(text.len() / 2);
            }
            text.push('\n');
            // 0.2 % are sent twice (a device retrying): the copy lands a little later.
            if rng.unit() < 0.002 {
                lines[partition].push(Line {
                    enqueued: enqueued + 1_000_000 + rng.below(30_000_000) as i64,
                    text: text.clone(),
                });
            }
            lines[partition].push(Line { enqueued, text });
        }
    }
}

fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::File::create(path)?.write_all(data)
}

fn folder(out: &Path, hour: i64) -> PathBuf {
    let secs = hour / 1_000_000;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let h = secs.rem_euclid(86_400) / 3600;
    out.join(format!("telemetry/{y:04}/{m:02}/{d:02}/{h:02}"))
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("generate: {e}");
            std::process::exit(2);
        }
    };
    let (y, m, d) = a.date;
    let day = days_from_civil(y, m, d) * 86_400_000_000;
    // Event hours: the days before, the date, and the two hours of its look-ahead.
    let first = day - a.days_before as i64 * 24 * HOUR_US;
    let hours: Vec<i64> = (0..(a.days_before as i64 + 1) * 24 + 2)
        .map(|i| first + i * HOUR_US)
        .collect();
    let started = std::time::Instant::now();
    // Blobs are written per enqueued hour and partition; a late reading lands in a later
    // hour's folder, so each worker keeps what spills over until that hour is written.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunks: Vec<Vec<i64>> = {
        let per = hours.len().div_ceil(workers);
        hours.chunks(per).map(|c| c.to_vec()).collect()
    };
    let totals: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .enumerate()
            .map(|(w, chunk)| {
                let a = &a;
                s.spawn(move || {
                    let mut rng = Rng::new(a.seed * 1_000 + w as u64);
                    let (mut records, mut bytes) = (0u64, 0u64);
                    let mut pending: Vec<Vec<Line>> =
                        (0..a.partitions).map(|_| Vec::new()).collect();
                    let last = *chunk.last().unwrap_or(&0);
                    for &hour in &chunk {
                        readings_of_hour(a, hour, &mut rng, &mut pending);
                        // Write every folder that can no longer grow: enqueued before the next
                        // event hour (or everything, after this worker's last hour).
                        let limit = if hour == last { i64::MAX } else { hour + HOUR_US };
                        let mut by_folder: std::collections::BTreeMap<(i64, usize), Vec<u8>> =
                            Default::default();
                        for (p, lines) in pending.iter_mut().enumerate() {
                            let (ready, keep): (Vec<Line>, Vec<Line>) =
                                lines.drain(..).partition(|l| l.enqueued < limit);
                            *lines = keep;
                            for l in ready {
                                let folder_hour = l.enqueued - l.enqueued.rem_euclid(HOUR_US);
                                records += 1;
                                by_folder
                                    .entry((folder_hour, p))
                                    .or_default()
                                    .extend_from_slice(l.text.as_bytes());
                            }
                        }
                        for ((folder_hour, p), data) in by_folder {
                            bytes += data.len() as u64;
                            // Workers own disjoint event hours; late readings of one worker's
                            // hours may land in a folder another also writes: the worker id in
                            // the name keeps the blobs apart, as separate SA writers would.
                            let name = format!(
                                "{}_{:016x}{:016x}_{}.json",
                                1000 + p,
                                (folder_hour as u64) ^ a.seed,
                                hour as u64 + w as u64,
                                w
                            );
                            let path = folder(&a.out, folder_hour).join(name);
                            if let Err(e) = append(&path, &data) {
                                eprintln!("generate: writing {}: {e}", path.display());
                                std::process::exit(1);
                            }
                        }
                    }
                    (records, bytes)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or((0, 0))).collect()
    });
    let (records, bytes) = totals
        .iter()
        .fold((0, 0), |(r, b), (r2, b2)| (r + r2, b + b2));
    reference(&a);
    eprintln!(
        "generate: {records} records, {:.2} GB in {} hourly folders (+ look-ahead), {:.1} s",
        bytes as f64 / 1e9,
        hours.len(),
        started.elapsed().as_secs_f64()
    );
}

fn append(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(data)
}

fn reference(a: &Args) {
    let mut maint = String::from("device_id,maintenance_date,kind\n");
    let mut fail = String::from("device_id,failure_time,component\n");
    let (y, m, d) = a.date;
    for dev in (0..a.devices).step_by(7) {
        let _ = writeln!(maint, "dev-{dev:05},{y:04}-{m:02}-{:02},inspection", d.max(2) - 1);
    }
    for dev in (0..a.devices).step_by(23) {
        let _ = writeln!(fail, "dev-{dev:05},{y:04}-{m:02}-{d:02}T20:00:00Z,bearing");
    }
    for (name, text) in [("maintenance.csv", maint), ("failures.csv", fail)] {
        let path = a.out.join("reference").join(name);
        if let Err(e) = write_file(&path, text.as_bytes()) {
            eprintln!("generate: writing {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}

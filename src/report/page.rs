//! The report page's data: what [`crate::lake::look`] reads back for a date
//! and [`super::html`] renders, plain values with no rule of the page in them.

/// UTC hours of a date.
pub const HOURS: usize = 24;

/// The `device_health` columns the page shows as numbers, in column order.
pub const HEALTH_NUMBERS: [&str; 11] = [
    "readings",
    "expected_readings",
    "coverage",
    "max_gap_s",
    "gaps_over_5m",
    "stuck_temperature_hours",
    "duplicates",
    "rejected",
    "late_readings",
    "transit_p50_s",
    "transit_p95_s",
];

/// Everything the page shows about one date.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The date, `YYYY-MM-DD`.
    pub date: String,
    /// The job's name.
    pub job: String,
    /// The lake, redacted; a local lake as an absolute path.
    pub lake: String,
    /// Which coldpath wrote the page, and when.
    pub generated_by: String,
    /// The table the rows per hour were counted in (`telemetry_minute` or `telemetry`).
    pub rows_from: String,
    /// Rows per UTC hour of the date.
    pub rows: [u64; HOURS],
    /// Rejects by hour and reason.
    pub rejects: Vec<RejectCount>,
    /// Rows per hour of each device.
    pub devices: Vec<DeviceHours>,
    /// `device_health` of the date; `None` when the table or the partition is missing.
    pub health: Option<Vec<Health>>,
    /// Each table's Delta version the page was read at.
    pub versions: Vec<TableVersion>,
    /// The run report the date's last run stored in the lake.
    pub run: Option<serde_json::Value>,
}

/// Rejects of one reason placed in one hour (`None`: the hour is unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectCount {
    pub hour: Option<usize>,
    pub reason: String,
    pub count: u64,
}

/// A device's readings per UTC hour of the date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHours {
    pub device_id: String,
    pub counts: [u64; HOURS],
}

/// One `device_health` row, as the page shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    pub device_id: String,
    pub device_type: Option<String>,
    pub status: Option<String>,
    /// The values of [`HEALTH_NUMBERS`], in that order.
    pub numbers: Vec<Option<f64>>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

impl Health {
    /// The value of the numeric column `name` (one of [`HEALTH_NUMBERS`]).
    pub fn number(&self, name: &str) -> Option<f64> {
        let i = HEALTH_NUMBERS.iter().position(|n| *n == name)?;
        self.numbers.get(i).copied().flatten()
    }

    /// The readings the device is expected to send per hour: `expected_readings / 24`.
    pub fn expected_per_hour(&self) -> Option<f64> {
        self.number("expected_readings")
            .map(|e| e / HOURS as f64)
            .filter(|e| *e > 0.0)
    }
}

/// A table's current Delta version (`None`: no table yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableVersion {
    pub name: String,
    pub version: Option<u64>,
}

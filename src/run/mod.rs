//! Runs: one date end to end, and the commands made of many dates.
//!
//! [`pipeline`] is one date's run: the locks, the listing, the read pass
//! ([`read`] reads the blobs ahead, [`fetch`] each one) that [`hours`] closes an event hour at a time, the quality gate and the commits;
//! [`prepare`] opens what a run needs before it reads (a bad one is a configuration error);
//! [`health`] reads back what `device_health` and the baselines need.
//! [`windows`] reads what the declared feature windows reach of earlier dates.
//! [`expect`] checks the job's declared expectations on each hour's rows.
//! [`backfill`] and [`catchup`] run many dates; [`dependents`] says which later
//! dates read a date's silver; [`crate::cancel`] is how a
//! signal stops them cleanly.

pub mod backfill;
pub mod catchup;
pub mod dependents;
pub mod drift;
pub mod expect;
pub mod fetch;
pub mod health;
pub mod hours;
pub mod pipeline;
pub mod prepare;
pub mod read;
pub mod silver;
pub mod volume;
pub mod windows;

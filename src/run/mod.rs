//! Runs: one date end to end, and the commands made of many dates.
//!
//! [`site`] is what a command opens once for all its dates (storage, layout, lake, reference logs).
//! [`pipeline`] is one date's run (its shared state in [`date`]): the locks, the listing,
//! the read [`pass`] ([`read`] reads the blobs ahead, [`fetch`] each one) that [`hours`]
//! closes an event hour at a time, feeding each to the [`outputs`] beside silver (one
//! per table or pair of tables, made by its registry), the quality gate; then [`commit`]
//! stages and commits the tables, finished in [`gold`]. [`refresh`] feeds the same
//! outputs from silver read back.
//! [`prepare`] judges the job's layout and expectations when it is loaded; [`silver`]
//! streams an hour's rows to silver's uncommitted files.
//! [`health`] reads back what `device_health` and the baselines need; [`kept`] what a date's
//! `device_health` rows keep of its run, once `rejects`' log no longer holds it.
//! [`windows`] reads what the declared feature windows reach of earlier dates.
//! [`expect`] checks the job's declared expectations on each hour's rows.
//! [`rejects`] gathers a pass's rejects; [`spill`] holds what a table stages before its
//! commit up to a bound (rejects, the derived tables), and past it writes it to a local file.
//! [`backfill`] and [`catchup`] run many dates; [`dependents`] says which later
//! dates read a date's silver; [`crate::cancel`] is how a
//! signal stops them cleanly.

pub mod backfill;
pub mod catchup;
pub mod commit;
pub mod date;
pub mod dependents;
pub mod drift;
pub mod expect;
pub mod fetch;
pub mod gold;
pub mod health;
pub mod hours;
pub mod kept;
pub mod outputs;
pub mod pass;
pub mod pipeline;
pub mod prepare;
pub mod read;
pub mod refresh;
pub mod rejects;
pub mod silver;
pub mod site;
pub mod spill;
pub mod volume;
pub mod windows;

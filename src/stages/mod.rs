//! The transforms, in the order the data goes through them.
//!
//! [`source`] lists one date's blobs and decodes them into records;
//! [`normalize`] types each record into a row or a reject; [`dedup`] keeps one
//! row per reading; [`features`] reduces the rows to the gold tables. None of
//! them commits anything: [`crate::run`] drives them and [`crate::lake`] writes.

pub mod dedup;
pub mod features;
pub mod normalize;
pub mod source;

//! The one integration-test binary: the real `coldpath` binary on the fixtures, tables read back with deltalake.

mod adf;
mod adf_expr;
mod azure;
mod azurite;
mod backfill;
mod common;
mod consumers;
mod crash;
mod exit_codes;
mod features;
mod hours;
mod layouts;
mod lock;
mod maintain;
mod run_local;

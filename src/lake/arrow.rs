//! The one bridge between Polars' arrow (polars-arrow) and delta-rs's arrow-rs: the Arrow C Data Interface, both ways.
//!
//! The two crates keep their own Arrow types; the C Data Interface moves an
//! array's buffers across without copying them. Frames leave Polars here to be
//! written ([`crate::lake::to_record_batch`]) and silver comes back here to be
//! read ([`crate::lake::silver`]). The C Data Interface is `unsafe` to use; the
//! crate's other `unsafe` is jemalloc's control calls (`memory.rs`) and building
//! string-view arrays from checked parts (`stages/normalize`).

use deltalake::arrow::array::{make_array, Array, ArrayRef};
use deltalake::arrow::ffi::{from_ffi, to_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use polars::prelude::{CompatLevel, PlSmallStr, Series};

/// One single-chunk Polars series → an arrow-rs array, through the C Data Interface.
///
/// Strings cross as Polars holds them, string views (no copy); the caller casts
/// them to the table's type, plain `string` (a view in a Parquet file's embedded
/// Arrow schema is refused by pyarrow 14 and Azure ML's rslex): the oldest compat
/// level would spell them out as large strings first, one more copy of every string.
pub fn polars_to_arrow_rs(series: &polars::prelude::Series) -> Result<ArrayRef, String> {
    let compat = if series.dtype() == &polars::prelude::DataType::String {
        CompatLevel::newest()
    } else {
        CompatLevel::oldest()
    };
    let array = series.to_arrow(0, compat);
    let field = series.field().to_arrow(compat);
    let c_array = polars_arrow::ffi::export_array_to_c(array);
    let c_schema = polars_arrow::ffi::export_field_to_c(&field);
    // SAFETY: both structs are the C Data Interface's ArrowArray / ArrowSchema
    // (#[repr(C)], same layout); ownership moves to arrow-rs, whose release
    // callback frees the buffers exactly once.
    let (ffi_array, ffi_schema) = unsafe {
        (
            std::mem::transmute::<polars_arrow::ffi::ArrowArray, FFI_ArrowArray>(c_array),
            std::mem::transmute::<polars_arrow::ffi::ArrowSchema, FFI_ArrowSchema>(c_schema),
        )
    };
    // SAFETY: the array and schema were just exported by polars and describe each other.
    let data = unsafe { from_ffi(ffi_array, &ffi_schema) }.map_err(|e| e.to_string())?;
    Ok(make_array(data))
}

/// One arrow-rs array → a Polars series, through the C Data Interface.
pub fn arrow_rs_to_polars(name: &str, array: &dyn Array) -> Result<Series, String> {
    let (ffi_array, ffi_schema) = to_ffi(&array.to_data()).map_err(|e| e.to_string())?;
    // SAFETY: both are the C Data Interface's #[repr(C)] ArrowArray / ArrowSchema;
    // ownership moves to polars-arrow, whose import calls the release callback once.
    let (c_array, c_schema) = unsafe {
        (
            std::mem::transmute::<FFI_ArrowArray, polars_arrow::ffi::ArrowArray>(ffi_array),
            std::mem::transmute::<FFI_ArrowSchema, polars_arrow::ffi::ArrowSchema>(ffi_schema),
        )
    };
    // SAFETY: the schema and array were just exported by arrow-rs and describe each other.
    let imported = unsafe {
        let field = polars_arrow::ffi::import_field_from_c(&c_schema).map_err(|e| e.to_string())?;
        polars_arrow::ffi::import_array_from_c(c_array, field.dtype().clone())
            .map_err(|e| e.to_string())?
    };
    Series::from_arrow(PlSmallStr::from(name), imported).map_err(|e| e.to_string())
}

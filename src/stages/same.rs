//! Whether each row holds the same string as the row before, told by the
//! strings' 16-byte views.
//!
//! The outputs read an hour's rows sorted by device and find where each
//! device's rows start and end. Comparing each row's device id with the one
//! before as `&str` was a `memcmp` call per row and per output: about 3 % of a
//! plant run's samples, on the thread that closes the hours (BENCHMARKS.md).
//! The hour's device ids are views into a few dictionaries, so a row's view is
//! nearly always equal to the one before as one 128-bit integer; the bytes
//! are compared only where the views differ and could still spell the same
//! string.

use polars::prelude::StringChunked;
use polars_arrow::array::{Array, View};

/// Per row: whether it and the row before both have a value, and it is the same.
/// The first row, a null row and the row after a null are `false`.
pub fn same_as_before(ca: &StringChunked) -> Vec<bool> {
    let arrays: Vec<_> = ca.downcast_iter().collect();
    let text = |(chunk, i): (usize, usize)| arrays[chunk].value(i);
    let mut out = Vec::with_capacity(ca.len());
    // The row before: its view, and where it is (chunk, index).
    let mut before: Option<(View, (usize, usize))> = None;
    for (chunk, array) in arrays.iter().enumerate() {
        for (i, &view) in array.views().iter().enumerate() {
            if !array.is_valid(i) {
                out.push(false);
                before = None;
                continue;
            }
            let at = (chunk, i);
            out.push(
                before.is_some_and(|(v, was)| {
                    same(v, view, was.0 == chunk, || text(was) == text(at))
                }),
            );
            before = Some((view, at));
        }
    }
    out
}

/// Whether two rows' strings are equal, given their views. Equal views spell
/// the same string when the text is inline (12 bytes or fewer) or points into
/// the same chunk's buffers; different lengths or first bytes never do; else
/// `texts_equal` compares the bytes.
fn same(a: View, b: View, same_chunk: bool, texts_equal: impl FnOnce() -> bool) -> bool {
    if a.as_u128() == b.as_u128() && (a.length <= View::MAX_INLINE_SIZE || same_chunk) {
        return true;
    }
    a.length == b.length && a.prefix == b.prefix && texts_equal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    /// The definition, by `&str` comparison.
    fn by_text(ca: &StringChunked) -> Vec<bool> {
        let values: Vec<Option<&str>> = ca.iter().collect();
        (0..values.len())
            .map(|i| i > 0 && values[i].is_some() && values[i] == values[i - 1])
            .collect()
    }

    #[test]
    fn views_tell_the_same_as_the_text_across_chunks_and_lengths() {
        // Short (inline) and long ids, a repeat across a chunk's end, nulls,
        // long ids that share their first 4 bytes and their length.
        let long_a = "device-0000000000000000000a";
        let long_b = "device-0000000000000000000b";
        let first: Vec<Option<&str>> = vec![
            Some("p-1"),
            Some("p-1"),
            None,
            Some("p-1"),
            Some(long_a),
            Some(long_a),
            Some(long_b),
            Some(long_b),
        ];
        let second: Vec<Option<&str>> = vec![
            Some(long_b),
            Some(long_b),
            Some("p-1"),
            Some("p-2"),
            Some("p-2"),
            None,
            None,
            Some(""),
            Some(""),
        ];
        let mut ca = StringChunked::new("d".into(), &first);
        ca.append(&StringChunked::new("d".into(), &second)).unwrap();
        assert_eq!(ca.chunks().len(), 2);
        let want = by_text(&ca);
        assert_eq!(same_as_before(&ca), want);
        assert_eq!(
            want,
            [
                false, true, false, false, false, true, false, true, // first chunk
                true, true, false, false, true, false, false, false, true
            ]
        );
    }

    #[test]
    fn long_ids_in_different_chunks_with_equal_views_are_compared_by_text() {
        // Each chunk has its own buffer 0 at offset 0: equal views, different text.
        let a = "device-0000000000000000000a";
        let b = "device-0000000000000000000b";
        let mut ca = StringChunked::new("d".into(), &[a]);
        ca.append(&StringChunked::new("d".into(), &[b])).unwrap();
        ca.append(&StringChunked::new("d".into(), &[b])).unwrap();
        let views: Vec<u128> = ca
            .downcast_iter()
            .map(|arr| arr.views()[0].as_u128())
            .collect();
        assert_eq!(views[0], views[1], "the case this test is for");
        assert_eq!(same_as_before(&ca), vec![false, false, true]);
    }
}

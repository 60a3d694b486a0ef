//! A large blob of plain JSON lines, decoded a piece at a time as it is fetched.
//!
//! Why: at plant scale a blob is about 143 MB, and a blob read whole held all its
//! bytes until its last line was decoded. With three blobs in flight that was
//! 462 MB of a 3.2 GB heap peak, and every blob's buffer was fresh pages the
//! kernel had to zero. Read in pieces of [`PIECE_BYTES`], a blob in flight holds
//! two pieces (the one decoded, the one being fetched), and the pieces' buffers
//! come back from the allocator's free lists.
//!
//! Only uncompressed JSON lines are read this way: there a record is a line, so
//! a piece ends at its last `\n` and the line it cuts is carried into the next
//! piece. Gzip, CSV (a quoted field may hold a newline), JSON arrays and Avro
//! are read whole, as before ([`super::process_blob`]). A blob read in pieces
//! comes to exactly what it would read whole: the same lines with the same
//! numbers, the same rows, rejects and limits (a line over `max_record_bytes`
//! is one reject and reading goes on at the next line; the carried part never
//! grows past that limit: past it, only the line's first bytes are kept, for the
//! reject's `raw`, and the rest is skipped as it arrives).

use std::sync::Arc;

use super::{decode, sniff_blob, BlobOutcome, Counted, Rules, Tally, RAW_LIMIT};
use crate::stages::source::Blob;

/// Bytes fetched at a time from a blob read in pieces.
pub const PIECE_BYTES: u64 = 16 << 20;

/// A blob being read in pieces: what it has come to, and the line the last piece cut.
pub struct Pieces {
    idx: u32,
    blob: Blob,
    rules: Arc<Rules>,
    st: Counted,
    /// The start of the line the last piece cut (empty when it ended at a `\n`).
    carry: Vec<u8>,
    /// Lines before the carried one.
    lines: u64,
    /// The blob's first bytes, the raw of an `unreadable_file` when no record was read.
    start: Vec<u8>,
    /// A UTF-8 byte order mark is still to be skipped (before the first piece).
    bom: bool,
    /// What stopped the blob (a limit): the rest is one `unreadable_file`.
    stopped: Option<String>,
    /// The line being skipped: it grew past `max_record_bytes` (its number is `lines + 1`).
    long: Option<decode::LongLine>,
}

impl Pieces {
    /// Starts on the blob's first piece; `None` unless the blob is plain JSON
    /// lines (then it is read whole, as any other).
    pub fn start(idx: u32, blob: Blob, rules: Arc<Rules>, first: &[u8]) -> Option<Pieces> {
        if decode::is_gzip(first) {
            return None;
        }
        let mut inflated = decode::Inflated::new(first, &rules.limits);
        let (head, format) = sniff_blob(&mut inflated, &blob, &rules).ok().flatten()?;
        if format != decode::Format::JsonLines {
            return None;
        }
        Some(Pieces {
            idx,
            blob,
            rules,
            st: Counted::default(),
            carry: Vec::new(),
            lines: 0,
            start: head[..head.len().min(RAW_LIMIT)].to_vec(),
            bom: true,
            stopped: None,
            long: None,
        })
    }

    /// Decodes the lines `piece` completes, and carries the one it cuts.
    pub fn feed(&mut self, piece: &[u8]) {
        let mut data = piece;
        if std::mem::take(&mut self.bom) {
            data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
        }
        if self.stopped.is_some() {
            return;
        }
        let (Some(first), Some(last)) = (memchr::memchr(b'\n', data), memchr::memrchr(b'\n', data))
        else {
            self.carry_on(data);
            return;
        };
        let mut whole = Some(&data[..last]);
        if !self.carry.is_empty() || self.long.is_some() {
            // The cut line ends at this piece's first `\n`.
            self.carry_on(&data[..first]);
            self.end_carried();
            whole = (first < last).then(|| &data[first + 1..last]);
        }
        if let Some(whole) = whole {
            self.decode(whole);
        }
        self.carry_on(&data[last + 1..]);
    }

    /// The blob's outcome, once every piece has been fed: its last line is what was carried.
    pub fn finish(mut self) -> BlobOutcome {
        if self.stopped.is_none() {
            self.end_carried();
        }
        Tally::resume(self.idx, &self.blob, &self.rules, self.st).finish(
            BlobOutcome::default(),
            self.stopped,
            &self.start,
        )
    }

    /// More of the line a piece cut: carried while it stays within
    /// `max_record_bytes`, then only its first bytes are kept ([`decode::LongLine`]).
    fn carry_on(&mut self, bytes: &[u8]) {
        if let Some(long) = &mut self.long {
            long.add(bytes);
            return;
        }
        let max = self.rules.limits.max_record_bytes;
        if self.carry.len() + bytes.len() > max {
            let mut long = decode::LongLine::new(self.lines + 1, &self.carry);
            long.add(bytes);
            self.long = Some(long);
            self.carry = Vec::new();
        } else {
            self.carry.extend_from_slice(bytes);
        }
    }

    /// The carried line is complete (a `\n`, or the blob's end): decoded, or a
    /// reject when it grew past `max_record_bytes`.
    fn end_carried(&mut self) {
        if self.stopped.is_some() {
            self.long = None;
            return;
        }
        let Some(long) = self.long.take() else {
            let line = std::mem::take(&mut self.carry);
            self.decode(&line);
            self.carry = line;
            self.carry.clear();
            return;
        };
        let max = self.rules.limits.max_record_bytes;
        let st = std::mem::take(&mut self.st);
        let mut tally = Tally::resume(self.idx, &self.blob, &self.rules, st);
        let given = long.give(max, &mut |rec| tally.record(rec));
        self.st = tally.st;
        self.lines += 1;
        if let Err(e) = given {
            self.stopped = Some(e);
        }
    }

    /// Decodes whole lines (the last ends at the end of `data`).
    fn decode(&mut self, data: &[u8]) {
        if self.stopped.is_some() {
            return;
        }
        let st = std::mem::take(&mut self.st);
        let mut tally = Tally::resume(self.idx, &self.blob, &self.rules, st);
        let read = decode::json_lines_from(data, self.lines, &self.rules.limits, |rec| {
            tally.record(rec)
        });
        self.st = tally.st;
        match read {
            Ok(n) => self.lines += n,
            Err(e) => self.stopped = Some(e),
        }
    }
}

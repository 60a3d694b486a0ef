//! The message id column, kept as 16 bytes a row while its hour is open when
//! the ids are UUIDs written the canonical way.
//!
//! IoT Hub and Stream Analytics give most messages a UUID for an id, 36
//! characters in lower-case hex. As an Arrow string view that is 52 bytes a row
//! (the view and the text), a third of an open hour's rows, and at plant scale
//! three to four hours are open at once. A UUID's 128 bits hold it exactly
//! when it is spelled as `8-4-4-4-12` lower-case hex digits, so only those are
//! packed; the first id of a blob's hour spelled any other way turns that
//! piece of the column into plain string views, as before. Ids are spelled out
//! again when the hour closes, so the rows read exactly as they were written
//! and nothing downstream sees the packing.

use polars::prelude::Column as PlColumn;
use polars_arrow::array::{MutableArray, MutableBinaryViewArray, Utf8ViewArray, View};
use polars_arrow::bitmap::{Bitmap, MutableBitmap};
use polars_arrow::datatypes::ArrowDataType;

use super::StrColumn;

/// A finished piece of the column.
#[derive(Debug)]
enum Chunk {
    /// Packed UUIDs, and which rows are null (none when `None`).
    Uuids(Vec<u128>, Option<Bitmap>),
    Text(Utf8ViewArray),
}

/// Message ids: packed UUIDs where they can be, string views where not.
#[derive(Debug, Default)]
pub struct IdColumn {
    chunks: Vec<Chunk>,
    uuids: Vec<u128>,
    /// Validity of `uuids`, once a null is pushed.
    valid: Option<MutableBitmap>,
    /// The piece being built, once it holds an id that is not a canonical UUID.
    text: Option<MutableBinaryViewArray<str>>,
}

impl IdColumn {
    pub fn push(&mut self, value: Option<&str>) {
        if let Some(text) = &mut self.text {
            text.push(value);
            return;
        }
        match value.map(|v| (v, packed(v))) {
            Some((_, Some(uuid))) => {
                self.uuids.push(uuid);
                if let Some(valid) = &mut self.valid {
                    valid.push(true);
                }
            }
            Some((v, None)) => {
                let mut text = spelled_out(&self.uuids, self.valid.take().map(Bitmap::from));
                self.uuids = Vec::new();
                text.push(Some(v));
                self.text = Some(text);
            }
            None => {
                let len = self.uuids.len();
                self.valid
                    .get_or_insert_with(|| {
                        let mut all = MutableBitmap::with_capacity(len + 1);
                        all.extend_constant(len, true);
                        all
                    })
                    .push(false);
                self.uuids.push(0);
            }
        }
    }

    fn seal(&mut self) {
        if let Some(mut text) = self.text.take() {
            text.shrink_to_fit();
            self.chunks.push(Chunk::Text(text.freeze()));
        } else if !self.uuids.is_empty() {
            let mut uuids = std::mem::take(&mut self.uuids);
            uuids.shrink_to_fit();
            let valid = self.valid.take().map(Bitmap::from);
            self.chunks.push(Chunk::Uuids(uuids, valid));
        }
    }

    pub(super) fn append(&mut self, mut other: IdColumn) {
        self.seal();
        other.seal();
        self.chunks.append(&mut other.chunks);
    }

    /// About the bytes the column holds: 16 a packed id, a view and its text otherwise.
    pub fn held_bytes(&self) -> usize {
        let text = super::view_bytes;
        let chunks: usize = self
            .chunks
            .iter()
            .map(|chunk| match chunk {
                Chunk::Uuids(uuids, _) => uuids.len() * 16,
                Chunk::Text(array) => text(array.len(), array.total_buffer_len()),
            })
            .sum();
        let open = match &self.text {
            Some(t) => text(t.len(), t.total_buffer_len()),
            None => 0,
        };
        chunks + open + self.uuids.len() * 16
    }

    /// The column as Polars' `String`, one chunk per piece.
    pub fn into_column(mut self, name: &str) -> PlColumn {
        self.seal();
        let arrays = self
            .chunks
            .into_iter()
            .map(|chunk| match chunk {
                Chunk::Text(array) => array,
                Chunk::Uuids(uuids, valid) => uuid_views(&uuids, valid),
            })
            .collect();
        StrColumn::of_chunks(arrays).into_column(name)
    }
}

/// Packed UUIDs (and their nulls) as string views.
fn spelled_out(uuids: &[u128], valid: Option<Bitmap>) -> MutableBinaryViewArray<str> {
    let mut out = MutableBinaryViewArray::<str>::with_capacity(uuids.len());
    let mut buf = [0u8; 36];
    for (i, uuid) in uuids.iter().enumerate() {
        if valid.as_ref().is_some_and(|v| !v.get_bit(i)) {
            out.push_null();
        } else {
            out.push_value(spell(*uuid, &mut buf));
        }
    }
    out
}

/// Packed UUIDs as string views, written straight into one buffer: 36 bytes an
/// id and a view pointing at them. Pushing each id into a growing view array
/// (and checking its UTF-8) took twice as long, and closing an hour waits on it.
fn uuid_views(uuids: &[u128], valid: Option<Bitmap>) -> Utf8ViewArray {
    if uuids.len() >= (i32::MAX as usize) / 36 {
        return spelled_out(uuids, valid).freeze();
    }
    let mut text = vec![0u8; uuids.len() * 36];
    let mut views = Vec::with_capacity(uuids.len());
    for (i, (uuid, out)) in uuids.iter().zip(text.chunks_exact_mut(36)).enumerate() {
        if valid.as_ref().is_some_and(|v| !v.get_bit(i)) {
            views.push(View::default());
            continue;
        }
        spell_into(*uuid, out);
        views.push(View::new_from_bytes(out, 0, (i * 36) as u32));
    }
    let total = text.len();
    // SAFETY: every view of a valid row points at the 36 bytes just written for
    // it in buffer 0 (offsets fit: fewer than i32::MAX / 36 ids), and those bytes
    // are ASCII hex digits and hyphens, so valid UTF-8; null rows' views are empty.
    unsafe {
        Utf8ViewArray::new_unchecked_unknown_md(
            ArrowDataType::Utf8View,
            views.into(),
            vec![text.into()].into(),
            valid,
            Some(total),
        )
    }
}

/// Two lower-case hex digits for each byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xF]];
        i += 1;
    }
    t
};

/// Writes a packed UUID's 36 characters into `out` (36 bytes long).
fn spell_into(uuid: u128, out: &mut [u8]) {
    let mut at = 0;
    for (i, byte) in uuid.to_be_bytes().iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[at] = b'-';
            at += 1;
        }
        out[at..at + 2].copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
        at += 2;
    }
}

/// Where the hyphens of a canonical UUID stand.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// `id` as 128 bits if it is a UUID in lower-case `8-4-4-4-12` hex.
fn packed(id: &str) -> Option<u128> {
    let b: &[u8; 36] = id.as_bytes().try_into().ok()?;
    if HYPHENS.iter().any(|&h| b[h] != b'-') {
        return None;
    }
    let mut digits = [0u8; 32];
    digits[..8].copy_from_slice(&b[..8]);
    digits[8..12].copy_from_slice(&b[9..13]);
    digits[12..16].copy_from_slice(&b[14..18]);
    digits[16..20].copy_from_slice(&b[19..23]);
    digits[20..].copy_from_slice(&b[24..]);
    let mut value = 0u128;
    for eight in digits.chunks_exact(8) {
        value = (value << 32) | u128::from(hex8(eight.try_into().ok()?)?);
    }
    Some(value)
}

/// Eight lower-case hex digits, the first the most significant, as a number;
/// `None` if any byte is not one. All eight at once in a `u64`: a table lookup
/// and a 128-bit shift per digit were 3 % of an hour's instructions.
fn hex8(eight: [u8; 8]) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let x = u64::from_be_bytes(eight);
    // With every byte under 0x80, adding 0x80 - c sets a byte's high bit
    // exactly when the byte is at least c, and carries into no other byte
    // (a byte of 0x80 or more is refused first: no carry then decides).
    let at_least = |c: u8| x.wrapping_add(ONES * u64::from(0x80 - c)) & HIGH;
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let letter = at_least(b'a') & !at_least(b'f' + 1);
    if x & HIGH != 0 || digit | letter != HIGH {
        return None;
    }
    // A digit's value is its low nibble; a letter's (bit 6 set) that plus 9.
    let nibbles = (x & (ONES * 0x0F)) + ((x >> 6) & ONES) * 9;
    let pairs = (nibbles | (nibbles >> 4)) & 0x00FF_00FF_00FF_00FF;
    let quads = (pairs | (pairs >> 8)) & 0x0000_FFFF_0000_FFFF;
    u32::try_from((quads | (quads >> 16)) & 0xFFFF_FFFF).ok()
}

/// The canonical spelling of `uuid`, in `buf`.
fn spell(uuid: u128, buf: &mut [u8; 36]) -> &str {
    spell_into(uuid, buf);
    // Only ASCII hex digits and hyphens were written.
    std::str::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(c: IdColumn) -> Vec<Option<String>> {
        crate::stages::normalize::strings_of(c.into_column("message_id"))
    }

    #[test]
    fn held_bytes_count_16_a_packed_id_and_a_view_and_its_text_otherwise() {
        let uuid = "cc70e35f-18f2-4e58-8341-aa13d3ea146c";
        let mut packed_only = IdColumn::default();
        for _ in 0..1000 {
            packed_only.push(Some(uuid));
        }
        packed_only.push(None);
        assert_eq!(packed_only.held_bytes(), 1001 * 16);

        // An id that is not a UUID turns the piece into views: 16 bytes each,
        // and a text over 12 bytes is also kept in the view's buffer.
        let mut mixed = IdColumn::default();
        mixed.push(Some(uuid));
        mixed.push(Some("m-000000000001"));
        let mut next = IdColumn::default();
        next.push(Some(uuid));
        mixed.append(next);
        let held = mixed.held_bytes();
        assert!(held >= 2 * 16 + 36 + 14 + 16, "{held}");
        assert!(held <= 2 * 16 + 36 + 14 + 16 + 64, "{held}");
    }

    #[test]
    fn uuid_views_spell_each_id_as_the_hex_of_its_bits() {
        let mut rng = crate::testing::Lcg(0x9E37_79B9_7F4A_7C15);
        let mut next = || rng.step();
        let mut ids: Vec<u128> = (0..500)
            .map(|_| (u128::from(next()) << 64) | u128::from(next()))
            .collect();
        ids.extend([0, u128::MAX]);
        let valid: Bitmap = (0..ids.len()).map(|i| i % 7 != 3).collect();
        let array = uuid_views(&ids, Some(valid.clone()));
        assert_eq!(array.len(), ids.len());
        for (i, got) in array.iter().enumerate() {
            let hex = format!("{:032x}", ids[i]);
            let want = [
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..],
            ]
            .join("-");
            assert_eq!(got, valid.get_bit(i).then_some(want.as_str()), "id {i}");
        }
    }

    #[test]
    fn uuids_are_packed_and_read_back_exactly_with_anything_else_beside_them() {
        let uuid = "cc70e35f-18f2-4e58-8341-aa13d3ea146c";
        assert_eq!(packed(uuid), Some(0xcc70e35f_18f2_4e58_8341_aa13d3ea146c));
        let mut buf = [0; 36];
        assert_eq!(
            spell(0xcc70e35f_18f2_4e58_8341_aa13d3ea146c, &mut buf),
            uuid
        );
        // Spelled another way: kept as text, character for character.
        for other in [
            "CC70E35F-18F2-4E58-8341-AA13D3EA146C",
            "{cc70e35f-18f2-4e58-8341-aa13d3ea146c}",
            "cc70e35f18f24e588341aa13d3ea146c",
            "cc70e35f-18f2-4e58-8341-aa13d3ea146g",
            "cc70e35f-18f2-4e58-834-1aa13d3ea146c",
            "cc70e35f-18f2-4e58-8341-aa13d3ea146",
            "",
        ] {
            assert_eq!(packed(other), None, "{other}");
        }

        let ids = [
            Some(uuid),
            None,
            Some("00000000-0000-0000-0000-000000000000"),
            Some("ffffffff-ffff-ffff-ffff-ffffffffffff"),
        ];
        let mut want: Vec<Option<String>> = Vec::new();
        // All packed; packed then text; and text from the start.
        let mut a = IdColumn::default();
        for id in ids {
            a.push(id);
            want.push(id.map(str::to_string));
        }
        assert!(a.text.is_none() && a.uuids.len() == 4);
        let mut b = IdColumn::default();
        for id in ids.iter().copied().chain([Some("m-7"), None, Some(uuid)]) {
            b.push(id);
            want.push(id.map(str::to_string));
        }
        assert!(b.text.is_some());
        let mut c = IdColumn::default();
        for id in [Some("x"), Some(uuid)] {
            c.push(id);
            want.push(id.map(str::to_string));
        }
        a.append(b);
        a.append(IdColumn::default());
        a.append(c);
        a.push(Some(uuid));
        want.push(Some(uuid.to_string()));
        assert_eq!(read_back(a), want);
    }

    /// `packed` by its definition, written another way: 36 bytes, hyphens at
    /// 8, 13, 18 and 23, lower-case hex digits elsewhere.
    fn packed_by_definition(id: &str) -> Option<u128> {
        let b = id.as_bytes();
        let canonical = b.len() == 36
            && b.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
            });
        canonical
            .then(|| u128::from_str_radix(&id.replace('-', ""), 16).ok())
            .flatten()
    }

    #[test]
    fn an_id_is_packed_exactly_when_it_is_a_canonical_uuid_at_every_byte() {
        let mut rng = crate::testing::Lcg(0x1d5);
        let mut next = move || rng.step();
        let mut buf = [0; 36];
        let mut packed_count = 0;
        for _ in 0..200 {
            let uuid = (u128::from(next()) << 64) | u128::from(next());
            let id = spell(uuid, &mut buf).to_string();
            assert_eq!(packed(&id), Some(uuid), "{id}");
            // Every byte of it replaced by every ASCII byte, and every pair of
            // bytes by a two-byte character.
            for at in 0..36 {
                for c in 0..128u8 {
                    let mut b = id.clone().into_bytes();
                    b[at] = c;
                    let other = String::from_utf8(b).expect("ASCII");
                    assert_eq!(packed(&other), packed_by_definition(&other), "{other:?}");
                    packed_count += usize::from(packed(&other).is_some());
                }
                if at < 35 {
                    let other = format!("{}\u{e9}{}", &id[..at], &id[at + 2..]);
                    assert_eq!(packed(&other), None, "{other:?}");
                }
            }
        }
        // 16 of the 128 bytes keep a digit a digit, one keeps a hyphen.
        assert_eq!(packed_count, 200 * (32 * 16 + 4));
    }
}

//! A string column of few distinct values (`device_id`, `device_type`,
//! `priority`), kept as two-byte codes while its hour is open.
//!
//! An open hour holds each row until the hour is complete, and at plant scale
//! three to four hours are open at once (the late-arrival window and the read
//! ahead). As Arrow string views these three columns took 48 bytes a row of the
//! hour's 152, about 250 MB of the run's peak, for a few hundred distinct
//! values. Codes take 2 bytes a row (and a validity bit). A column that turns
//! out to have more than [`MAX_CODES`] distinct values in an open hour
//! (a hostile or unusual source) falls back to plain string views, so no input
//! makes it much bigger than before. The column becomes Polars' `String` when
//! its hour is closed: nothing downstream sees the codes.

use polars::prelude::{Column as PlColumn, PlHashMap, UInt16Type};
use polars_arrow::array::{MutableBinaryViewArray, Utf8ViewArray, View};
use polars_arrow::datatypes::ArrowDataType;

use super::{NumColumn, StrColumn};

/// Distinct values kept as codes; past this the column is spelled out.
const MAX_CODES: usize = 1 << 16;

/// Up to this many distinct values a value's code is found by a linear search
/// (cheaper than hashing it); beyond, through the index.
const LINEAR: usize = 8;

/// The values a [`CodeColumn`] holds.
#[derive(Debug)]
enum Values {
    Coded {
        dict: Dict,
        codes: NumColumn<UInt16Type>,
    },
    Plain(StrColumn),
}

/// A string column of codes into a small dictionary (see the module doc).
#[derive(Debug)]
pub struct CodeColumn {
    values: Values,
}

impl Default for CodeColumn {
    fn default() -> Self {
        CodeColumn {
            values: Values::Coded {
                dict: Dict::default(),
                codes: NumColumn::default(),
            },
        }
    }
}

impl CodeColumn {
    /// About the bytes the column holds: 2 a row, and each distinct value
    /// (twice past [`LINEAR`] values, for the index); spelled out, its views.
    pub fn held_bytes(&self) -> usize {
        match &self.values {
            Values::Coded { dict, codes } => {
                let text: usize = dict.values.iter().map(|v| v.len() + 16).sum();
                let copies = if dict.values.len() > LINEAR { 2 } else { 1 };
                codes.len() * 2 + text * copies
            }
            Values::Plain(plain) => plain.held_bytes(),
        }
    }

    pub fn push(&mut self, value: Option<&str>) {
        match &mut self.values {
            Values::Coded { dict, codes } => match value {
                None => codes.push(None),
                Some(v) => match dict.code_of(v) {
                    Some(code) => codes.push_value(code),
                    None => {
                        self.spell_out();
                        self.push(Some(v));
                    }
                },
            },
            Values::Plain(plain) => plain.push(value),
        }
    }

    pub(super) fn append(&mut self, other: CodeColumn) {
        match (&mut self.values, other.values) {
            (
                Values::Coded { dict, codes },
                Values::Coded {
                    dict: theirs,
                    codes: mut their_codes,
                },
            ) => {
                let map: Option<Vec<u16>> = theirs.values.iter().map(|v| dict.code_of(v)).collect();
                match map {
                    Some(map) => {
                        let identity = map.iter().enumerate().all(|(i, c)| usize::from(*c) == i);
                        // Every code maps; a null's slot (code 0) may not, and stays 0.
                        if !identity {
                            their_codes
                                .map_values(|c| map.get(usize::from(c)).copied().unwrap_or(0));
                        }
                        codes.append(their_codes);
                    }
                    None => {
                        self.spell_out();
                        self.append_plain(Values::Coded {
                            dict: theirs,
                            codes: their_codes,
                        });
                    }
                }
            }
            (_, theirs) => {
                self.spell_out();
                self.append_plain(theirs);
            }
        }
    }

    /// Appends `theirs` spelled out (`self` is already plain).
    fn append_plain(&mut self, theirs: Values) {
        if let Values::Plain(mine) = &mut self.values {
            mine.append(spelled(theirs));
        }
    }

    /// Turns the codes into string views for good (too many distinct values).
    fn spell_out(&mut self) {
        if matches!(self.values, Values::Coded { .. }) {
            let values = std::mem::replace(&mut self.values, Values::Plain(StrColumn::default()));
            self.values = Values::Plain(spelled(values));
        }
    }

    /// The column as Polars' `String`.
    pub fn into_column(self, name: &str) -> PlColumn {
        spelled(self.values).into_column(name)
    }
}

/// The distinct values of a coded column, by code.
#[derive(Debug, Default)]
struct Dict {
    values: Vec<Box<str>>,
    /// Code by value, once there are more than [`LINEAR`] values.
    index: PlHashMap<Box<str>, u16>,
}

impl Dict {
    /// `value`'s code, added if new; `None` once the dictionary is full.
    fn code_of(&mut self, value: &str) -> Option<u16> {
        let found = if self.values.len() <= LINEAR {
            self.values.iter().position(|v| **v == *value)
        } else {
            self.index.get(value).map(|c| usize::from(*c))
        };
        let at = match found {
            Some(at) => at,
            None if self.values.len() < MAX_CODES => {
                self.values.push(value.into());
                self.values.len() - 1
            }
            None => return None,
        };
        let code = u16::try_from(at).ok()?;
        if found.is_none() && self.values.len() > LINEAR {
            if self.index.is_empty() {
                for (i, v) in self.values.iter().enumerate() {
                    self.index.insert(v.clone(), u16::try_from(i).ok()?);
                }
            } else {
                self.index.insert(value.into(), code);
            }
        }
        Some(code)
    }
}

/// The values as string views: each dictionary value's view is made once, and
/// a row's view is its code's, copied (a value over 12 bytes points into the
/// buffers the chunks share). Pushing every row's string into a growing view
/// array took 1.7 % of a plant run, on the thread that closes the hours.
fn spelled(values: Values) -> StrColumn {
    match values {
        Values::Plain(plain) => plain,
        Values::Coded { dict, codes } => {
            let dictionary: Utf8ViewArray =
                MutableBinaryViewArray::<str>::from_values_iter(dict.values.iter().map(|v| &**v))
                    .into();
            let views = dictionary.views();
            let mut chunks = Vec::new();
            codes.for_each_chunk(|chunk| {
                let rows: Vec<View> = chunk
                    .values()
                    .iter()
                    .map(|c| views.get(usize::from(*c)).copied().unwrap_or_default())
                    .collect();
                // SAFETY: every view is one of the dictionary array's own views,
                // valid with its buffers, or the empty string's.
                chunks.push(unsafe {
                    Utf8ViewArray::new_unchecked_unknown_md(
                        ArrowDataType::Utf8View,
                        rows.into(),
                        dictionary.data_buffers().clone(),
                        chunk.validity().cloned(),
                        None,
                    )
                });
            });
            StrColumn::of_chunks(chunks)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(c: CodeColumn) -> Vec<Option<String>> {
        crate::stages::normalize::strings_of(c.into_column("x"))
    }

    fn column(values: &[Option<&str>]) -> CodeColumn {
        let mut c = CodeColumn::default();
        for v in values {
            c.push(*v);
        }
        c
    }

    #[test]
    fn values_over_12_bytes_read_back_through_the_dictionarys_buffers() {
        let long: Vec<String> = (0..20)
            .map(|i| format!("plant-7/line-{i}/press-{}", "x".repeat(i)))
            .collect();
        let value = |i: usize| {
            (i % 9 != 4).then(|| {
                if i.is_multiple_of(3) {
                    "fan"
                } else {
                    long[i % 20].as_str()
                }
            })
        };
        let build = || {
            let mut c = CodeColumn::default();
            let mut next = CodeColumn::default();
            for i in 0..200 {
                c.push(value(i));
                next.push(value(199 - i));
            }
            c.append(next);
            c
        };
        let want: Vec<Option<String>> = (0..200)
            .map(value)
            .chain((0..200).map(|i| value(199 - i)))
            .map(|v| v.map(str::to_string))
            .collect();
        assert_eq!(strings(build()), want);
    }

    #[test]
    fn codes_read_back_as_the_strings_pushed_across_appends_with_other_dictionaries() {
        let mut a = column(&[Some("fan"), None, Some("pump"), Some("fan")]);
        // Another blob met the values in another order, and one more.
        let b = column(&[Some("valve"), Some("pump"), None, Some("fan")]);
        a.append(b);
        a.append(CodeColumn::default());
        a.push(Some("valve"));
        let want = [
            Some("fan"),
            None,
            Some("pump"),
            Some("fan"),
            Some("valve"),
            Some("pump"),
            None,
            Some("fan"),
            Some("valve"),
        ];
        let want: Vec<Option<String>> = want.iter().map(|s| s.map(str::to_string)).collect();
        assert_eq!(strings(a), want);

        // Past a linear search's worth of values, through the index.
        let names: Vec<String> = (0..3 * LINEAR).map(|i| format!("dev-{i:05}")).collect();
        let mut want = Vec::new();
        let mut a = CodeColumn::default();
        for v in names.iter().chain(&names) {
            a.push(Some(v));
            want.push(Some(v.clone()));
        }
        let mut b = CodeColumn::default();
        for v in names.iter().rev().chain([&"new".to_string()]) {
            b.push(Some(v));
            want.push(Some(v.clone()));
        }
        a.append(b);
        a.push(Some("new"));
        a.push(Some(&names[LINEAR + 3]));
        want.extend([Some("new".to_string()), Some(names[LINEAR + 3].clone())]);
        match &a.values {
            Values::Coded { dict, .. } => assert_eq!(dict.values.len(), names.len() + 1),
            Values::Plain(_) => panic!("{} values are coded", names.len() + 1),
        }
        assert_eq!(strings(a), want);
    }

    #[test]
    fn too_many_distinct_values_are_spelled_out_and_lose_nothing() {
        let many: Vec<String> = (0..MAX_CODES + 5).map(|i| format!("type-{i}")).collect();
        let mut want: Vec<Option<String>> = Vec::new();
        // One column fills its dictionary by itself, another overflows it on append.
        let mut a = column(&[Some("x"), None]);
        want.extend([Some("x".to_string()), None]);
        let mut b = CodeColumn::default();
        for v in &many[..MAX_CODES] {
            b.push(Some(v));
            want.push(Some(v.clone()));
        }
        a.append(b);
        assert!(
            matches!(a.values, Values::Plain(_)),
            "65 distinct values are not coded"
        );
        for v in &many[MAX_CODES..] {
            a.push(Some(v));
            want.push(Some(v.clone()));
        }
        let mut c = CodeColumn::default();
        for v in &many {
            c.push(Some(v));
            want.push(Some(v.clone()));
        }
        assert!(matches!(c.values, Values::Plain(_)));
        a.append(c);
        a.append(column(&[Some("fan")]));
        want.push(Some("fan".to_string()));
        assert_eq!(strings(a), want);
    }
}

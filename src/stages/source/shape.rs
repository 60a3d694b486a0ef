//! Where a record's columns are, learned once per shape of its keys: the memo of field lookup.
//!
//! The records of one blob come from one producer and share their keys, in the
//! same order. Looking up every column's aliases in every record compared each
//! alias with the keys before it: 8.3 % of a run's instructions, about 1,500 a
//! record (BENCHMARKS.md). A [`Shape`] keeps, for one sequence of keys, the member
//! each alias names, so a record of a known shape costs one comparison of its
//! keys and one read per column.
//!
//! A shape is exact, so a lookup through it gives what [`Flat::lookup`] gives:
//! - a record fits a shape only with the same keys, byte for byte, in the same
//!   order (with duplicate keys the first exact match wins, and that is a
//!   matter of order);
//! - neither the record nor the shape may hold a nested object, since a dotted
//!   alias (`IoTHub.MessageId`) could reach into one; such records are looked up
//!   as before;
//! - nullness is not part of a shape: a null member is read as missing and the
//!   next alias is tried, as before.
//!
//! Columns are known by their slot in the schema ([`Column::slot`]), not by the
//! address of their aliases, which a temporary list could reuse.

use std::rc::Rc;

use crate::config::schema::{Column, TelemetrySchema};
use crate::stages::source::flat::{same, Flat, Member, RecordId, Seen};

/// Shapes one piece of a blob keeps: a blob rarely mixes more than a couple.
const KEPT: usize = 4;

/// After this many shapes learned in one piece, its records are looked up
/// without a memo (a producer whose every record has other keys).
const MAX_LEARNED: usize = 64;

/// The keys of records of one shape, and where each column's aliases are among them.
#[derive(Debug)]
pub struct Shape {
    keys: Vec<Box<str>>,
    /// By column slot: for each alias, in order, the member it names.
    at: Vec<Box<[Option<u32>]>>,
}

impl Shape {
    /// The shape of `flat` for the columns of `schema`; `None` with a nested object.
    fn learn(flat: &Flat<'_>, schema: &TelemetrySchema) -> Option<Shape> {
        if flat.members.iter().any(|(_, m)| is_object(m)) {
            return None;
        }
        let keys = flat.members.iter().map(|(k, _)| Box::from(&**k)).collect();
        // `columns()` gives the columns in slot order: the nth is slot n.
        let at = schema
            .columns()
            .map(|col| {
                col.aliases
                    .iter()
                    .map(|a| flat.position(a).and_then(|p| u32::try_from(p).ok()))
                    .collect()
            })
            .collect();
        Some(Shape { keys, at })
    }

    /// Whether `flat` has exactly this shape's keys and no nested object.
    fn fits(&self, flat: &Flat<'_>) -> bool {
        self.keys.len() == flat.members.len()
            && self
                .keys
                .iter()
                .zip(&flat.members)
                .all(|(k, (key, m))| same(k.as_bytes(), key.as_bytes()) && !is_object(m))
    }

    /// `col`'s member in `flat`, a record of this shape: that of the first alias
    /// whose member is there and not null (`Some(None)`: none is). `None` for a
    /// column the shape was not learned for.
    pub fn get<'m, 'a>(&self, flat: &'m Flat<'a>, col: &Column) -> Option<Option<&'m Member<'a>>> {
        let at = self.at.get(col.slot)?;
        if at.len() != col.aliases.len() {
            return None;
        }
        Some(
            at.iter()
                .flatten()
                .filter_map(|&p| flat.members.get(p as usize).map(|(_, m)| m))
                .find(|m| !matches!(m, Member::Null)),
        )
    }
}

fn is_object(m: &Member<'_>) -> bool {
    matches!(m, Member::Object(_))
}

/// The shapes seen in one piece of a blob, most recent use first tried.
#[derive(Default)]
pub struct Shapes {
    kept: Vec<Rc<Shape>>,
    last: usize,
    learned: usize,
    /// The record the last call was given, when it fitted `kept[last]`.
    fitted: Option<RecordId>,
}

impl Shapes {
    /// The shape `flat` fits, learned from it if it is new; `None` when it has
    /// a nested object or this piece has had too many shapes to keep memos.
    ///
    /// `seen` is what the scanner knew of the record's keys: a record that
    /// repeats the keys of the one the last call fitted fits the same shape,
    /// without its keys compared again (they were 2 % of a run's samples).
    pub fn of(
        &mut self,
        flat: &Flat<'_>,
        schema: &TelemetrySchema,
        seen: Seen,
    ) -> Option<Rc<Shape>> {
        if let Some(repeated) = seen.repeated() {
            if self.fitted == Some(repeated) {
                self.fitted = seen.id;
                return self.kept.get(self.last).cloned();
            }
        }
        let shape = self.find(flat, schema);
        self.fitted = shape.as_ref().and(seen.id);
        shape
    }

    /// [`Shapes::of`] by comparing the record's keys with the kept shapes'.
    fn find(&mut self, flat: &Flat<'_>, schema: &TelemetrySchema) -> Option<Rc<Shape>> {
        if let Some(shape) = self.kept.get(self.last).filter(|s| s.fits(flat)) {
            return Some(Rc::clone(shape));
        }
        if let Some(i) = self.kept.iter().position(|s| s.fits(flat)) {
            self.last = i;
            return Some(Rc::clone(&self.kept[i]));
        }
        if self.learned >= MAX_LEARNED {
            return None;
        }
        let shape = Rc::new(Shape::learn(flat, schema)?);
        self.learned += 1;
        if self.kept.len() == KEPT {
            self.kept.remove(0);
        }
        self.kept.push(Rc::clone(&shape));
        self.last = self.kept.len() - 1;
        Some(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::source::decode::{Fields, Found};
    use crate::stages::source::flat::Keys;
    use crate::testing::Lcg;
    use std::path::Path;

    fn schema() -> TelemetrySchema {
        let text = format!(
            "{}\n[[declared]]\nname = \"humidity\"\naliases = [\"humidity\", \"hum\"]\ntype = \"double\"\n",
            include_str!("../../../schemas/telemetry.toml")
        );
        TelemetrySchema::parse(Path::new("s.toml"), &text).unwrap()
    }

    /// Every column of `text`, read after the records before it in `keys`,
    /// through `shapes` and, as the definition, by alias.
    fn both(
        text: &str,
        shapes: &mut Shapes,
        keys: &mut Keys,
        schema: &TelemetrySchema,
    ) -> (bool, Vec<(String, String)>) {
        let flat = Flat::parse_after(text, keys).unwrap();
        let seen = keys.seen();
        let shape = shapes.of(&flat, schema, seen);
        let used = shape.is_some();
        let memo = Fields::Flat { flat, shape, seen };
        let plain = Fields::Flat {
            flat: Flat::parse(text).unwrap(),
            shape: None,
            seen: Seen::default(),
        };
        let got = schema
            .columns()
            .map(|c| {
                (
                    format!("{:?}", memo.column(c)),
                    format!("{:?}", plain.get(&c.aliases)),
                )
            })
            .collect();
        (used, got)
    }

    #[test]
    fn columns_through_a_shape_are_what_lookup_by_alias_finds() {
        let schema = schema();
        // Keys the aliases name, in other cases, twice, dotted, and none of them.
        let pool = [
            "deviceId",
            "DEVICEID",
            "device_id",
            "deviceType",
            "timestamp",
            "eventTime",
            "Timestamp",
            "temperature",
            "temp",
            "pressure",
            "vibration",
            "priority",
            "messageId",
            "MessageID",
            "IoTHub",
            "IoTHub.MessageId",
            "IoTHub.ConnectionDeviceId",
            "EventEnqueuedUtcTime",
            "humidity",
            "hum",
            "HUM",
            "x",
        ];
        let mut rng = Lcg(0x5348_4150_4553);
        // A few shapes per blob, as producers write them.
        let templates: Vec<Vec<&str>> = (0..6)
            .map(|_| {
                (0..1 + rng.below(9))
                    .map(|_| pool[rng.below(pool.len() as u64) as usize])
                    .collect()
            })
            .collect();
        let (mut records, mut memo, mut repeats) = (0, 0, 0);
        // The record the shapes last fitted: one that repeats it takes the shortcut.
        let mut fitted = None;
        let mut t = 0;
        for _blob in 0..300 {
            let (mut shapes, mut kept) = (Shapes::default(), Keys::default());
            for _ in 0..40 {
                // Mostly the shape of the record before, as in a blob.
                if rng.below(2) == 0 {
                    t = rng.below(templates.len() as u64) as usize;
                }
                let keys = &templates[t];
                let members: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        let value = match rng.below(8) {
                            0 => "null".to_string(),
                            1 => "true".to_string(),
                            2 => "[1]".to_string(),
                            3 => format!(
                                "{{\"ConnectionDeviceId\":\"n{}\",\"MessageId\":\"m\"}}",
                                rng.below(9)
                            ),
                            4 | 5 => format!("{}.5", rng.below(100)),
                            _ => format!("\"v{}\"", rng.below(1000)),
                        };
                        format!("\"{k}\":{value}")
                    })
                    .collect();
                let text = format!("{{{}}}", members.join(","));
                if rng.below(8) == 0 {
                    // A record the scanner reads but the shapes never see (an
                    // IoT Hub envelope is read as one).
                    Flat::parse_after(&text, &mut kept).unwrap();
                    continue;
                }
                let (used, got) = both(&text, &mut shapes, &mut kept, &schema);
                for (i, (through_shape, by_alias)) in got.iter().enumerate() {
                    assert_eq!(through_shape, by_alias, "column {i} of {text}");
                }
                records += 1;
                memo += usize::from(used);
                let seen = kept.seen();
                repeats += usize::from(seen.repeated().is_some() && seen.repeated() == fitted);
                fitted = seen.id.filter(|_| used);
            }
        }
        // Nested objects keep some records off the memo; most are on it, and
        // many of those take the shortcut of a record that repeats the one before.
        assert!(memo > records / 3 && memo < records, "{memo} of {records}");
        assert!(repeats > memo / 10 && repeats < memo, "{repeats} of {memo}");
    }

    #[test]
    fn keys_are_the_same_exactly_when_their_bytes_are() {
        let mut rng = Lcg(0x5341_4d45);
        let mut equal = 0;
        for _ in 0..100_000 {
            let a: Vec<u8> = (0..rng.below(40))
                .map(|_| b'a' + rng.below(2) as u8)
                .collect();
            let mut b = a.clone();
            match rng.below(3) {
                0 => {}
                1 if !b.is_empty() => {
                    let i = rng.below(b.len() as u64) as usize;
                    b[i] ^= 1 << rng.below(8);
                }
                _ => b.push(b'a'),
            }
            assert_eq!(same(&a, &b), a == b, "{a:?} {b:?}");
            equal += usize::from(a == b);
        }
        assert!(equal > 20_000 && equal < 50_000, "{equal}");
    }

    #[test]
    fn a_shape_holds_only_for_the_same_keys_in_the_same_order() {
        let schema = schema();
        let mut shapes = Shapes::default();
        // In order, through one memo: each record with the device id it names.
        let cases = [
            // Duplicate keys: the first exact match, learned and then through the memo.
            (r#"{"deviceId":"a","deviceId":"b"}"#, Found::Str("a")),
            (r#"{"deviceId":"c","deviceId":"d"}"#, Found::Str("c")),
            // Keys of the same length in another case: exact beats case-insensitive.
            (r#"{"DEVICEID":"e","deviceId":"f"}"#, Found::Str("f")),
            (r#"{"deviceId":"g","DEVICEID":"h"}"#, Found::Str("g")),
            (r#"{"DEVICEID":"i","deviceid":"j"}"#, Found::Str("i")),
            // A null member is missing: the next alias is read.
            (r#"{"deviceId":"k","device_id":"l"}"#, Found::Str("k")),
            (r#"{"deviceId":null,"device_id":"m"}"#, Found::Str("m")),
            (r#"{"deviceId":null,"device_id":null}"#, Found::Missing),
            // The same key holding an object: a dotted alias reaches into it.
            (r#"{"IoTHub":"o"}"#, Found::Missing),
            (r#"{"IoTHub":{"ConnectionDeviceId":"p"}}"#, Found::Str("p")),
        ];
        for (text, want) in cases {
            let flat = Flat::parse(text).unwrap();
            let shape = shapes.of(&flat, &schema, Seen::default());
            let fields = Fields::Flat {
                flat,
                shape,
                seen: Seen::default(),
            };
            assert_eq!(fields.column(&schema.device_id), want, "{text}");
        }
    }
}

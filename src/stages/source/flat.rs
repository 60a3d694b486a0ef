//! A JSON object's members borrowed from its text: the hot path of decoding, with no allocation per field.
//!
//! `serde_json::Value` allocates every key and every string of every record,
//! including the fields the job ignores (`EventProcessedUtcTime`, ...). A
//! [`Flat`] keeps members as slices of the line (a string is copied only when
//! it holds escapes), and nested objects (`IoTHub`, `SystemProperties`) as
//! `Flat`s of their own, so dotted aliases still resolve.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

/// One member's value.
#[derive(Debug, PartialEq)]
pub enum Member<'a> {
    Null,
    Bool(bool),
    Num(Number),
    Str(Cow<'a, str>),
    Object(Flat<'a>),
    /// Arrays are never telemetry values; they are only noted, not kept.
    Array,
}

/// The members of one JSON object, in the order written.
#[derive(Debug, Default, PartialEq)]
pub struct Flat<'a> {
    pub members: Vec<(Cow<'a, str>, Member<'a>)>,
}

impl<'a> Flat<'a> {
    /// Parses one JSON object (the whole text must be that object).
    pub fn parse(text: &'a str) -> Result<Flat<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The member named `key`: exact match first, then ASCII case-insensitive.
    pub fn get(&self, key: &str) -> Option<&Member<'a>> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .or_else(|| {
                self.members
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
            })
            .map(|(_, v)| v)
    }

    /// The member at a dotted path (`IoTHub.ConnectionDeviceId`): a flat key of that
    /// whole name first, then a path into nested objects.
    pub fn lookup(&self, alias: &str) -> Option<&Member<'a>> {
        if let Some(m) = self.get(alias) {
            return Some(m);
        }
        let (first, rest) = alias.split_once('.')?;
        match self.get(first)? {
            Member::Object(inner) => inner.lookup(rest),
            _ => None,
        }
    }
}

/// A string that borrows from the input when it can.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

struct MemberVisitor;

impl<'de> Visitor<'de> for MemberVisitor {
    type Value = Member<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Member::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Member::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Member::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Member::Num(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Member::Num(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(v).map_or(Member::Null, Member::Num))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Member::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        FlatVisitor.visit_map(map).map(Member::Object)
    }
}

impl<'de> Deserialize<'de> for Member<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MemberVisitor)
    }
}

struct FlatVisitor;

impl<'de> Visitor<'de> for FlatVisitor {
    type Value = Flat<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(12));
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            members.push((key, map.next_value::<Member<'de>>()?));
        }
        Ok(Flat { members })
    }
}

impl<'de> Deserialize<'de> for Flat<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FlatVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_borrow_unless_escaped_and_nested_paths_resolve() {
        let text = r#"{"deviceId":"d\"1","temp":21.5,"n":-3,"ok":true,"x":null,"a":[1,{"b":2}],
            "IoTHub":{"MessageId":"m-1","ConnectionDeviceId":"d1"},"IoTHub.MessageId":"flat"}"#;
        let f = Flat::parse(text).unwrap();
        assert_eq!(
            f.get("deviceid"),
            Some(&Member::Str(Cow::Owned("d\"1".into())))
        );
        assert!(matches!(f.get("IOTHUB"), Some(Member::Object(_))));
        assert_eq!(
            f.get("temp"),
            Some(&Member::Num(Number::from_f64(21.5).unwrap()))
        );
        assert_eq!(f.get("n"), Some(&Member::Num((-3).into())));
        assert_eq!(f.get("ok"), Some(&Member::Bool(true)));
        assert_eq!(f.get("x"), Some(&Member::Null));
        assert_eq!(f.get("a"), Some(&Member::Array));
        // A flat key of the whole dotted name wins over the path.
        assert_eq!(
            f.lookup("IoTHub.MessageId"),
            Some(&Member::Str(Cow::Borrowed("flat")))
        );
        match f.lookup("iothub.connectiondeviceid") {
            Some(Member::Str(Cow::Borrowed(s))) => assert_eq!(*s, "d1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.lookup("IoTHub.Missing"), None);
        assert_eq!(f.lookup("temp.x"), None);
    }

    #[test]
    fn not_an_object_or_trailing_text_is_an_error() {
        assert!(Flat::parse("[1]").is_err());
        assert!(Flat::parse("{\"a\":1} x").is_err());
        assert!(Flat::parse("{\"a\":").is_err());
        assert!(Flat::parse("{\"a\":NaN}").is_err());
    }
}

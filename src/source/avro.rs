//! Avro object container files (IoT Hub routing's Avro encoding, Event Hubs Capture), read block by block.
//!
//! A small reader of the Avro 1.11 container format, enough for what these
//! producers write: a header with the writer's schema and codec (`null`,
//! `deflate` or `snappy`), then blocks of records. Each block is decompressed
//! on its own, so a file is never inflated whole, and a block cut short (a file
//! still being written) costs only that block. Records come out as JSON values,
//! so the envelope logic is the same as for IoT Hub routing's JSON encoding.

use std::collections::HashMap;
use std::io::Read;

use serde_json::{Map, Number, Value};

/// The four bytes every Avro container file starts with.
pub const MAGIC: &[u8; 4] = b"Obj\x01";

/// A writer's schema, resolved enough to decode (named types are inlined by index).
#[derive(Debug, Clone)]
enum Schema {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Record(Vec<(String, usize)>),
    Enum(Vec<String>),
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    Fixed(usize),
}

/// All the schema's nodes; children refer to each other by index (so named types can recur).
#[derive(Debug, Default)]
struct Schemas {
    nodes: Vec<Schema>,
    named: HashMap<String, usize>,
}

impl Schemas {
    fn parse(json: &Value) -> Result<(Schemas, usize), String> {
        let mut s = Schemas::default();
        let root = s.node(json, "")?;
        Ok((s, root))
    }

    fn push(&mut self, schema: Schema) -> usize {
        self.nodes.push(schema);
        self.nodes.len() - 1
    }

    /// Registers a named type (full name and bare name) before its body, so it may refer to itself.
    fn name(&mut self, obj: &Map<String, Value>, namespace: &str) -> (usize, String) {
        let idx = self.push(Schema::Null);
        let name = obj.get("name").and_then(Value::as_str).unwrap_or_default();
        let ns = obj
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(namespace);
        let full = if name.contains('.') || ns.is_empty() {
            name.to_string()
        } else {
            format!("{ns}.{name}")
        };
        self.named.insert(full.clone(), idx);
        self.named
            .insert(full.rsplit('.').next().unwrap_or(&full).to_string(), idx);
        let ns = full.rsplit_once('.').map_or("", |(ns, _)| ns).to_string();
        (idx, ns)
    }

    fn node(&mut self, json: &Value, namespace: &str) -> Result<usize, String> {
        let primitive = |name: &str| match name {
            "null" => Some(Schema::Null),
            "boolean" => Some(Schema::Boolean),
            "int" => Some(Schema::Int),
            "long" => Some(Schema::Long),
            "float" => Some(Schema::Float),
            "double" => Some(Schema::Double),
            "bytes" => Some(Schema::Bytes),
            "string" => Some(Schema::String),
            _ => None,
        };
        match json {
            Value::String(name) => match primitive(name) {
                Some(p) => Ok(self.push(p)),
                None => self
                    .named
                    .get(name.as_str())
                    .or_else(|| self.named.get(&format!("{namespace}.{name}")))
                    .copied()
                    .ok_or_else(|| format!("schema refers to unknown type `{name}`")),
            },
            Value::Array(branches) => {
                let mut idx = Vec::with_capacity(branches.len());
                for b in branches {
                    idx.push(self.node(b, namespace)?);
                }
                Ok(self.push(Schema::Union(idx)))
            }
            Value::Object(obj) => {
                let ty = obj.get("type").ok_or("schema object without `type`")?;
                let Some(ty) = ty.as_str() else {
                    return self.node(ty, namespace); // {"type": {...}} or {"type": [...]}
                };
                match ty {
                    "record" | "error" => {
                        let (idx, ns) = self.name(obj, namespace);
                        let mut fields = Vec::new();
                        for f in obj
                            .get("fields")
                            .and_then(Value::as_array)
                            .ok_or("record schema without `fields`")?
                        {
                            let name = f
                                .get("name")
                                .and_then(Value::as_str)
                                .ok_or("record field without `name`")?;
                            let ty = f.get("type").ok_or("record field without `type`")?;
                            fields.push((name.to_string(), self.node(ty, &ns)?));
                        }
                        self.nodes[idx] = Schema::Record(fields);
                        Ok(idx)
                    }
                    "enum" => {
                        let (idx, _) = self.name(obj, namespace);
                        let symbols = obj
                            .get("symbols")
                            .and_then(Value::as_array)
                            .ok_or("enum schema without `symbols`")?
                            .iter()
                            .map(|s| s.as_str().unwrap_or_default().to_string())
                            .collect();
                        self.nodes[idx] = Schema::Enum(symbols);
                        Ok(idx)
                    }
                    "fixed" => {
                        let (idx, _) = self.name(obj, namespace);
                        let size = obj
                            .get("size")
                            .and_then(Value::as_u64)
                            .ok_or("fixed schema without `size`")?;
                        self.nodes[idx] = Schema::Fixed(size as usize);
                        Ok(idx)
                    }
                    "array" => {
                        let items = obj.get("items").ok_or("array schema without `items`")?;
                        let items = self.node(items, namespace)?;
                        Ok(self.push(Schema::Array(items)))
                    }
                    "map" => {
                        let values = obj.get("values").ok_or("map schema without `values`")?;
                        let values = self.node(values, namespace)?;
                        Ok(self.push(Schema::Map(values)))
                    }
                    // Logical types (timestamp-millis, ...) are read as their underlying type.
                    other => self.node(&Value::String(other.to_string()), namespace),
                }
            }
            other => Err(format!("unexpected schema {other}")),
        }
    }
}

/// A cursor over Avro binary encoding.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

const CUT: &str = "cut off before its end";

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or(CUT)?;
        let out = self.data.get(self.pos..end).ok_or(CUT)?;
        self.pos = end;
        Ok(out)
    }

    /// A zig-zag varint (Avro's `int` and `long`).
    fn long(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.data.get(self.pos).ok_or(CUT)?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn len(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| format!("negative length {n}"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.len()?;
        self.take(n)
    }

    /// The item count of the next block of an array or map (0 ends it).
    fn block_count(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        if n < 0 {
            self.long()?; // the block's size in bytes, which we do not need
        }
        Ok(n.unsigned_abs() as usize)
    }

    fn value(&mut self, s: &Schemas, node: usize) -> Result<Value, String> {
        Ok(match &s.nodes[node] {
            Schema::Null => Value::Null,
            Schema::Boolean => Value::Bool(self.take(1)?[0] != 0),
            Schema::Int | Schema::Long => Value::Number(self.long()?.into()),
            Schema::Float => {
                let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| CUT)?;
                Number::from_f64(f64::from(f32::from_le_bytes(b)))
                    .map_or(Value::Null, Value::Number)
            }
            Schema::Double => {
                let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| CUT)?;
                Number::from_f64(f64::from_le_bytes(b)).map_or(Value::Null, Value::Number)
            }
            // Bytes as text: a message Body is UTF-8 JSON; anything else is malformed downstream.
            Schema::Bytes | Schema::String => {
                Value::String(String::from_utf8_lossy(self.bytes()?).into_owned())
            }
            Schema::Fixed(n) => Value::String(String::from_utf8_lossy(self.take(*n)?).into_owned()),
            Schema::Enum(symbols) => {
                let i = self.len()?;
                Value::String(symbols.get(i).cloned().ok_or("enum index out of range")?)
            }
            Schema::Union(branches) => {
                let i = self.len()?;
                let b = *branches.get(i).ok_or("union index out of range")?;
                self.value(s, b)?
            }
            Schema::Record(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (name, f) in fields {
                    map.insert(name.clone(), self.value(s, *f)?);
                }
                Value::Object(map)
            }
            Schema::Array(items) => {
                let mut out = Vec::new();
                loop {
                    let n = self.block_count()?;
                    if n == 0 {
                        break;
                    }
                    for _ in 0..n {
                        out.push(self.value(s, *items)?);
                    }
                }
                Value::Array(out)
            }
            Schema::Map(values) => {
                let mut out = Map::new();
                loop {
                    let n = self.block_count()?;
                    if n == 0 {
                        break;
                    }
                    for _ in 0..n {
                        let k = String::from_utf8_lossy(self.bytes()?).into_owned();
                        out.insert(k, self.value(s, *values)?);
                    }
                }
                Value::Object(out)
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Null,
    Deflate,
    Snappy,
}

/// One record of a container file, or why a stretch of it could not be read.
pub enum Item {
    /// The record's 1-based ordinal in the file, and its value.
    Record(u64, Value),
    /// A block that could not be read: the ordinal of its first record, how many
    /// records it claimed, and why. Reading stops after it.
    BadBlock { first: u64, count: u64, why: String },
}

/// Reads a container file's header, then calls `f` for each record, block by block.
/// An error is a whole-file problem (not Avro, a bad header, an unknown codec).
pub fn for_each(data: &[u8], mut f: impl FnMut(Item)) -> Result<(), String> {
    let mut c = Cursor::new(data);
    if c.take(4).ok() != Some(MAGIC.as_slice()) {
        return Err("not an Avro container file (no `Obj\\x01` magic)".into());
    }
    let mut meta: HashMap<String, Vec<u8>> = HashMap::new();
    let header = |c: &mut Cursor<'_>, meta: &mut HashMap<String, Vec<u8>>| -> Result<(), String> {
        loop {
            let n = c.block_count()?;
            if n == 0 {
                return Ok(());
            }
            for _ in 0..n {
                let k = String::from_utf8_lossy(c.bytes()?).into_owned();
                meta.insert(k, c.bytes()?.to_vec());
            }
        }
    };
    header(&mut c, &mut meta).map_err(|e| format!("Avro header: {e}"))?;
    let sync: [u8; 16] = c
        .take(16)
        .map_err(|e| format!("Avro header: {e}"))?
        .try_into()
        .map_err(|_| "Avro header: sync marker cut off")?;
    let schema_json: Value = meta
        .get("avro.schema")
        .ok_or("Avro header has no avro.schema")
        .and_then(|s| serde_json::from_slice(s).map_err(|_| "Avro schema is not JSON"))?;
    let (schemas, root) = Schemas::parse(&schema_json).map_err(|e| format!("Avro schema: {e}"))?;
    let codec = match meta.get("avro.codec").map(|c| c.as_slice()) {
        None | Some(b"null") => Codec::Null,
        Some(b"deflate") => Codec::Deflate,
        Some(b"snappy") => Codec::Snappy,
        Some(other) => {
            return Err(format!(
                "Avro codec `{}` is not supported (null, deflate and snappy are)",
                String::from_utf8_lossy(other)
            ))
        }
    };
    let mut ordinal = 0u64;
    let mut inflated = Vec::new();
    while !c.at_end() {
        let first = ordinal + 1;
        let block = (|| -> Result<(u64, &[u8]), String> {
            let count = c.long()?;
            let size = c.len()?;
            let body = c.take(size)?;
            if c.take(16)? != sync {
                return Err("sync marker does not match the header's".into());
            }
            Ok((count.max(0) as u64, body))
        })();
        let (count, body) = match block {
            Ok(b) => b,
            Err(why) => {
                f(Item::BadBlock {
                    first,
                    count: 0,
                    why: format!("block {why}"),
                });
                return Ok(());
            }
        };
        let body: &[u8] = match codec {
            Codec::Null => body,
            Codec::Deflate => {
                inflated.clear();
                if let Err(e) = flate2::read::DeflateDecoder::new(body).read_to_end(&mut inflated) {
                    f(Item::BadBlock {
                        first,
                        count,
                        why: format!("deflate: {e}"),
                    });
                    return Ok(());
                }
                &inflated
            }
            Codec::Snappy => match snappy_block(body) {
                Ok(b) => {
                    inflated = b;
                    &inflated
                }
                Err(why) => {
                    f(Item::BadBlock { first, count, why });
                    return Ok(());
                }
            },
        };
        let mut rc = Cursor::new(body);
        for i in 0..count {
            match rc.value(&schemas, root) {
                Ok(v) => f(Item::Record(first + i, v)),
                Err(why) => {
                    // Records are not delimited: after one bad record the block cannot resync.
                    f(Item::BadBlock {
                        first: first + i,
                        count: count - i,
                        why: format!("record {}: {why}", first + i),
                    });
                    return Ok(());
                }
            }
        }
        ordinal += count;
    }
    Ok(())
}

/// Avro's snappy codec: a raw snappy block followed by the big-endian CRC-32 of the plain bytes.
fn snappy_block(body: &[u8]) -> Result<Vec<u8>, String> {
    let (data, _crc) = body
        .split_at_checked(body.len().saturating_sub(4))
        .ok_or("snappy block cut off")?;
    snap::raw::Decoder::new()
        .decompress_vec(data)
        .map_err(|e| format!("snappy: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Avro's zig-zag varint, written the way the spec's examples show.
    fn zz(n: i64, out: &mut Vec<u8>) {
        let mut v = ((n << 1) ^ (n >> 63)) as u64;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    #[test]
    fn zigzag_matches_the_spec_table() {
        // From the Avro specification: 0→00, -1→01, 1→02, -2→03, 2→04, -64→7f, 64→80 01.
        for (n, bytes) in [
            (0i64, vec![0x00u8]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-2, vec![0x03]),
            (2, vec![0x04]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
        ] {
            assert_eq!(Cursor::new(&bytes).long().unwrap(), n);
            let mut enc = Vec::new();
            zz(n, &mut enc);
            assert_eq!(enc, bytes);
        }
    }

    fn file(schema: &str, codec: &str, blocks: &[(i64, Vec<u8>)]) -> Vec<u8> {
        let sync = [7u8; 16];
        let mut out = MAGIC.to_vec();
        zz(2, &mut out);
        for (k, v) in [("avro.schema", schema), ("avro.codec", codec)] {
            zz(k.len() as i64, &mut out);
            out.extend_from_slice(k.as_bytes());
            zz(v.len() as i64, &mut out);
            out.extend_from_slice(v.as_bytes());
        }
        zz(0, &mut out);
        out.extend_from_slice(&sync);
        for (count, body) in blocks {
            zz(*count, &mut out);
            zz(body.len() as i64, &mut out);
            out.extend_from_slice(body);
            out.extend_from_slice(&sync);
        }
        out
    }

    type BadBlocks = Vec<(u64, u64, String)>;

    fn collect(data: &[u8]) -> (Vec<(u64, Value)>, BadBlocks) {
        let (mut recs, mut bad) = (Vec::new(), Vec::new());
        for_each(data, |i| match i {
            Item::Record(n, v) => recs.push((n, v)),
            Item::BadBlock { first, count, why } => bad.push((first, count, why)),
        })
        .unwrap();
        (recs, bad)
    }

    const SCHEMA: &str = r#"{"type":"record","name":"M","fields":[
        {"name":"id","type":"long"},
        {"name":"tags","type":{"type":"map","values":["null","string","double"]}},
        {"name":"Body","type":["null","bytes"]}]}"#;

    fn record(id: i64, body: &str) -> Vec<u8> {
        let mut r = Vec::new();
        zz(id, &mut r);
        zz(1, &mut r); // one map entry
        zz(1, &mut r);
        r.push(b'k');
        zz(2, &mut r); // union branch 2: double
        r.extend_from_slice(&1.5f64.to_le_bytes());
        zz(0, &mut r); // end of map
        zz(1, &mut r); // union branch 1: bytes
        zz(body.len() as i64, &mut r);
        r.extend_from_slice(body.as_bytes());
        r
    }

    #[test]
    fn records_of_null_and_deflate_blocks() {
        let mut b1 = record(1, "{\"a\":1}");
        b1.extend(record(-300, "x"));
        let plain = file(SCHEMA, "null", &[(2, b1.clone())]);
        let (recs, bad) = collect(&plain);
        assert!(bad.is_empty());
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0].1,
            serde_json::json!({"id": 1, "tags": {"k": 1.5}, "Body": "{\"a\":1}"})
        );
        assert_eq!((recs[1].0, &recs[1].1["id"]), (2, &serde_json::json!(-300)));

        let deflate = |plain: &[u8]| {
            let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut z, plain).unwrap();
            z.finish().unwrap()
        };
        let deflated = file(
            SCHEMA,
            "deflate",
            &[(2, deflate(&b1)), (1, deflate(&record(3, "y")))],
        );
        let (recs2, bad) = collect(&deflated);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(recs2.len(), 3);
        assert_eq!(recs2[..2], recs[..]);
        assert_eq!(recs2[2].0, 3);
    }

    #[test]
    fn header_only_file_has_no_records_and_a_cut_block_is_one_bad_block() {
        let empty = file(SCHEMA, "deflate", &[]);
        assert_eq!(collect(&empty).0.len(), 0);

        let mut two = record(1, "a");
        two.extend(record(2, "b"));
        let full = file(SCHEMA, "null", &[(1, record(0, "z")), (2, two)]);
        let cut = &full[..full.len() - 20];
        let (recs, bad) = collect(cut);
        assert_eq!(recs.len(), 1, "the complete first block is kept");
        assert_eq!((bad[0].0, bad[0].1), (2, 0));
        assert!(bad[0].2.contains("cut off"), "{}", bad[0].2);
    }

    #[test]
    fn unknown_codec_and_non_avro_are_whole_file_errors() {
        let err = for_each(&file(SCHEMA, "zstandard", &[]), |_| {}).unwrap_err();
        assert!(err.contains("zstandard"), "{err}");
        assert!(for_each(b"{\"a\":1}", |_| {}).is_err());
    }

    #[test]
    fn named_types_can_be_reused() {
        let schema = r#"{"type":"record","name":"R","namespace":"n","fields":[
            {"name":"a","type":{"type":"fixed","name":"F","size":2}},
            {"name":"b","type":"n.F"},
            {"name":"c","type":{"type":"enum","name":"E","symbols":["X","Y"]}}]}"#;
        let mut r = b"hiyo".to_vec();
        zz(1, &mut r);
        let (recs, bad) = collect(&file(schema, "null", &[(1, r)]));
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            recs[0].1,
            serde_json::json!({"a": "hi", "b": "yo", "c": "Y"})
        );
    }
}

//! Avro object container files (IoT Hub routing's Avro encoding, Event Hubs Capture), read block by block.
//!
//! A small reader of the Avro 1.11 container format, enough for what these
//! producers write: a header with the writer's schema and codec (`null`,
//! `deflate` or `snappy`), then blocks of records. Each block is decompressed
//! on its own, so a file is never inflated whole, and a block cut short (a file
//! still being written) costs only that block. Records come out as JSON values,
//! so the envelope logic is the same as for IoT Hub routing's JSON encoding.
//!
//! Hand-written (not `apache-avro`) for per-record salvage and for bounds: a
//! hostile file cannot make it recurse without end (schemas and values are
//! depth-limited, a schema that can never end is refused), allocate what a count
//! or length claims (every count is paid for by the bytes that remain), inflate a
//! block past its limit, or lose records silently (a block must decode exactly
//! its declared count in exactly its declared bytes, and snappy's CRC must match;
//! otherwise the block is one reject that says why).

use std::collections::HashMap;
use std::io::Read;

use serde_json::{Map, Number, Value};

use crate::config::formats::Limits;

/// How deep schemas and values may nest (records in records, unions, arrays).
/// Telemetry needs 3 or 4; serde_json's own limit is 128.
pub const MAX_DEPTH: usize = 64;
/// The most a single block may inflate to, whatever the blob's limit.
pub const MAX_BLOCK_BYTES: u64 = 256 << 20;
/// Records one block may hold: a block's records are decoded before any is
/// given out (a block is all or nothing), so this bounds what that holds.
pub const MAX_BLOCK_RECORDS: u64 = 1_000_000;
/// Values a block may hold beyond one per byte (nulls and empty records take no bytes).
const ZERO_SIZE_VALUES: u64 = 4096;
/// The memory one block's decoded values may take: every value, string, field
/// name and enum symbol counted ([`Budget`]). A record repeats its schema's
/// field names, so without it a small block with long names (or a deflated one
/// of tiny values) could decode to gigabytes. An Event Hubs Capture block of
/// a megabyte decodes to a few.
pub const MAX_BLOCK_DECODED: u64 = 128 << 20;
/// What one decoded value takes beyond its text, about: the value itself, or a
/// map entry with its key.
const VALUE_BYTES: u64 = 64;

/// What one block's values may still take: how many (one per byte of the
/// block, plus [`ZERO_SIZE_VALUES`]), so a count in the input can never make
/// the reader loop or allocate past what it sent; and their memory
/// ([`MAX_BLOCK_DECODED`]).
struct Budget {
    values: u64,
    bytes: u64,
}

impl Budget {
    fn take(&mut self, values: u64, bytes: u64) -> Result<(), String> {
        self.values = self
            .values
            .checked_sub(values)
            .ok_or("more values than the block's bytes can hold")?;
        self.bytes = self.bytes.checked_sub(bytes).ok_or_else(|| {
            format!("decodes to more than {MAX_BLOCK_DECODED} bytes, the most one block may take")
        })?;
        Ok(())
    }
}

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
        let root = s.node(json, "", 0)?;
        if !s.can_end()[root] {
            return Err("recursive schema: a record of it could never end".into());
        }
        Ok((s, root))
    }

    /// Which nodes have a finite value: the least fixpoint, where a record needs
    /// all its fields to end, a union one branch, and arrays and maps can be empty.
    fn can_end(&self) -> Vec<bool> {
        let mut ends = vec![false; self.nodes.len()];
        loop {
            let mut changed = false;
            for (i, node) in self.nodes.iter().enumerate() {
                let now = match node {
                    Schema::Record(fields) => fields.iter().all(|(_, f)| ends[*f]),
                    Schema::Union(branches) => branches.iter().any(|b| ends[*b]),
                    _ => true,
                };
                if now && !ends[i] {
                    ends[i] = true;
                    changed = true;
                }
            }
            if !changed {
                return ends;
            }
        }
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

    /// The node of one schema (a name, a union or an object), its children parsed first.
    fn node(&mut self, json: &Value, namespace: &str, depth: usize) -> Result<usize, String> {
        if depth > MAX_DEPTH {
            return Err(format!("schema nested deeper than {MAX_DEPTH}"));
        }
        let depth = depth + 1;
        match json {
            Value::String(name) => match primitive(name) {
                Some(p) => Ok(self.push(p)),
                None => self.named_node(name, namespace),
            },
            Value::Array(branches) => {
                let mut idx = Vec::with_capacity(branches.len());
                for b in branches {
                    idx.push(self.node(b, namespace, depth)?);
                }
                Ok(self.push(Schema::Union(idx)))
            }
            Value::Object(obj) => self.object(obj, namespace, depth),
            other => Err(format!("unexpected schema {other}")),
        }
    }

    /// The named type `name` refers to, as written or in `namespace`.
    fn named_node(&self, name: &str, namespace: &str) -> Result<usize, String> {
        self.named
            .get(name)
            .or_else(|| self.named.get(&format!("{namespace}.{name}")))
            .copied()
            .ok_or_else(|| format!("schema refers to unknown type `{name}`"))
    }

    /// The node of a schema object, by its `type` (`depth` already counts it).
    fn object(
        &mut self,
        obj: &Map<String, Value>,
        namespace: &str,
        depth: usize,
    ) -> Result<usize, String> {
        let ty = obj.get("type").ok_or("schema object without `type`")?;
        let Some(ty) = ty.as_str() else {
            return self.node(ty, namespace, depth); // {"type": {...}} or {"type": [...]}
        };
        match ty {
            "record" | "error" => self.record(obj, namespace, depth),
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
                let items = self.node(items, namespace, depth)?;
                Ok(self.push(Schema::Array(items)))
            }
            "map" => {
                let values = obj.get("values").ok_or("map schema without `values`")?;
                let values = self.node(values, namespace, depth)?;
                Ok(self.push(Schema::Map(values)))
            }
            // Logical types (timestamp-millis, ...) are read as their underlying type.
            other => self.node(&Value::String(other.to_string()), namespace, depth),
        }
    }

    /// A record (or error) schema: named before its fields, so a field may refer to it.
    fn record(
        &mut self,
        obj: &Map<String, Value>,
        namespace: &str,
        depth: usize,
    ) -> Result<usize, String> {
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
            fields.push((name.to_string(), self.node(ty, &ns, depth)?));
        }
        self.nodes[idx] = Schema::Record(fields);
        Ok(idx)
    }
}

/// The schema of a primitive type name; `None` for any other name.
fn primitive(name: &str) -> Option<Schema> {
    match name {
        "null" => Some(Schema::Null),
        "boolean" => Some(Schema::Boolean),
        "int" => Some(Schema::Int),
        "long" => Some(Schema::Long),
        "float" => Some(Schema::Float),
        "double" => Some(Schema::Double),
        "bytes" => Some(Schema::Bytes),
        "string" => Some(Schema::String),
        _ => None,
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

    /// One value of `node`, charged to `left` (the block's [`Budget`]).
    fn value(
        &mut self,
        s: &Schemas,
        node: usize,
        depth: usize,
        left: &mut Budget,
    ) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("values nested deeper than {MAX_DEPTH}"));
        }
        left.take(1, VALUE_BYTES)?;
        let depth = depth + 1;
        Ok(match &s.nodes[node] {
            Schema::Null => Value::Null,
            Schema::Boolean => Value::Bool(self.take(1)?[0] != 0),
            Schema::Int | Schema::Long => Value::Number(self.long()?.into()),
            Schema::Float => {
                let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| CUT)?;
                double(f64::from(f32::from_le_bytes(b)))
            }
            Schema::Double => {
                let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| CUT)?;
                double(f64::from_le_bytes(b))
            }
            // Bytes as text: a message Body is UTF-8 JSON; anything else is malformed downstream.
            Schema::Bytes | Schema::String => {
                let text = self.bytes()?;
                left.take(0, text.len() as u64)?;
                Value::String(String::from_utf8_lossy(text).into_owned())
            }
            Schema::Fixed(n) => {
                left.take(0, *n as u64)?;
                Value::String(String::from_utf8_lossy(self.take(*n)?).into_owned())
            }
            Schema::Enum(symbols) => {
                let i = self.len()?;
                let symbol = symbols.get(i).ok_or("enum index out of range")?;
                left.take(0, symbol.len() as u64)?;
                Value::String(symbol.clone())
            }
            Schema::Union(branches) => {
                let i = self.len()?;
                let b = *branches.get(i).ok_or("union index out of range")?;
                self.value(s, b, depth, left)?
            }
            Schema::Record(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (name, f) in fields {
                    left.take(0, VALUE_BYTES + name.len() as u64)?;
                    map.insert(name.clone(), self.value(s, *f, depth, left)?);
                }
                Value::Object(map)
            }
            Schema::Array(items) => {
                let mut out = Vec::new();
                while let Some(n) = self.items(left.values)? {
                    for _ in 0..n {
                        out.push(self.value(s, *items, depth, left)?);
                    }
                }
                Value::Array(out)
            }
            Schema::Map(values) => {
                let mut out = Map::new();
                while let Some(n) = self.items(left.values)? {
                    for _ in 0..n {
                        let key = self.bytes()?;
                        left.take(0, VALUE_BYTES + key.len() as u64)?;
                        let k = String::from_utf8_lossy(key).into_owned();
                        out.insert(k, self.value(s, *values, depth, left)?);
                    }
                }
                Value::Object(out)
            }
        })
    }

    /// The item count of an array's or map's next block; `None` at its end.
    fn items(&mut self, left: u64) -> Result<Option<u64>, String> {
        let n = self.block_count()? as u64;
        if n > left {
            return Err(format!(
                "an array or map claims {n} items, more than the block's bytes can hold"
            ));
        }
        Ok((n > 0).then_some(n))
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
    /// records it claimed, and why. Reading goes on with the next block when
    /// this one's framing held (its size and sync marker), else it stops.
    BadBlock { first: u64, count: u64, why: String },
}

/// Reads a container file's header, then calls `f` for each record, block by block.
/// An error is a whole-file problem (not Avro, a bad header, an unknown codec).
/// An error after records were given is a stop: the blob passed `limits.max_blob_bytes`.
pub fn for_each(
    data: &[u8],
    limits: &Limits,
    mut f: impl FnMut(Item) -> Result<(), String>,
) -> Result<(), String> {
    let mut c = Cursor::new(data);
    let header = Header::read(&mut c)?;
    let mut blocks = Blocks {
        c,
        sync: header.sync,
        codec: header.codec,
        inflated: Vec::new(),
        total: 0,
        limit: limits.max_blob_bytes,
    };
    blocks.for_each(&header.schemas, header.root, &mut f)
}

/// What a container file's header says: the writer's schema, the codec and the sync marker.
struct Header {
    schemas: Schemas,
    root: usize,
    codec: Codec,
    sync: [u8; 16],
}

impl Header {
    /// Reads the magic, the metadata map and the sync marker, then the schema and the codec.
    fn read(c: &mut Cursor<'_>) -> Result<Header, String> {
        if c.take(4).ok() != Some(MAGIC.as_slice()) {
            return Err("not an Avro container file (no `Obj\\x01` magic)".into());
        }
        let meta = metadata(c).map_err(|e| format!("Avro header: {e}"))?;
        let sync: [u8; 16] = c
            .take(16)
            .map_err(|e| format!("Avro header: {e}"))?
            .try_into()
            .map_err(|_| "Avro header: sync marker cut off")?;
        let schema_json: Value = meta
            .get("avro.schema")
            .ok_or("Avro header has no avro.schema")
            .and_then(|s| serde_json::from_slice(s).map_err(|_| "Avro schema is not JSON"))?;
        let (schemas, root) =
            Schemas::parse(&schema_json).map_err(|e| format!("Avro schema: {e}"))?;
        let codec = codec(&meta)?;
        Ok(Header {
            schemas,
            root,
            codec,
            sync,
        })
    }
}

/// The most a header's metadata (keys and values, the schema among them) may
/// take. Event Hubs Capture's schema is under 1 KB, a wide telemetry record's a
/// few tens; the schema is parsed as JSON, which takes about 40 times its text
/// in memory (a 900 MB schema of empty objects, 1.7 MB gzipped, would be 38 GB).
pub const MAX_HEADER_BYTES: usize = 256 << 10;

/// The header's metadata map (`avro.schema`, `avro.codec`, ...), block by block,
/// within [`MAX_HEADER_BYTES`].
fn metadata(c: &mut Cursor<'_>) -> Result<HashMap<String, Vec<u8>>, String> {
    let mut meta: HashMap<String, Vec<u8>> = HashMap::new();
    let mut held = 0usize;
    loop {
        let n = c.block_count()?;
        if n == 0 {
            return Ok(meta);
        }
        for _ in 0..n {
            let (k, v) = (c.bytes()?, c.bytes()?);
            held += k.len() + v.len();
            if held > MAX_HEADER_BYTES {
                return Err(format!("metadata over {MAX_HEADER_BYTES} bytes"));
            }
            meta.insert(String::from_utf8_lossy(k).into_owned(), v.to_vec());
        }
    }
}

/// The codec the metadata names (`null` when it names none).
fn codec(meta: &HashMap<String, Vec<u8>>) -> Result<Codec, String> {
    match meta.get("avro.codec").map(|c| c.as_slice()) {
        None | Some(b"null") => Ok(Codec::Null),
        Some(b"deflate") => Ok(Codec::Deflate),
        Some(b"snappy") => Ok(Codec::Snappy),
        Some(other) => Err(format!(
            "Avro codec `{}` is not supported (null, deflate and snappy are)",
            String::from_utf8_lossy(other)
        )),
    }
}

/// The blocks of a container file after its header.
struct Blocks<'a> {
    c: Cursor<'a>,
    sync: [u8; 16],
    codec: Codec,
    inflated: Vec<u8>,
    /// Bytes inflated so far, against the blob's limit.
    total: u64,
    limit: u64,
}

impl<'a> Blocks<'a> {
    /// Calls `f` for each record of each block, or once for a block that cannot
    /// be read; stops after a block whose framing is broken. An error: the blob passed its limit.
    fn for_each(
        &mut self,
        schemas: &Schemas,
        root: usize,
        f: &mut impl FnMut(Item) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut ordinal = 0u64;
        let mut number = 0u64;
        while !self.c.at_end() {
            number += 1;
            let first = ordinal + 1;
            let bad = |count: u64, why: String| Item::BadBlock {
                first,
                count,
                why: format!("block {number}: {why}"),
            };
            // A block whose framing is broken (cut, wrong sync) leaves no way to the next one.
            let (count, size, body) = match self.frame() {
                Ok(b) => b,
                Err(why) => {
                    f(bad(0, why))?;
                    return Ok(());
                }
            };
            // Past a bad block, what it claimed (within reason); a good one moves by what it held.
            let claimed = count.clamp(0, size as i64) as u64;
            let body = match self.plain(body)? {
                Ok(body) => body,
                Err(why) => {
                    f(bad(count.max(0) as u64, why))?;
                    ordinal += claimed;
                    continue;
                }
            };
            match block_records(body, count, schemas, root) {
                Ok(values) => {
                    ordinal += values.len() as u64;
                    for (i, v) in values.into_iter().enumerate() {
                        f(Item::Record(first + i as u64, v))?;
                    }
                }
                Err(why) => {
                    ordinal += claimed;
                    f(bad(count.max(0) as u64, why))?;
                }
            }
        }
        Ok(())
    }

    /// The next block's declared count, its size and its (compressed) bytes, its sync marker checked.
    fn frame(&mut self) -> Result<(i64, usize, &'a [u8]), String> {
        let count = self.c.long()?;
        let size = self.c.len()?;
        let body = self.c.take(size)?;
        if self.c.take(16)? != self.sync {
            return Err("sync marker does not match the header's".into());
        }
        Ok((count, size, body))
    }

    /// A block's plain bytes: `Ok(Err(why))` for a block that cannot be
    /// inflated, `Err` when the blob as a whole passes its inflated-size limit.
    fn plain<'s>(&'s mut self, body: &'s [u8]) -> Result<Result<&'s [u8], String>, String> {
        let room = self.limit.saturating_sub(self.total);
        let cap = room.min(MAX_BLOCK_BYTES);
        let plain = match self.codec {
            Codec::Null => Ok(body),
            Codec::Deflate => {
                self.inflated.clear();
                let read = flate2::read::DeflateDecoder::new(body)
                    .take(cap + 1)
                    .read_to_end(&mut self.inflated);
                match read {
                    Err(e) => Err(format!("deflate: {e}")),
                    Ok(_) if self.inflated.len() as u64 > cap => Err(String::new()),
                    Ok(_) => Ok(self.inflated.as_slice()),
                }
            }
            Codec::Snappy => match snappy_block(body, cap) {
                Ok(b) => {
                    self.inflated = b;
                    Ok(self.inflated.as_slice())
                }
                Err(Some(why)) => Err(why),
                Err(None) => Err(String::new()),
            },
        };
        match plain {
            // Over the cap: the blob's limit (a stop), or one block's (a bad block).
            Err(why) if why.is_empty() && cap == room => Err(format!(
                "inflated past max_blob_bytes = {} after {} bytes",
                self.limit, self.total
            )),
            Err(why) if why.is_empty() => Ok(Err(format!(
                "inflates past {MAX_BLOCK_BYTES} bytes, the most one block may hold"
            ))),
            Err(why) => Ok(Err(why)),
            Ok(p) => {
                self.total += p.len() as u64;
                Ok(Ok(p))
            }
        }
    }
}

/// Exactly `count` records in exactly `body`, or why not.
fn block_records(
    body: &[u8],
    count: i64,
    schemas: &Schemas,
    root: usize,
) -> Result<Vec<Value>, String> {
    let count = u64::try_from(count).map_err(|_| format!("negative record count {count}"))?;
    let mut left = Budget {
        values: body.len() as u64 + ZERO_SIZE_VALUES,
        bytes: MAX_BLOCK_DECODED,
    };
    if count > left.values || count > MAX_BLOCK_RECORDS {
        return Err(format!(
            "claims {count} records in {} bytes (a block is read if it holds at most {MAX_BLOCK_RECORDS}, one per byte)",
            body.len()
        ));
    }
    let mut rc = Cursor::new(body);
    let mut out = Vec::new();
    for i in 0..count {
        // Records are not delimited: after one bad record the block cannot resync.
        let v = rc
            .value(schemas, root, 0, &mut left)
            .map_err(|why| format!("record {} of {count}: {why}", i + 1))?;
        out.push(v);
    }
    if !rc.at_end() {
        return Err(format!(
            "declares {count} records but {} of its {} bytes are left after them",
            body.len() - rc.pos,
            body.len()
        ));
    }
    Ok(out)
}

/// Avro's snappy codec: a raw snappy block followed by the big-endian CRC-32 of
/// the plain bytes. `Err(None)`: it would inflate past `cap`.
fn snappy_block(body: &[u8], cap: u64) -> Result<Vec<u8>, Option<String>> {
    let (data, crc) = body
        .split_at_checked(body.len().saturating_sub(4))
        .filter(|(_, crc)| crc.len() == 4)
        .ok_or_else(|| Some("snappy block cut off".to_string()))?;
    let claimed = snap::raw::decompress_len(data).map_err(|e| Some(format!("snappy: {e}")))?;
    if claimed as u64 > cap {
        return Err(None);
    }
    let plain = snap::raw::Decoder::new()
        .decompress_vec(data)
        .map_err(|e| Some(format!("snappy: {e}")))?;
    let want = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(&plain) != want {
        return Err(Some(
            "snappy block's CRC-32 does not match its bytes".into(),
        ));
    }
    Ok(plain)
}

/// A float or double as JSON, which has no NaN or infinity: NaN is null (as
/// in every format), an infinity its text (`Infinity`, `-Infinity`), which the
/// number's column then rejects as `out_of_range` as it does that text in JSON.
fn double(v: f64) -> Value {
    match Number::from_f64(v) {
        Some(n) => Value::Number(n),
        None if v.is_infinite() => {
            Value::String(if v > 0.0 { "Infinity" } else { "-Infinity" }.into())
        }
        None => Value::Null,
    }
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

    /// Avro's doubles and floats may be NaN or infinite, which JSON has no
    /// number for: NaN reads as null, an infinity as its text, which a number
    /// column rejects as `out_of_range` (not null, which would keep the row).
    #[test]
    fn infinities_read_as_their_text_and_nan_as_null() {
        let schema = r#"{"type":"record","name":"T","fields":[
            {"name":"temperature","type":"double"},{"name":"load","type":"float"}]}"#;
        let mut body = Vec::new();
        for (t, l) in [
            (f64::INFINITY, f32::NEG_INFINITY),
            (f64::NAN, f32::NAN),
            (21.5, 0.25),
        ] {
            body.extend_from_slice(&t.to_le_bytes());
            body.extend_from_slice(&l.to_le_bytes());
        }
        let (recs, bad) = collect(&file(schema, "null", &[(3, body)]));
        assert!(bad.is_empty(), "{bad:?}");
        let values: Vec<Value> = recs.into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            values,
            [
                serde_json::json!({"temperature": "Infinity", "load": "-Infinity"}),
                serde_json::json!({"temperature": null, "load": null}),
                serde_json::json!({"temperature": 21.5, "load": 0.25}),
            ]
        );
    }

    /// A header's metadata past 256 KiB is refused before its schema is parsed:
    /// the blob is one unreadable file. Just under the bound, it is read.
    #[test]
    fn a_header_over_its_bound_is_refused_before_the_schema_is_parsed() {
        let schema = |pad: usize| {
            format!(
                r#"{{"type":"record","name":"T","doc":"{}","fields":[{{"name":"t","type":"double"}}]}}"#,
                "x".repeat(pad)
            )
        };
        // The metadata: the two keys, the codec and the schema.
        let fixed = "avro.schema".len() + "avro.codec".len() + "null".len() + schema(0).len();
        let fits = file(
            &schema(MAX_HEADER_BYTES - fixed),
            "null",
            &[(1, 1.5f64.to_le_bytes().to_vec())],
        );
        assert_eq!(collect(&fits).0.len(), 1);
        let over = file(&schema(MAX_HEADER_BYTES - fixed + 1), "null", &[]);
        let err = for_each(&over, &Limits::default(), |_| Ok(())).unwrap_err();
        assert!(err.contains("metadata over 262144 bytes"), "{err}");
    }

    type BadBlocks = Vec<(u64, u64, String)>;

    fn collect(data: &[u8]) -> (Vec<(u64, Value)>, BadBlocks) {
        let (mut recs, mut bad) = (Vec::new(), Vec::new());
        for_each(data, &Limits::default(), |i| {
            match i {
                Item::Record(n, v) => recs.push((n, v)),
                Item::BadBlock { first, count, why } => bad.push((first, count, why)),
            }
            Ok(())
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

    /// Each record repeats its schema's field names: a deflated block of a
    /// million two-byte records under a 256-byte name would decode to about 400
    /// MB. It is one bad block past [`MAX_BLOCK_DECODED`], not an allocation.
    #[test]
    fn long_field_names_cannot_make_a_small_block_decode_to_much() {
        let name = "n".repeat(256);
        let schema = format!(
            r#"{{"type":"record","name":"M","fields":[{{"name":"{name}","type":"long"}}]}}"#
        );
        let count = 1_000_000;
        let mut body = Vec::new();
        for _ in 0..count {
            zz(64, &mut body); // two bytes: 80 01
        }
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, &body).unwrap();
        let deflated = z.finish().unwrap();
        assert!(deflated.len() < 20_000, "{} bytes", deflated.len());
        let (recs, bad) = collect(&file(&schema, "deflate", &[(count, deflated)]));
        assert!(recs.is_empty(), "{} records", recs.len());
        assert_eq!(bad.len(), 1, "{bad:?}");
        let (first, claimed, why) = &bad[0];
        assert_eq!((*first, *claimed), (1, count as u64));
        assert!(why.contains("decodes to more than"), "{why}");
        // A tenth of those records under a one-letter name fits, and is read whole.
        let short = r#"{"type":"record","name":"M","fields":[{"name":"t","type":"long"}]}"#;
        let (recs, bad) = collect(&file(short, "null", &[(100_000, body[..200_000].to_vec())]));
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(recs.len(), 100_000);
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
        let err = for_each(&file(SCHEMA, "zstandard", &[]), &Limits::default(), |_| {
            Ok(())
        })
        .unwrap_err();
        assert!(err.contains("zstandard"), "{err}");
        assert!(for_each(b"{\"a\":1}", &Limits::default(), |_| Ok(())).is_err());
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

"""Reads Parquet data files with pyarrow 14, for tests/it/pyarrow14.rs.

    read.py FILE...

Prints one JSON line per FILE, in order: pyarrow's version, the file's schema as
pyarrow 14 reads it (name and type, as pyarrow prints the type), and its rows.
Each value keeps what a comparison needs: null, a bool, an int, a string,
{"f64": IEEE-754 bits} for a float (NaN included, exact), {"utc_us": µs since the
epoch} for a `timestamp[us, tz=UTC]` and {"other": type, "repr": …} for anything
else, which the test refuses. A file pyarrow cannot read prints {"error": message}:
pyarrow 14 refuses a `string_view` in the embedded Arrow schema (AZURE-FACTS.md).
The file is read alone (ParquetFile), so no partition is inferred from its path.
"""

import json
import struct
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def column(array):
    t = array.type
    if pa.types.is_timestamp(t) and t.unit == "us" and t.tz == "UTC":
        return [None if v is None else {"utc_us": v} for v in array.cast(pa.int64()).to_pylist()]
    if pa.types.is_floating(t):
        return [
            None if v is None else {"f64": struct.unpack("<Q", struct.pack("<d", v))[0]}
            for v in array.cast(pa.float64()).to_pylist()
        ]
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_string(t):
        return array.to_pylist()
    return [None if v is None else {"other": str(t), "repr": repr(v)} for v in array.to_pylist()]


def read(path):
    try:
        table = pq.ParquetFile(path).read()
    except Exception as e:  # the reader's own message is the finding
        return {"error": f"{type(e).__name__}: {e}"}
    schema = [[f.name, str(f.type)] for f in table.schema]
    values = [column(c.combine_chunks()) for c in table.columns]
    rows = [list(r) for r in zip(*values)] if values else []
    return {"pyarrow": pa.__version__, "schema": schema, "rows": rows}


for path in sys.argv[1:]:
    print(json.dumps(read(path)))

"""Reads Delta tables the way Azure ML does, for tests/it/mltable.rs.

    read.py SPEC...
        delta:<version>:<table root>   mltable.from_delta_lake(root, version_as_of=version)
        mltable:<folder>               mltable.load(folder), the folder holding an MLTable

Prints one JSON line per SPEC, in order: the reader's versions, the columns with
their pandas dtypes, and the rows of to_pandas_dataframe() sorted by their JSON
text. Each value keeps what a comparison needs, no more: null (None, NaN, NaT), a
bool, an int, a string, {"f64": IEEE-754 bits} for a float (exact, no decimal
round trip), {"utc_us": µs since the epoch} for a timestamp in UTC, and for the
test to refuse {"naive_us": …} (no time zone), {"tz": name, "us": …} (another
zone) or {"other": type, "repr": …}. A read that fails prints {"error": message}.
"""

import datetime
import json
import math
import struct
import sys
from importlib.metadata import version


def cell(v):
    import numpy as np
    import pandas as pd

    if v is None or v is pd.NaT:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return None
        return {"f64": struct.unpack("<Q", struct.pack("<d", float(v)))[0]}
    if isinstance(v, str):
        return v
    if isinstance(v, pd.Timestamp):
        # The instant (UTC for an aware one) in µs, whatever the unit pandas chose.
        us = int(v.to_datetime64().astype("datetime64[us]").astype(np.int64))
        if v.tzinfo is None:
            return {"naive_us": us}
        if str(v.tzinfo) == "UTC":
            return {"utc_us": us}
        return {"tz": str(v.tzinfo), "us": us}
    if isinstance(v, datetime.date):
        return {"other": "date", "repr": v.isoformat()}
    return {"other": type(v).__name__, "repr": repr(v)}


def read(spec):
    import mltable

    kind, _, rest = spec.partition(":")
    try:
        if kind == "mltable":
            tbl = mltable.load(rest)
        elif kind == "delta":
            v, _, root = rest.partition(":")
            tbl = mltable.from_delta_lake(root, version_as_of=int(v))
        else:
            raise SystemExit(f"read.py: {spec}: not delta:<version>:<root> or mltable:<folder>")
        df = tbl.to_pandas_dataframe()
    except Exception as e:  # the reader's own message is the finding
        return {"error": f"{type(e).__name__}: {e}"}
    columns = [[str(c), str(df[c].dtype)] for c in df.columns]
    values = [[cell(v) for v in df[c].tolist()] for c in df.columns]
    rows = [list(r) for r in zip(*values)] if values else []
    rows.sort(key=lambda r: json.dumps(r, sort_keys=True))
    return {"versions": VERSIONS, "columns": columns, "rows": rows}


VERSIONS = {
    p: version(p)
    for p in ["mltable", "azureml-dataprep", "azureml-dataprep-rslex", "pandas", "numpy", "pyarrow"]
}


def main():
    for spec in sys.argv[1:]:
        print(json.dumps(read(spec)), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Trains a gradient-boosted classifier on coldpath's features_hourly and on hand-made baselines.

    bench/pdm/.venv/bin/python bench/pdm/train.py [--raw bench/pdm/data/raw]
        [--default-lake bench/pdm/data/lake-default] [--declared-lake bench/pdm/data/lake-declared]
        [--split YYYY-MM-DD] [--labels-as-of 2025-04-09T00:00:00Z] [--json FILE]

Rows: one per device and UTC hour with a reading (features_hourly's rows), prediction time
t = window_start + 1 h. Train on rows before --split (minus the last horizon before it, so no
training label looks into the test period), test on the rest. Targets: failure_within_24h and
failure_within_7d, computed here from reference/failures.csv by the contract's rule (a failure in
[t, t + horizon); null when none and t + horizon > labels-as-of; null rows are dropped) and
checked against the declared lake's label columns. Every model predicts the same target on the
same rows (those present in every feature set).

Feature sets (HistGradientBoostingClassifier, the same settings for all):
- default:  coldpath's features_hourly of the job with no [features] table (all its columns);
- declared: coldpath's features_hourly of the declared job (default + declared columns);
- raw:      hourly means of every signal, from the raw readings, nothing else;
- notebook: what a data scientist writes in pandas straight from the raw readings: 3 h and
            24 h trailing means and stds of every signal, error counts per code over 24 h,
            days since each component's maintenance, model and age. Windows are [t - w, t).

Point-in-time checks (printed; a failure exits 1): the lakes' days_since_maintenance columns
against a recomputation that counts only maintenance known before t (a date-only entry from
the end of its date), the error counts against [t - 24 h, t), a sample of the declared
telemetry aggregates against a direct computation over the lake's own silver in [t - w, t),
and the labels against [t, t + horizon). Each check also reports how many rows a leak would
have changed (a maintenance, error or reading at or after t), so a pass is not vacuous.
The notebook features are built the same way and checked the same way.

Without the lakes (before coldpath has run), only raw and notebook are trained.
"""
import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score

HERE = os.path.dirname(os.path.abspath(__file__))
SIGNALS = ["temperature", "pressure", "vibration", "rotation"]
COMPONENTS = ["comp1", "comp2", "comp3", "comp4"]
CODES = ["error1", "error2", "error3", "error4", "error5"]
RANGES = {"temperature": (-40, 150), "pressure": (0, 1000), "vibration": (0, 500), "rotation": (0, 5000)}
HORIZONS = {"24h": 24, "7d": 168}
US = 1_000_000
HOUR_US = 3600 * US
DAY_US = 24 * HOUR_US
KEYS = ["device_id", "window_start"]
NOT_FEATURES = {"device_id", "window_start", "feature_date", "lookback_complete", "run_id"}


def log(*a):
    print(*a, flush=True)


def ts_us(text):
    return int(pd.Timestamp(text).tz_convert("UTC").value // 1000) if pd.Timestamp(text).tzinfo else \
        int(pd.Timestamp(text).tz_localize("UTC").value // 1000)


# ---- the raw container, as a notebook reads it ----------------------------------------
def read_raw(raw):
    """Every reading, deduplicated by messageId (earliest enqueue), records with a value out of
    range dropped (coldpath rejects them); event_time in epoch microseconds."""
    files = sorted(glob.glob(os.path.join(raw, "telemetry", "*", "*", "*", "*", "*.json")))
    schema = pa.schema([("deviceId", pa.string()), ("timestamp", pa.string()),
                        ("messageId", pa.string()), ("EventEnqueuedUtcTime", pa.string())]
                       + [(s, pa.float64()) for s in SIGNALS])
    opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    tables = [pj.read_json(f, parse_options=opts) for f in files]
    t = pa.concat_tables(tables).to_pandas()
    t["event_time"] = pd.to_datetime(t["timestamp"], utc=True).astype("int64") // 1000
    t["enq"] = pd.to_datetime(t["EventEnqueuedUtcTime"], utc=True).astype("int64") // 1000
    n0 = len(t)
    t = t.sort_values(["messageId", "enq"]).drop_duplicates("messageId", keep="first")
    ok = np.ones(len(t), bool)
    for s, (lo, hi) in RANGES.items():
        v = t[s].to_numpy()
        ok &= np.isnan(v) | ((v >= lo) & (v <= hi))
    t = t[ok]
    log(f"raw: {len(files)} blobs, {n0} records, {n0 - len(t) - (~ok).sum()} duplicates, "
        f"{(~ok).sum()} out of range, {len(t)} readings")
    return t.rename(columns={"deviceId": "device_id"})[["device_id", "event_time"] + SIGNALS] \
        .sort_values(["device_id", "event_time"]).reset_index(drop=True)


def read_reference(raw):
    ref = os.path.join(raw, "reference")
    maint = pd.read_csv(os.path.join(ref, "maintenance.csv"), dtype=str)
    # a date-only entry counts from the end of its date; a timestamp from its time
    date_only = maint["maintenance_date"].str.len() == 10
    when = pd.to_datetime(maint["maintenance_date"], utc=True, format="mixed")
    maint["known_us"] = when.astype("int64") // 1000 + np.where(date_only, DAY_US, 0)
    maint["kind"] = maint["kind"].fillna("")
    fail = pd.read_csv(os.path.join(ref, "failures.csv"), dtype=str)
    fail["time_us"] = pd.to_datetime(fail["failure_time"], utc=True).astype("int64") // 1000
    err = pd.read_csv(os.path.join(ref, "errors.csv"), dtype=str)
    err["time_us"] = pd.to_datetime(err["event_time"], utc=True).astype("int64") // 1000
    mach = pd.read_csv(os.path.join(ref, "machines.csv"), dtype={"device_id": str, "model": str})
    return maint, fail, err, mach


def by_device(df, col):
    return {d: np.sort(g[col].to_numpy()) for d, g in df.groupby("device_id")}


# ---- point-in-time helpers (the contract's rules, written once) -------------------------
def days_since(rows, times_by_dev):
    """floor((t - latest time < t) / 1 day), NaN when none; rows has device_id and t_us."""
    out = np.full(len(rows), np.nan)
    for d, idx in rows.groupby("device_id").indices.items():
        m = times_by_dev.get(d)
        if m is None or m.size == 0:
            continue
        t = rows["t_us"].to_numpy()[idx]
        j = np.searchsorted(m, t, side="left") - 1       # the latest strictly before t
        has = j >= 0
        out[idx[has]] = (t[has] - m[j[has]]) // DAY_US
    return out


def count_in(rows, times_by_dev, lo_off, hi_off, right_closed=False):
    """Number of times in [t + lo_off, t + hi_off) per row (or (.., ..] with right_closed)."""
    out = np.zeros(len(rows), np.int64)
    side = "right" if right_closed else "left"
    for d, idx in rows.groupby("device_id").indices.items():
        m = times_by_dev.get(d)
        if m is None:
            continue
        t = rows["t_us"].to_numpy()[idx]
        out[idx] = np.searchsorted(m, t + hi_off, side=side) - np.searchsorted(m, t + lo_off, side=side)
    return out


def labels(rows, fail, labels_as_of_us, hours, component=None):
    f = fail if component is None else fail[fail["component"] == component]
    n = count_in(rows, by_device(f, "time_us"), 0, hours * HOUR_US)
    pos = n > 0
    known = rows["t_us"].to_numpy() + hours * HOUR_US <= labels_as_of_us
    return np.where(pos, 1.0, np.where(known, 0.0, np.nan))


# ---- the hand-written notebook features ----------------------------------------------
def hourly_grid(readings, start_us, hours):
    """Per device and hour: n, centred sum and sum of squares of every signal (dense arrays)."""
    devs = sorted(readings["device_id"].unique())
    di = {d: i for i, d in enumerate(devs)}
    dev = readings["device_id"].map(di).to_numpy()
    hr = ((readings["event_time"].to_numpy() - start_us) // HOUR_US).astype(np.int64)
    inside = (hr >= 0) & (hr < hours)
    g = {"devs": devs, "reading_count": np.zeros((len(devs), hours))}
    np.add.at(g["reading_count"], (dev[inside], hr[inside]), 1)
    for s in SIGNALS:
        v = readings[s].to_numpy()
        centre = readings.groupby("device_id")[s].transform("mean").to_numpy()
        ok = inside & ~np.isnan(v)
        x = v - centre
        for name, val in (("n", np.ones(ok.sum())), ("s1", x[ok]), ("s2", x[ok] ** 2)):
            a = np.zeros((len(devs), hours))
            np.add.at(a, (dev[ok], hr[ok]), val)
            g[f"{s}_{name}"] = a
        c = np.zeros(len(devs))
        c[[di[d] for d in readings.groupby("device_id")[s].mean().index]] = readings.groupby("device_id")[s].mean().to_numpy()
        g[f"{s}_centre"] = c
    return g


def trailing(a, w):
    """Sum over hours [h - w + 1, h] for every h: the window [t - w h, t) of the row at hour h."""
    c = np.cumsum(a, axis=1)
    out = c.copy()
    out[:, w:] -= c[:, :-w]
    return out


def notebook_features(readings, err, maint, mach, start_us, hours):
    g = hourly_grid(readings, start_us, hours)
    devs = g["devs"]
    rows_d, rows_h = np.nonzero(g["reading_count"] > 0)
    rows = pd.DataFrame({"device_id": np.array(devs)[rows_d],
                         "window_start": start_us + rows_h * HOUR_US})
    rows["t_us"] = rows["window_start"] + HOUR_US
    raw = pd.DataFrame(index=rows.index)
    nb = pd.DataFrame(index=rows.index)
    for s in SIGNALS:
        n, s1, s2, c = g[f"{s}_n"], g[f"{s}_s1"], g[f"{s}_s2"], g[f"{s}_centre"][:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            raw[f"{s}_hourly_mean"] = (s1 / n + c)[rows_d, rows_h]
            for w in (3, 24):
                nw, a1, a2 = trailing(n, w), trailing(s1, w), trailing(s2, w)
                mean = a1 / nw + c
                var = (a2 - a1 ** 2 / nw) / (nw - 1)
                nb[f"{s}_mean_{w}h"] = mean[rows_d, rows_h]
                nb[f"{s}_std_{w}h"] = np.sqrt(np.maximum(var, 0))[rows_d, rows_h]
                nb.loc[nw[rows_d, rows_h] < 2, f"{s}_std_{w}h"] = np.nan
    for code in CODES:
        nb[f"errors_{code}_24h"] = count_in(rows, by_device(err[err["code"] == code], "time_us"), -DAY_US, 0)
    for comp in COMPONENTS:
        nb[f"days_since_{comp}"] = days_since(rows, by_device(maint[maint["kind"] == comp], "known_us"))
    m = rows[["device_id"]].merge(mach, on="device_id", how="left")
    nb["model"] = m["model"].to_numpy()
    nb["age"] = m["age"].to_numpy().astype(float)
    return rows, raw, nb


# ---- the lakes ----------------------------------------------------------------------
def read_lake_table(path, columns=None):
    from deltalake import DeltaTable
    t = DeltaTable(path).to_pyarrow_table(columns=columns)
    for name in t.column_names:
        if pa.types.is_timestamp(t.schema.field(name).type):
            i = t.column_names.index(name)
            t = t.set_column(i, name, pc.cast(pc.cast(t[name], pa.timestamp("us", tz="UTC")), pa.int64()))
    return t.to_pandas()


def read_features(path):
    df = read_lake_table(os.path.join(path, "features_hourly"))
    df = df.sort_values(KEYS).reset_index(drop=True)
    df["t_us"] = df["window_start"] + HOUR_US
    return df


# ---- point-in-time checks ---------------------------------------------------------------
class Checks:
    def __init__(self):
        self.failed = []

    def report(self, what, mismatches, n, sensitive, detail=""):
        ok = mismatches == 0
        if not ok:
            self.failed.append(what)
        log(f"  [{'ok' if ok else 'FAIL'}] {what}: {mismatches} of {n} rows differ from the "
            f"point-in-time recomputation; a leak would change {sensitive} rows{detail}")


def compare(a, b, tol=1e-6):
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    both_nan = np.isnan(a) & np.isnan(b)
    close = np.isclose(a, b, rtol=tol, atol=tol) | both_nan
    return int((~close).sum())


def check_lake(name, df, maint, err, fail, silver, labels_as_of_us, checks, declared, sample=3000, seed=0):
    log(f"point in time, {name} lake ({len(df)} rows):")
    rows = df[["device_id", "t_us"]]
    any_m = by_device(maint, "known_us")
    if "days_since_maintenance" in df:
        honest = days_since(rows, any_m)
        # a leak: a maintenance known in [t, t + 1 day) (e.g. a repair logged at the failure, or a
        # date-only entry counted from its date's start) would have changed these rows
        sens = int((count_in(rows, any_m, 0, DAY_US) > 0).sum())
        checks.report("days_since_maintenance", compare(df["days_since_maintenance"], honest), len(df), sens)
    for lab, h in HORIZONS.items():
        col = f"failure_within_{lab}"
        if col in df:
            want = labels(rows, fail, labels_as_of_us, h)
            sens = int((count_in(rows, by_device(fail, "time_us"), -HOUR_US, 0) > 0).sum())
            checks.report(col, compare(df[col].astype(float), want), len(df), sens,
                          " (a label starting at window_start)")
        for comp in COMPONENTS:
            col = f"failure_{comp}_within_{lab}"
            if col in df:
                want = labels(rows, fail, labels_as_of_us, h, comp)
                checks.report(col, compare(df[col].astype(float), want), len(df), 0)
    if not declared:
        return
    for comp in COMPONENTS:
        col = f"days_since_maintenance_{comp}"
        times = by_device(maint[maint["kind"] == comp], "known_us")
        sens = int((count_in(rows, times, 0, DAY_US) > 0).sum())
        checks.report(col, compare(df[col], days_since(rows, times)), len(df), sens)
    for code in CODES:
        col = f"errors_{code}_count_24h"
        times = by_device(err[err["code"] == code], "time_us")
        honest = count_in(rows, times, -DAY_US, 0)
        sens = int((count_in(rows, times, -DAY_US, HOUR_US) != honest).sum()
                   + (count_in(rows, times, -DAY_US, 0, right_closed=True) != honest).sum())
        checks.report(col, compare(df[col], honest), len(df), sens, " (counting at or after t)")
    # telemetry windows over the lake's own silver, on a sample of rows
    cols = [c for c in df.columns if any(c.startswith(s + "_") for s in SIGNALS)
            and c.rsplit("_", 1)[-1] in ("3h", "24h")]
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(df), size=min(sample, len(df)), replace=False))
    sil = {d: g for d, g in silver.groupby("device_id")}
    want = {c: np.full(pick.size, np.nan) for c in cols}
    leaky = {c: np.full(pick.size, np.nan) for c in cols}
    for k, i in enumerate(pick):
        d, t = df.at[i, "device_id"], df.at[i, "t_us"]
        g = sil[d]
        et = g["event_time"].to_numpy()
        for c in cols:
            sig, agg, win = c.split("_")
            w = HOUR_US * (int(win[:-1]) * (24 if win.endswith("d") else 1))
            for out, hi in ((want, t), (leaky, t + HOUR_US)):
                sel = (et >= t - w) & (et < hi)
                v = g[sig].to_numpy()[sel]
                x = et[sel]
                ok = ~np.isnan(v)
                v, x = v[ok], x[ok]
                out[c][k] = aggregate(agg, v, x)
    mism = sum(compare(df[c].to_numpy()[pick], want[c]) for c in cols)
    sens = sum(compare(leaky[c], want[c]) for c in cols)
    checks.report(f"{len(cols)} telemetry window columns (sample)", mism, pick.size * len(cols), sens,
                  " (a window that reaches t + 1 h)")


def aggregate(agg, v, x):
    n = v.size
    if agg == "count":
        return n
    if agg in ("mean", "min", "max", "last") and n == 0:
        return np.nan
    if agg == "mean":
        return v.mean()
    if agg == "min":
        return v.min()
    if agg == "max":
        return v.max()
    if agg == "last":
        return v[np.argmax(x)]
    if agg == "std":
        return v.std(ddof=1) if n >= 2 else np.nan
    if agg == "slope":
        if n < 2:
            return np.nan
        h = (x - x.mean()) / HOUR_US
        den = (h ** 2).sum()
        return np.nan if den == 0 else (h * (v - v.mean())).sum() / den
    raise ValueError(agg)


def check_notebook(rows, nb, readings, maint, err, checks, sample=3000, seed=1):
    log(f"point in time, notebook features ({len(rows)} rows):")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(rows), size=min(sample, len(rows)), replace=False))
    by = {d: g for d, g in readings.groupby("device_id")}
    cols = [c for c in nb.columns if c.split("_")[0] in SIGNALS]
    want = {c: np.full(pick.size, np.nan) for c in cols}
    for k, i in enumerate(pick):
        g = by[rows.at[i, "device_id"]]
        t = rows.at[i, "t_us"]
        et = g["event_time"].to_numpy()
        for c in cols:
            sig, agg, win = c.split("_")
            sel = (et >= t - int(win[:-1]) * HOUR_US) & (et < t)
            v = g[sig].to_numpy()[sel]
            want[c][k] = aggregate(agg, v[~np.isnan(v)], et[sel][~np.isnan(v)])
    checks.report(f"{len(cols)} notebook window columns (sample)",
                  sum(compare(nb[c].to_numpy()[pick], want[c]) for c in cols), pick.size * len(cols), 0)
    for comp in COMPONENTS:
        times = by_device(maint[maint["kind"] == comp], "known_us")
        # independent of days_since(): the latest entry known at or before t - 1 us, by merge_asof
        r = rows[["device_id", "t_us"]].assign(q=rows["t_us"] - 1, i=np.arange(len(rows))).sort_values("q")
        m = maint[maint["kind"] == comp][["device_id", "known_us"]].sort_values("known_us")
        j = pd.merge_asof(r, m, left_on="q", right_on="known_us", by="device_id", direction="backward")
        want_d = np.full(len(rows), np.nan)
        want_d[j["i"].to_numpy()] = ((j["t_us"] - j["known_us"]) // DAY_US).to_numpy()
        checks.report(f"days_since_{comp}", compare(nb[f"days_since_{comp}"], want_d), len(rows),
                      int((count_in(rows, times, 0, DAY_US) > 0).sum()))


# ---- training -----------------------------------------------------------------------
def prepare(X):
    X = X.copy()
    cats = []
    for c in X.columns:
        if X[c].dtype == object or str(X[c].dtype) in ("string", "category", "bool", "boolean"):
            if str(X[c].dtype) in ("bool", "boolean"):
                X[c] = X[c].astype(float)
                continue
            X[c] = X[c].astype("category")
            cats.append(c)
        else:
            X[c] = X[c].astype(float)
    return X, cats


def fit_score(X, y, train, test, seed=0):
    X, cats = prepare(X)
    clf = HistGradientBoostingClassifier(
        max_iter=300, learning_rate=0.05, max_leaf_nodes=31, min_samples_leaf=40,
        l2_regularization=1.0, early_stopping=False, categorical_features=cats or None,
        random_state=seed)
    clf.fit(X[train], y[train])
    p = clf.predict_proba(X[test])[:, 1]
    return average_precision_score(y[test], p)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--raw", default=os.path.join(HERE, "data", "raw"))
    p.add_argument("--default-lake", default=os.path.join(HERE, "data", "lake-default"))
    p.add_argument("--declared-lake", default=os.path.join(HERE, "data", "lake-declared"))
    p.add_argument("--split", default=None,
                   help="first test date (default: start + 59/90 of the days: 2025-03-01 for the default data)")
    p.add_argument("--labels-as-of", default=None, help="default: truth.json's logs_as_of")
    p.add_argument("--json", default=None, help="write the results here too")
    a = p.parse_args(argv)
    t_start = time.time()
    truth = json.load(open(os.path.join(a.raw, "truth.json")))
    start_us = ts_us(truth["args"]["start"] + "T00:00:00Z")
    hours = truth["args"]["days"] * 24
    labels_as_of_us = ts_us(a.labels_as_of or truth["logs_as_of"])
    split_us = start_us + round(truth["args"]["days"] * 59 / 90) * DAY_US if a.split is None \
        else ts_us(a.split + "T00:00:00Z")
    log(f"test from {pd.Timestamp(split_us, unit='us', tz='UTC')}, labels as of {pd.Timestamp(labels_as_of_us, unit='us', tz='UTC')}")

    readings = read_raw(a.raw)
    maint, fail, err, mach = read_reference(a.raw)
    rows, raw, nb = notebook_features(readings, err, maint, mach, start_us, hours)
    checks = Checks()
    check_notebook(rows, nb, readings, maint, err, checks)

    sets = {"raw": raw, "notebook": nb}
    lakes = {}
    for name, path in (("default", a.default_lake), ("declared", a.declared_lake)):
        if os.path.isdir(os.path.join(path, "features_hourly", "_delta_log")):
            lakes[name] = read_features(path)
        else:
            log(f"{name} lake: {path}/features_hourly not found, skipped")
    silver = None
    if "declared" in lakes:
        silver = read_lake_table(os.path.join(a.declared_lake, "telemetry"),
                                 ["device_id", "event_time"] + SIGNALS)
        silver = silver.sort_values(["device_id", "event_time"]).reset_index(drop=True)
        log(f"declared lake's silver: {len(silver)} readings (the notebook read {len(readings)})")
    for name, df in lakes.items():
        check_lake(name, df, maint, err, fail, silver, labels_as_of_us, checks, declared=(name == "declared"))

    # the rows every feature set has, in one order
    key = rows[["device_id", "window_start"]].assign(_i=np.arange(len(rows)))
    for name, df in lakes.items():
        key = key.merge(df[KEYS].assign(**{f"_{name}": np.arange(len(df))}), on=KEYS, how="inner")
    log(f"rows: notebook {len(rows)}, " + ", ".join(f"{n} {len(d)}" for n, d in lakes.items())
        + f", in all: {len(key)}")
    X = {n: s.iloc[key["_i"].to_numpy()].reset_index(drop=True) for n, s in sets.items()}
    for name, df in lakes.items():
        cols = [c for c in df.columns if c not in NOT_FEATURES and c != "t_us"
                and not c.startswith("failure_") and df[c].dtype != "datetime64[ns]"]
        X[name] = df.iloc[key[f"_{name}"].to_numpy()][cols].reset_index(drop=True)
        log(f"{name}: {len(cols)} feature columns")
    kr = key[["device_id"]].assign(t_us=key["window_start"].to_numpy() + HOUR_US)
    t = kr["t_us"].to_numpy()
    results = {}
    order = [n for n in ("default", "declared", "raw", "notebook") if n in X]
    for lab, h in HORIZONS.items():
        y = labels(kr, fail, labels_as_of_us, h)
        known = ~np.isnan(y)
        train = known & (t + h * HOUR_US <= split_us)
        test = known & (t - HOUR_US >= split_us)
        log(f"failure_within_{lab}: train {train.sum()} rows ({int(y[train].sum())} positive), "
            f"test {test.sum()} rows ({int(y[test].sum())} positive, base rate {y[test].mean():.4f})")
        for n in order:
            ap = fit_score(X[n], np.nan_to_num(y).astype(int), train, test)
            results.setdefault(n, {})[lab] = round(float(ap), 3)
            log(f"  {n:9s} average precision {ap:.3f}")
    log("")
    log("| features | failure within 24 h: average precision | within 7 d: average precision |")
    log("| --- | --- | --- |")
    names = {"default": "coldpath default set", "declared": "coldpath declared set (jobs/declared.toml)",
             "raw": "raw hourly means only", "notebook": "hand-written notebook features"}
    for n in order:
        log(f"| {names[n]} | {results[n]['24h']:.3f} | {results[n]['7d']:.3f} |")
    log(f"\npoint-in-time checks: {'all passed' if not checks.failed else 'FAILED: ' + ', '.join(checks.failed)}"
        f" ({time.time() - t_start:.0f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"average_precision": results, "checks_failed": checks.failed}, f, indent=1)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())

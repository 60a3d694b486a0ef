#!/usr/bin/env python3
"""A predictive-maintenance data set of our own making, written as a coldpath raw container.

    bench/pdm/.venv/bin/python bench/pdm/generate.py [--out bench/pdm/data/raw] [--machines 80]
        [--start 2025-01-01] [--days 90] [--interval 600] [--seed 31]

What it writes under --out (the Stream Analytics layout coldpath's jobs read):

    telemetry/{yyyy}/{MM}/{dd}/{HH}/<hash>_<guid>_<partition>.json   JSON lines, one reading each:
        deviceId, deviceType, timestamp, temperature, pressure, vibration, rotation, messageId,
        EventProcessedUtcTime, PartitionId, EventEnqueuedUtcTime (Stream Analytics' own fields)
    reference/machines.csv     device_id,model,age
    reference/maintenance.csv  device_id,maintenance_date,kind   (kind = comp1..comp4 or inspection;
                               some sites log a date only, repairs always carry a timestamp)
    reference/failures.csv     device_id,failure_time,component
    reference/errors.csv       device_id,event_time,code        (error1..error5)
    truth.json                 the generator's parameters and counts (not read by coldpath)

The world it simulates, one machine at a time, hour by hour (a discrete-time hazard model):
- every machine has a model (model1..model4), an age (0-20 years), a type (pump or
  compressor), its own operating point for every signal and a load that follows shifts
  (weekday days high, nights and weekends low) with a slow random component;
- four components wear: each has a Weibull hazard in the time since it was last
  serviced (shape 3, so an old component fails more often), scaled up for older
  machines and per model; scheduled maintenance comes every 30-75 days per machine
  and component (some machines are neglected: twice as long) and resets the
  component; a failure stops the machine for 2-12 h and its repair (a maintenance
  entry of that component, timestamped at the end of the downtime) resets it too;
- the planted signal: before 85 % of failures, the component's own signal drifts
  over the last 12-48 h (comp1: vibration up, comp2: pressure down, comp3:
  temperature up, comp4: rotation down, rotation being a column coldpath only
  knows when the schema declares it), ramping up to the failure; before 80 % of
  failures the error log shows the component's code (error1..error4) more and more
  often over the last ~3 days (and sometimes another code); some errors are logged
  at the failure's exact time (a trap for a window that includes t);
- noise so that it is not trivial: sensor noise, a daily temperature cycle, slow
  sensor drift, comp1 wear slowly raises vibration, false alarms (drift episodes
  that recover with no failure, ~1 per machine in two months, smaller, some with errors), baseline
  errors of every code, short telemetry gaps, nulls, out-of-range values (rejects),
  duplicate messages and late arrivals (within coldpath's 2 h late-arrival window).

The simulation runs --horizon-days (default 8) past the end: the logs are exported a week
after the telemetry, so a 7 d label near the end is known (use --labels-as-of = start +
days + horizon). Telemetry is written up to the end (and readings that arrive late land
in the next date's first hours, as they would).

Seeded and deterministic: the same arguments give the same bytes.
"""
import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import sys

import numpy as np

COMPONENTS = ["comp1", "comp2", "comp3", "comp4"]
MODELS = ["model1", "model2", "model3", "model4"]
CODES = ["error1", "error2", "error3", "error4", "error5"]
# The component's signal and the direction of its precursor drift.
PRECURSOR = {"comp1": ("vibration", +1), "comp2": ("pressure", -1),
             "comp3": ("temperature", +1), "comp4": ("rotation", -1)}
# Precursor amplitude at the failure (uniform range), per signal.
AMPLITUDE = {"vibration": (14.0, 28.0), "pressure": (30.0, 60.0),
             "temperature": (14.0, 28.0), "rotation": (280.0, 560.0)}
SIGNAL_INDEX = {"temperature": 0, "pressure": 1, "vibration": 2, "rotation": 3}
NOISE = np.array([1.6, 4.0, 2.4, 25.0])  # per-reading sensor noise (sd)
HOUR = 3600
DAY = 86400


def iso(ts, ms=True):
    """Epoch seconds (float) -> ISO-8601 UTC with a Z."""
    d = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    if ms:
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_args(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(here, "data", "raw"))
    p.add_argument("--machines", type=int, default=80)
    p.add_argument("--start", default="2025-01-01")
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--horizon-days", type=int, default=8,
                   help="days simulated after the telemetry ends, for the logs (labels)")
    p.add_argument("--interval", type=int, default=600, help="seconds between a machine's readings")
    p.add_argument("--seed", type=int, default=31)
    return p.parse_args(argv)


class World:
    def __init__(self, a):
        self.a = a
        self.rng = np.random.default_rng(a.seed)
        self.t0 = dt.datetime.fromisoformat(a.start).replace(tzinfo=dt.timezone.utc).timestamp()
        self.t_end = self.t0 + a.days * DAY             # telemetry ends here
        self.hours = (a.days + a.horizon_days) * 24    # the simulation's length
        self.t_sim_end = self.t0 + self.hours * HOUR

    # ---- machines -------------------------------------------------------------
    def machines(self):
        rng, n = self.rng, self.a.machines
        self.ids = [f"machine-{i + 1:03d}" for i in range(n)]
        self.model = rng.choice(4, size=n, p=[0.3, 0.3, 0.2, 0.2])
        self.age = rng.integers(0, 21, size=n)
        # model1/model2 are pumps, model3/model4 compressors (mostly: a few refits)
        self.dtype = np.where((self.model >= 2) ^ (rng.random(n) < 0.05), "compressor", "pump")
        comp = self.dtype == "compressor"
        self.base = np.stack([
            rng.normal(62, 4, n) + 6 * comp,           # temperature, deg C
            rng.normal(105, 8, n) + 15 * comp,        # pressure, kPa-ish
            rng.normal(34, 3, n) + 0.25 * self.age,    # vibration, mm/s-ish
            rng.normal(1500, 60, n) - 100 * comp,      # rotation, rpm
        ], axis=1)
        self.neglected = rng.random(n) < 0.2
        self.site_date_only = rng.random(n) < 0.5      # this site logs maintenance dates only
        self.load_gain = rng.uniform(0.6, 1.4, n)

    # ---- components: maintenance and failures, hour by hour --------------------
    def components(self):
        rng, n, H = self.rng, self.a.machines, self.hours
        k, lam = 3.0, np.array([80.0, 90.0, 85.0, 95.0])  # Weibull shape, scale (days) per component
        model_factor = np.array([[1.0, 1.0, 1.0, 1.0],
                                 [1.2, 0.9, 1.0, 1.0],
                                 [1.0, 1.5, 0.8, 1.1],
                                 [1.5, 1.0, 1.2, 0.9]])
        age_factor = np.exp(0.07 * (self.age - 10))
        interval = rng.uniform(30, 75, (n, 4)) * np.where(self.neglected, 2.0, 1.0)[:, None]  # days
        tau = rng.uniform(0, 1, (n, 4)) * interval * 24                                    # hours
        next_sched = (interval * 24 - tau + rng.normal(0, 24, (n, 4))).clip(1)               # hours from start
        down_until = np.full(n, -1.0)                                                       # hours
        self.resets = [[[] for _ in range(4)] for _ in range(n)]  # reset times (epoch s) per machine, comp
        self.maint = []      # (device index, time, kind, date_only)
        self.failures = []   # (device index, time, comp)
        self.downtime = [[] for _ in range(n)]
        for h in range(H):
            up = down_until <= h
            # scheduled maintenance due this hour, on a machine that is up: done in working hours
            due = (next_sched <= h + 1) & up[:, None]
            for m, c in zip(*np.nonzero(due)):
                day = int(h // 24)
                t = self.t0 + day * DAY + rng.uniform(7, 17) * HOUR
                if t < self.t0 + h * HOUR:
                    t += DAY
                self.maint.append((m, t, COMPONENTS[c], bool(self.site_date_only[m])))
                self.resets[m][c].append(t)
                tau[m, c] = -(t - (self.t0 + h * HOUR)) / HOUR
                next_sched[m, c] = (t - self.t0) / HOUR + interval[m, c] * 24 * rng.uniform(0.85, 1.15)
            # hazard per hour
            days = np.maximum(tau, 0) / 24
            hz = (k / lam) * (days / lam) ** (k - 1) / 24 * model_factor[self.model] * age_factor[:, None]
            hz = hz + 2e-5  # random shocks, whatever the wear
            fail = (rng.random((n, 4)) < 1 - np.exp(-hz)) & up[:, None]
            for m in np.nonzero(fail.any(axis=1))[0]:
                c = int(rng.choice(np.nonzero(fail[m])[0]))
                tf = self.t0 + (h + rng.uniform(0, 1)) * HOUR
                repair = tf + rng.uniform(2, 12) * HOUR
                self.failures.append((m, tf, COMPONENTS[c]))
                self.maint.append((m, repair, COMPONENTS[c], False))
                self.resets[m][c].append(repair)
                self.downtime[m].append((tf, repair))
                down_until[m] = (repair - self.t0) / HOUR
                tau[m, c] = -(repair - (self.t0 + h * HOUR)) / HOUR
            tau += 1
        # inspections: no component, no reset (default days_since_maintenance counts them)
        for m in range(n):
            for _ in range(rng.poisson(self.hours / 24 / 40)):
                t = self.t0 + rng.integers(0, self.hours // 24) * DAY + rng.uniform(8, 16) * HOUR
                self.maint.append((m, t, "inspection", bool(self.site_date_only[m])))
        self.maint.sort(key=lambda r: (r[1], r[0]))
        self.failures.sort(key=lambda r: (r[1], r[0]))

    # ---- errors ---------------------------------------------------------------
    def errors(self):
        rng, n = self.rng, self.a.machines
        span = self.t_sim_end - self.t0
        out = []
        for m in range(n):
            rates = rng.uniform(0.01, 0.05, 5) * (1 + 0.03 * self.age[m])  # per day, per code
            for ci, r in enumerate(rates):
                for t in self.t0 + rng.random(rng.poisson(r * span / DAY)) * span:
                    out.append((m, t, CODES[ci]))
        for m, tf, comp in self.failures:
            ci = COMPONENTS.index(comp)
            if rng.random() < 0.8:
                for _ in range(1 + rng.poisson(3.0)):
                    lead = min(rng.exponential(20.0), 72.0) * HOUR
                    code = CODES[ci] if rng.random() < 0.8 else CODES[rng.integers(0, 5)]
                    out.append((m, tf - lead, code))
            if rng.random() < 0.3:   # the failure's own alarm, at its exact time
                out.append((m, tf, CODES[ci]))
        for m, t0, dur, sig, sign, amp in self.false_alarms:
            if rng.random() < 0.4:
                ci = ["vibration", "pressure", "temperature", "rotation"].index(sig)
                for _ in range(1 + rng.poisson(1.0)):
                    out.append((m, t0 + rng.uniform(0.3, 1.0) * dur, CODES[ci]))
        out = [(m, t, c) for m, t, c in out if self.t0 <= t < self.t_sim_end]
        out.sort(key=lambda r: (r[1], r[0], r[2]))
        self.error_log = out

    # ---- false alarms: drift episodes with no failure ---------------------------
    def plan_false_alarms(self):
        rng, n = self.rng, self.a.machines
        self.false_alarms = []
        for m in range(n):
            for _ in range(rng.poisson(self.hours / 24 / 60)):
                t0 = self.t0 + rng.uniform(0, self.hours) * HOUR
                dur = rng.uniform(8, 48) * HOUR
                sig = ["vibration", "pressure", "temperature", "rotation"][rng.integers(0, 4)]
                comp = [c for c, (s, _) in PRECURSOR.items() if s == sig][0]
                sign = PRECURSOR[comp][1]
                lo, hi = AMPLITUDE[sig]
                amp = rng.uniform(0.2, 0.6) * rng.uniform(lo, hi)
                self.false_alarms.append((m, t0, dur, sig, sign, amp))

    # ---- readings -------------------------------------------------------------
    def readings(self, m):
        """Times (epoch s) and values (n x 4) of machine m's readings before the telemetry's end."""
        rng, a = self.rng, self.a
        phase = rng.uniform(0, a.interval)
        t = self.t0 + phase + np.arange(0, (self.t_end - self.t0) // a.interval + 1) * a.interval
        t = t + rng.normal(0, 8, t.size)
        t = t[(t >= self.t0) & (t < self.t_end)]
        keep = np.ones(t.size, bool)
        for s, e in self.downtime[m]:
            keep &= ~((t >= s) & (t < e))
        # communication gaps: a few outages of 1-6 h
        for _ in range(rng.poisson(a.days / 20)):
            s = self.t0 + rng.uniform(0, a.days * DAY)
            keep &= ~((t >= s) & (t < s + rng.uniform(1, 6) * HOUR))
        t = t[keep]
        hod = (t % DAY) / HOUR
        dow = ((t // DAY).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday (3)
        shift = np.where((dow < 5) & (hod >= 6) & (hod < 22), 1.0, np.where(dow < 5, 0.6, 0.45))
        # slow random component of the load, hourly AR(1)
        nh = int((self.t_end - self.t0) // HOUR) + 1
        ar = np.zeros(nh)
        eps = rng.normal(0, 0.05, nh)
        for i in range(1, nh):
            ar[i] = 0.97 * ar[i - 1] + eps[i]
        hi = ((t - self.t0) // HOUR).astype(np.int64)
        load = (shift + ar[hi]) * self.load_gain[m]
        dl = load - 0.8
        # slow sensor drift: a daily random walk per signal
        nd = a.days + 1
        walk = np.cumsum(rng.normal(0, 1, (nd, 4)) * np.array([0.15, 0.4, 0.1, 3.0]), axis=0)
        di = ((t - self.t0) // DAY).astype(np.int64)
        v = np.empty((t.size, 4))
        v[:, 0] = self.base[m, 0] + 3 * dl + 3 * np.sin(2 * np.pi * (hod - 9) / 24) + walk[di, 0]
        v[:, 1] = self.base[m, 1] + 6 * dl + walk[di, 1]
        v[:, 2] = self.base[m, 2] + 1.5 * dl + walk[di, 2]
        v[:, 3] = self.base[m, 3] + 80 * dl + walk[di, 3]
        # comp1 wear: vibration creeps up with the time since comp1 was last reset
        resets = np.array(sorted(self.resets[m][0]))
        last = np.full(t.size, self.t0 - rng.uniform(0, 40) * DAY)
        if resets.size:
            j = np.searchsorted(resets, t, side="right") - 1
            last = np.where(j >= 0, resets[np.maximum(j, 0)], last)
        v[:, 2] += 0.04 * (t - last) / DAY
        v += rng.normal(0, 1, v.shape) * NOISE
        # precursors: the failing component's signal drifts over the last 12-48 h
        self.precursors = getattr(self, "precursors", [])
        for mm, tf, comp in self.failures:
            if mm != m or self.rng_precursor.random() >= 0.85:
                continue
            sig, sign = PRECURSOR[comp]
            lead = self.rng_precursor.uniform(12, 48) * HOUR
            lo, hi_ = AMPLITUDE[sig]
            amp = self.rng_precursor.uniform(lo, hi_)
            w = (t >= tf - lead) & (t < tf)
            x = (t[w] - (tf - lead)) / lead
            v[w, SIGNAL_INDEX[sig]] += sign * amp * (0.5 + 0.5 * x)  # a step, then a ramp
            if comp == "comp1":   # a failing bearing also shakes more erratically
                v[w, 2] += rng.normal(0, 1, w.sum()) * NOISE[2] * 0.8 * x
            self.precursors.append((m, tf, comp, lead / HOUR, amp))
        for mm, s, dur, sig, sign, amp in self.false_alarms:
            if mm != m:
                continue
            w = (t >= s) & (t < s + dur)
            v[w, SIGNAL_INDEX[sig]] += sign * amp * np.sin(np.pi * (t[w] - s) / dur)
        return t, np.round(v, 2)

    # ---- the container --------------------------------------------------------
    def write(self):
        a, rng = self.a, self.rng
        out = a.out
        if os.path.exists(out):
            shutil.rmtree(out)
        os.makedirs(os.path.join(out, "reference"))
        self.rng_precursor = np.random.default_rng(a.seed + 1)
        blobs = {}   # (hour epoch, partition) -> list of lines
        counts = {"readings": 0, "duplicates": 0, "out_of_range": 0, "nulls": 0, "late": 0}
        for m, dev in enumerate(self.ids):
            t, v = self.readings(m)
            n = t.size
            counts["readings"] += n
            latency = rng.uniform(0.5, 4.0, n)
            late = rng.random(n) < 0.002
            latency[late] += rng.uniform(60, 5400, late.sum())   # up to 90 min late
            counts["late"] += int(late.sum())
            nulls = rng.random((n, 4)) < 0.003
            counts["nulls"] += int(nulls.sum())
            bad = rng.random(n) < 0.0005
            counts["out_of_range"] += int(bad.sum())
            dup = rng.random(n) < 0.001
            counts["duplicates"] += int(dup.sum())
            part = m % 2
            ids = rng.integers(0, 2**63, n)
            for i in range(n):
                vals = ["null" if nulls[i, j] else repr(float(v[i, j])) for j in range(4)]
                if bad[i]:
                    vals[0] = "999.0"  # a stuck sensor's code: out of coldpath's range
                enq = t[i] + latency[i]
                mid = f"{ids[i]:016x}"
                line = (f'{{"deviceId": "{dev}", "deviceType": "{self.dtype[m]}", '
                        f'"timestamp": "{iso(t[i])}", "temperature": {vals[0]}, "pressure": {vals[1]}, '
                        f'"vibration": {vals[2]}, "rotation": {vals[3]}, "messageId": "{mid}", '
                        f'"EventProcessedUtcTime": "{iso(enq + 1.2)}", "PartitionId": {part}, '
                        f'"EventEnqueuedUtcTime": "{iso(enq)}"}}')
                blobs.setdefault((int(enq // HOUR) * HOUR, part), []).append((enq, line))
                if dup[i]:   # re-sent: same messageId, enqueued later, another partition's blob
                    enq2 = enq + rng.uniform(5, 600)
                    line2 = line.replace(f'"PartitionId": {part}', f'"PartitionId": {1 - part}')
                    blobs.setdefault((int(enq2 // HOUR) * HOUR, 1 - part), []).append((enq2, line2))
        for (hour, part), lines in sorted(blobs.items()):
            d = dt.datetime.fromtimestamp(hour, dt.timezone.utc)
            folder = os.path.join(out, "telemetry", d.strftime("%Y/%m/%d/%H"))
            os.makedirs(folder, exist_ok=True)
            h = hashlib.sha1(f"{a.seed}-{hour}-{part}".encode()).hexdigest()
            name = f"{int(h[:8], 16)}_{h[8:40]}_{part + 1}.json"
            lines.sort()
            with open(os.path.join(folder, name), "w") as f:
                f.write("\n".join(l for _, l in lines) + "\n")
        with open(os.path.join(out, "reference", "machines.csv"), "w") as f:
            f.write("device_id,model,age\n")
            for m, dev in enumerate(self.ids):
                f.write(f"{dev},{MODELS[self.model[m]]},{self.age[m]}\n")
        with open(os.path.join(out, "reference", "maintenance.csv"), "w") as f:
            f.write("device_id,maintenance_date,kind\n")
            for m, t, kind, date_only in self.maint:
                if t >= self.t_sim_end:
                    continue
                when = dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d") if date_only else iso(t, ms=False)
                f.write(f"{self.ids[m]},{when},{kind}\n")
        with open(os.path.join(out, "reference", "failures.csv"), "w") as f:
            f.write("device_id,failure_time,component\n")
            for m, t, comp in self.failures:
                f.write(f"{self.ids[m]},{iso(t, ms=False)},{comp}\n")
        with open(os.path.join(out, "reference", "errors.csv"), "w") as f:
            f.write("device_id,event_time,code\n")
            for m, t, code in self.error_log:
                f.write(f"{self.ids[m]},{iso(t, ms=False)},{code}\n")
        in_data = [f for f in self.failures if f[1] < self.t_end]
        truth = {
            "args": vars(a), "machines": a.machines, "blobs": len(blobs), **counts,
            "failures": len(self.failures), "failures_in_telemetry_span": len(in_data),
            "failures_by_component": {c: sum(1 for f in in_data if f[2] == c) for c in COMPONENTS},
            "with_precursor": len(self.precursors), "false_alarms": len(self.false_alarms),
            "maintenance_entries": len(self.maint), "errors": len(self.error_log),
            "telemetry_end": iso(self.t_end, ms=False), "logs_as_of": iso(self.t_sim_end, ms=False),
        }
        with open(os.path.join(out, "truth.json"), "w") as f:
            json.dump(truth, f, indent=1, default=str)
        return truth


def main(argv=None):
    a = parse_args(argv)
    w = World(a)
    w.machines()
    w.components()
    w.plan_false_alarms()
    w.errors()
    truth = w.write()
    print(json.dumps({k: v for k, v in truth.items() if k != "args"}))


if __name__ == "__main__":
    sys.exit(main())

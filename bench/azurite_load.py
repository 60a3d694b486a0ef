#!/usr/bin/env python3
"""Loads a bench container into Azurite, or times reading it back (issue 18, step 4).

  azurite_load.py PORT upload ROOT PREFIX...   creates container `raw` and puts every
                                               file under ROOT/PREFIX as a block blob
  azurite_load.py PORT download PREFIX...      GETs every blob under the prefixes, one
                                               connection, and prints bytes, seconds, MB/s

Standard library only: requests are signed with the emulator's documented Shared
Key, as tests/it/azurite.rs signs its Create Container. The download is the
yardstick for coldpath's read through object_store: what the emulator serves on
loopback when nothing parses.
"""
import base64
import hashlib
import hmac
import http.client
import os
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET
from email.utils import formatdate

ACCOUNT = "devstoreaccount1"
KEY = base64.b64decode(
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
VERSION = "2021-08-06"
CONTAINER = "raw"


def signed(conn, verb, resource, query=(), headers=(), body=b""):
    """One request to /ACCOUNT/resource, signed with Shared Key; returns (status, body)."""
    ms = dict(headers)
    ms["x-ms-date"] = formatdate(usegmt=True)
    ms["x-ms-version"] = VERSION
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(ms.items()))
    canonical_query = "".join(f"\n{k}:{v}" for k, v in sorted(query))
    length = str(len(body)) if body else ""
    to_sign = (
        f"{verb}\n\n\n{length}\n\n\n\n\n\n\n\n\n"
        f"{canonical_headers}/{ACCOUNT}/{ACCOUNT}/{urllib.parse.quote(resource)}{canonical_query}"
    )
    signature = base64.b64encode(
        hmac.new(KEY, to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    path = f"/{ACCOUNT}/{urllib.parse.quote(resource)}"
    if query:
        path += "?" + urllib.parse.urlencode(list(query))
    ms["Authorization"] = f"SharedKey {ACCOUNT}:{signature}"
    ms["Content-Length"] = str(len(body))
    conn.request(verb, path, body=body, headers=ms)
    response = conn.getresponse()
    return response.status, response.read()


def upload(conn, root, prefixes):
    status, body = signed(conn, "PUT", CONTAINER, [("restype", "container")])
    if status not in (201, 409):
        sys.exit(f"create container: {status} {body[:200]!r}")
    n = total = 0
    for prefix in prefixes:
        for folder, _, files in sorted(os.walk(os.path.join(root, prefix))):
            for name in sorted(files):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, root)
                with open(path, "rb") as f:
                    data = f.read()
                status, body = signed(
                    conn,
                    "PUT",
                    f"{CONTAINER}/{rel}",
                    headers=[("x-ms-blob-type", "BlockBlob")],
                    body=data,
                )
                if status != 201:
                    sys.exit(f"put {rel}: {status} {body[:200]!r}")
                n += 1
                total += len(data)
    print(f"uploaded {n} blobs, {total} bytes")


def listing(conn, prefix):
    names, marker = [], ""
    while True:
        query = [("restype", "container"), ("comp", "list"), ("prefix", prefix)]
        if marker:
            query.append(("marker", marker))
        status, body = signed(conn, "GET", CONTAINER, query)
        if status != 200:
            sys.exit(f"list {prefix}: {status} {body[:200]!r}")
        tree = ET.fromstring(body)
        names += [b.findtext("Name") for b in tree.iter("Blob")]
        marker = tree.findtext("NextMarker") or ""
        if not marker:
            return names


def download(conn, prefixes):
    start = time.monotonic()
    names = [n for p in prefixes for n in listing(conn, p)]
    listed = time.monotonic()
    total = 0
    for name in names:
        status, body = signed(conn, "GET", f"{CONTAINER}/{name}")
        if status != 200:
            sys.exit(f"get {name}: {status}")
        total += len(body)
    done = time.monotonic()
    print(
        f"listed {len(names)} blobs in {listed - start:.3f} s; "
        f"read {total} bytes in {done - listed:.2f} s: {total / (done - listed) / 1e6:.0f} MB/s"
    )


def main():
    port, what = int(sys.argv[1]), sys.argv[2]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    if what == "upload":
        upload(conn, sys.argv[3], sys.argv[4:])
    elif what == "download":
        download(conn, sys.argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

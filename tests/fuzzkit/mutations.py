"""Hypothesis strategies that break valid files, blindly and where blind flips cannot reach.

A mutation plan is a list of operations (plain tuples, so Hypothesis can shrink them);
``mutate(reader, seed_bytes, plan)`` applies one to a seed file's bytes. Each format has
its structure-aware operations (applied first, on the parsed structure) and every format
gets the byte-level ones (applied last, on the bytes):

- byte level: bit flips, bytes set to boundary values, 2/4/8-byte integers overwritten with
  absurd values, truncation, appended junk, inserted, deleted and duplicated ranges;
- ``.npy`` (a file, or a member of an npz or a checkpoint): inflated and odd shapes, wrong
  and hostile dtypes (objects, structured, zero-size, huge strings), the other memory order,
  other format versions, a lying header length, a header of junk, NaN and Inf in the data;
- npz and checkpoint (zip): members swapped, duplicated, dropped, renamed, added, stored or
  deflated, the declared sizes in the local and central headers changed;
- checkpoint: any value of the JSON record replaced (huge or negative numbers, wrong types,
  deep nesting) or deleted;
- safetensors: the JSON header's entries and the metadata (and the JSON inside it: the
  architecture and the run's encoding) changed, the header length lying, NaN in the data;
- CSV (and Parquet's table before it is written): cells that are empty, NaN, Inf, huge,
  quoted wrongly or not numbers; bytes that are not UTF-8, byte-order marks, NUL bytes,
  rows with fields missing or extra, header names duplicated or missing;
- IDX: type code, dimension count and sizes changed (a gzipped file mutated inside, then
  recompressed, or its compressed bytes flipped);
- CIFAR binary: labels out of range, records cut.
- sklearn estimators (a pickled fitted MLPClassifier / MLPRegressor): any field of the state,
  nested ones included (the network snapshot, the optimizer state, the LabelBinarizer),
  deleted or replaced by a value of another type, NaN, Inf or a huge number, and arrays
  transposed, cut, grown, reshaped or cast to another dtype; structure-aware only.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import struct
import warnings
import zipfile

from hypothesis import strategies as st

HUGE = [0, 1, 2, 3, 7, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
        99999999, 99999, 10**12, 2**62, 2**63 - 1, 2**64 - 1]
positions = st.integers(0, 2**31)
huge_ints = st.sampled_from(HUGE) | st.integers(0, 2**64 - 1)
junk = st.binary(max_size=64) | st.sampled_from([b"\0" * 4096, b"\xff" * 300, b"PK\x03\x04",
                                                  b"PK\x05\x06" + b"\0" * 18, b"\x93NUMPY"])

# ----------------------------------------------------------------------------- bytes
byte_ops = st.one_of(
    st.tuples(st.just("flip"), positions, st.integers(0, 7)),
    st.tuples(st.just("set"), positions, st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 10, 34, 44])),
    st.tuples(st.just("int"), positions, st.sampled_from([2, 4, 8]), st.sampled_from("<>"),
              huge_ints),
    st.tuples(st.just("truncate"), positions),
    st.tuples(st.just("append"), junk),
    st.tuples(st.just("insert"), positions, junk),
    st.tuples(st.just("delete"), positions, st.integers(1, 300)),
    st.tuples(st.just("repeat"), positions, st.integers(1, 300), positions),
)


def apply_bytes(data: bytes, op) -> bytes:
    kind, n = op[0], len(data)
    if kind == "flip" and n:
        i = op[1] % n
        return data[:i] + bytes([data[i] ^ (1 << op[2])]) + data[i + 1:]
    if kind == "set" and n:
        i = op[1] % n
        return data[:i] + bytes([op[2]]) + data[i + 1:]
    if kind == "int" and n >= op[2]:
        i = op[1] % (n - op[2] + 1)
        fmt = op[3] + {2: "H", 4: "I", 8: "Q"}[op[2]]
        value = op[4] % (1 << (8 * op[2]))
        return data[:i] + struct.pack(fmt, value) + data[i + op[2]:]
    if kind == "truncate":
        return data[:op[1] % (n + 1)]
    if kind == "append":
        return data + op[1]
    if kind == "insert":
        i = op[1] % (n + 1)
        return data[:i] + op[2] + data[i:]
    if kind == "delete" and n:
        i = op[1] % n
        return data[:i] + data[i + op[2]:]
    if kind == "repeat" and n:
        i, j = op[1] % n, op[3] % (n + 1)
        return data[:j] + data[i:i + op[2]] + data[j:]
    return data


# ------------------------------------------------------------------------------- .npy
DESCRS = ["<f4", "<f8", ">f8", "<i8", "|u1", "|b1", "<c16", "<f2", "|O", "<U3", "<U1000000000",
          "|S0", "|S99999999999", "|V8", "<M8[s]", "[('a', '<f8')]", "'<f8'", "<f8 ", "", "x",
          "<U0", "(2,)<f8", "<f99"]
npy_ops = st.one_of(
    st.tuples(st.just("shape"), st.lists(st.sampled_from(HUGE) | st.integers(-3, 50),
                                         max_size=5)),
    st.tuples(st.just("descr"), st.sampled_from(DESCRS)),
    st.tuples(st.just("fortran"), st.booleans()),
    st.tuples(st.just("version"), st.sampled_from([(1, 0), (2, 0), (3, 0), (0, 0), (9, 9)])),
    st.tuples(st.just("hlen"), huge_ints),
    st.tuples(st.just("header"), st.sampled_from([
        "{}", "[]", "{'descr': '<f8'}", "(" * 300 + ")" * 300, "{'descr': '<f8', "
        "'fortran_order': False, 'shape': (2,), 'extra': 1}", "{'descr': '<f8', "
        "'fortran_order': 'no', 'shape': (2,)}", "{'descr': '<f8', 'fortran_order': False, "
        "'shape': [2]}", "{'descr': '<f8', 'fortran_order': False, 'shape': (2.5,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}",
        "__import__('os').system('echo pwned')", "\xff\xfe", "{'descr': '<f8', "
        "'fortran_order': False, 'shape': (" + "9" * 5000 + ",)}",
    ]) | st.text(max_size=40)),
    st.tuples(st.just("nonfinite"), positions, st.sampled_from(["nan", "inf", "-inf"])),
    st.tuples(st.just("bytes"), byte_ops),
)


def _parse_npy(blob: bytes):
    """(version, header text, data) of a .npy blob written by NumPy."""
    major = blob[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", blob[8:10])
        start = 10
    else:
        (hlen,) = struct.unpack("<I", blob[8:12])
        start = 12
    text = blob[start:start + hlen].decode("latin1")
    return (major, blob[7]), text, blob[start + hlen:]


def _header_dict(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def _build_npy(version, text: str, data: bytes, hlen=None) -> bytes:
    raw = text.encode("latin1", "replace")
    raw = raw + b" " * (-(len(raw) + 11) % 64) + b"\n"
    if version[0] == 1 and len(raw) < 65536:
        head = b"\x93NUMPY" + bytes(version) + struct.pack("<H", (hlen or len(raw)) % 65536)
    else:
        head = b"\x93NUMPY" + bytes(version) + struct.pack("<I", (hlen or len(raw)) % 2**32)
    return head + raw + data


def mutate_npy(blob: bytes, ops) -> bytes:
    version, text, data = _parse_npy(blob)
    hlen = None
    tail_ops = []
    for op in ops:
        d = _header_dict(text)
        kind = op[0]
        if kind in ("shape", "descr", "fortran") and isinstance(d, dict):
            key = {"shape": "shape", "descr": "descr", "fortran": "fortran_order"}[kind]
            value = tuple(op[1]) if kind == "shape" else op[1]
            if kind == "descr" and op[1].startswith(("[", "'")):
                body = repr({k: v for k, v in d.items() if k != "descr"})[1:]
                text = "{'descr': " + op[1] + ", " + body
                continue
            d[key] = value
            text = repr(d)
        elif kind == "version":
            version = op[1]
        elif kind == "hlen":
            hlen = op[1] or 1
        elif kind == "header":
            text = op[1]
        elif kind == "nonfinite" and isinstance(d, dict) and str(d.get("descr", ""))[1:2] == "f":
            size = int(str(d["descr"])[2:] or 0)
            if size in (4, 8) and len(data) >= size:
                i = (op[1] % (len(data) // size)) * size
                fmt = str(d["descr"])[0].replace("|", "<") + {4: "f", 8: "d"}[size]
                data = data[:i] + struct.pack(fmt, float(op[2])) + data[i + size:]
        elif kind == "bytes":
            tail_ops.append(op[1])
    out = _build_npy(version, text, data, hlen)
    for op in tail_ops:
        out = apply_bytes(out, op)
    return out


# ----------------------------------------------------------------------- zip (npz)
MEMBER_NAMES = ["X.npy", "y.npy", "X_test.npy", "y_test.npy", "__fastnn__.npy",
                "model/0.weight.npy", "data/mean.npy", "data/classes.npy", "X", "X.npy.npy",
                "../X.npy", "", "y"]
zip_ops = st.one_of(
    st.tuples(st.just("member"), positions, st.lists(npy_ops, min_size=1, max_size=3)),
    st.tuples(st.just("swap"), positions, positions),
    st.tuples(st.just("duplicate"), positions),
    st.tuples(st.just("drop"), positions),
    st.tuples(st.just("rename"), positions, st.sampled_from(MEMBER_NAMES)),
    st.tuples(st.just("add"), st.sampled_from(MEMBER_NAMES), junk),
    st.tuples(st.just("compress"), st.booleans()),
    st.tuples(st.just("sizes"), positions, st.sampled_from(["local", "central"]),
              st.sampled_from(["compressed", "uncompressed"]), huge_ints),
)


def read_members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def write_members(members, compress: bool) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": what a duplicated member is
        with zipfile.ZipFile(buf, "w", method) as zf:
            for name, blob in members:
                zf.writestr(name or "unnamed", blob)
    return buf.getvalue()


def _patch_sizes(data: bytes, which: int, where: str, field: str, value: int) -> bytes:
    sig, offsets = ((b"PK\x03\x04", {"compressed": 18, "uncompressed": 22}) if where == "local"
                    else (b"PK\x01\x02", {"compressed": 20, "uncompressed": 24}))
    found, i = [], data.find(sig)
    while i >= 0:
        found.append(i)
        i = data.find(sig, i + 1)
    if not found:
        return data
    at = found[which % len(found)] + offsets[field]
    return data[:at] + struct.pack("<I", value % 2**32) + data[at + 4:]


def mutate_zip(data: bytes, ops, member_ops=None) -> bytes:
    """``member_ops``: a function (name, blob) -> blob for format-specific member changes."""
    members = read_members(data)
    compress = any(i.compress_type == zipfile.ZIP_DEFLATED
                   for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    patches, tail = [], []
    if member_ops is not None:
        members = [(n, member_ops(n, b)) for n, b in members]
    for op in ops:
        kind, n = op[0], len(members)
        if kind == "member" and n:
            i = op[1] % n
            try:
                members[i] = (members[i][0], mutate_npy(members[i][1], op[2]))
            except (IndexError, struct.error, UnicodeError):
                members[i] = (members[i][0], apply_bytes(members[i][1], ("flip", op[1], 3)))
        elif kind == "swap" and n:
            i, j = op[1] % n, op[2] % n
            members[i], members[j] = (members[j][0], members[i][1]), (members[i][0],
                                                                     members[j][1])
        elif kind == "duplicate" and n:
            members.append(members[op[1] % n])
        elif kind == "drop" and n:
            members.pop(op[1] % n)
        elif kind == "rename" and n:
            i = op[1] % n
            members[i] = (op[2], members[i][1])
        elif kind == "add":
            members.append((op[1], op[2]))
        elif kind == "compress":
            compress = op[1]
        elif kind == "sizes":
            patches.append(op[1:])
        elif kind == "bytes":
            tail.append(op[1])
    out = write_members(members, compress)
    for which, where, field, value in patches:
        out = _patch_sizes(out, which, where, field, value)
    for op in tail:
        out = apply_bytes(out, op)
    return out


# ------------------------------------------------------------------------------ JSON
DEEP = "<50000 nested JSON arrays>"
json_values = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1, 2**31, 2**63, 10**30, 99999999, 1e308,
                     -1e308, 0.5, "", "x", "nan", "float64", "relu", "classification",
                     "regression", [], {}, [0], [99999999, 99999], [[[[[]]]]], {"a": 1}]),
    st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10),
    st.just(DEEP),
)
json_ops = st.one_of(
    st.tuples(st.just("set"), st.lists(positions, min_size=1, max_size=5), json_values),
    st.tuples(st.just("delete"), st.lists(positions, min_size=1, max_size=5)),
)


def mutate_json(doc, ops):
    """Apply ``json_ops`` to a parsed JSON document; returns the new document's text."""
    raw_at = []
    for op in ops:
        path, node, parent, key = op[1], doc, None, None
        for step in path:
            if isinstance(node, dict) and node:
                parent, key = node, sorted(node)[step % len(node)]
            elif isinstance(node, list) and node:
                parent, key = node, step % len(node)
            else:
                break
            node = parent[key]
        if parent is None:
            continue
        if op[0] == "delete":
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif op[2] == DEEP:
            marker = f"__raw_{len(raw_at)}__"
            raw_at.append((json.dumps(marker), "[" * 50000 + "]" * 50000))
            parent[key] = marker
        else:
            parent[key] = copy.deepcopy(op[2])  # drawn values are shared between examples
    text = json.dumps(doc, allow_nan=True)
    for marker, raw in raw_at:
        text = text.replace(marker, raw, 1)
    return text


# ------------------------------------------------------------------------ checkpoint
checkpoint_ops = st.one_of(zip_ops, st.tuples(st.just("record"),
                                              st.lists(json_ops, min_size=1, max_size=3)))


def mutate_checkpoint(data: bytes, ops) -> bytes:
    import numpy as np

    record_ops = [o for op in ops if op[0] == "record" for o in op[1]]

    def member_ops(name, blob):
        if name != "__fastnn__.npy" or not record_ops:
            return blob
        meta = json.loads(str(np.load(io.BytesIO(blob))))
        out = io.BytesIO()
        np.save(out, np.array(mutate_json(meta, record_ops)))
        return out.getvalue()

    return mutate_zip(data, [op for op in ops if op[0] != "record"], member_ops)


# ----------------------------------------------------------------------- safetensors
st_ops = st.one_of(
    st.tuples(st.just("header"), st.lists(json_ops, min_size=1, max_size=3)),
    st.tuples(st.just("metadata"), st.sampled_from(["fastnn.architecture", "run.input_mean",
                                                    "run.input_std", "run.classes",
                                                    "run.target_mean", "run.config",
                                                    "run.task", "run.names"]),
              st.lists(json_ops, min_size=1, max_size=3)),
    st.tuples(st.just("hlen"), huge_ints),
    st.tuples(st.just("nonfinite"), positions, st.sampled_from(["nan", "inf"])),
)


def mutate_safetensors(data: bytes, ops) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    hlen = None
    for op in ops:
        if op[0] == "header" and not (isinstance(header, dict) and "__raw__" in header):
            text = mutate_json(header, op[1]) if isinstance(header, (dict, list)) else \
                json.dumps(header)
            try:
                header = json.loads(text)
            except (ValueError, RecursionError):
                header = {"__raw__": text}
        elif op[0] == "metadata":
            meta = header.get("__metadata__") if isinstance(header, dict) else None
            if isinstance(meta, dict) and isinstance(meta.get(op[1]), str):
                try:
                    inner = json.loads(meta[op[1]])
                except (ValueError, RecursionError):
                    inner = meta[op[1]]
                text = mutate_json({"v": inner}, op[2])
                try:
                    meta[op[1]] = json.dumps(json.loads(text).get("v"))
                except (ValueError, RecursionError):
                    meta[op[1]] = text[6:-1]
        elif op[0] == "hlen":
            hlen = op[1]
        elif op[0] == "nonfinite" and len(body) >= 4:
            i = (op[1] % (len(body) // 4)) * 4
            body = body[:i] + struct.pack("<f", float(op[2])) + body[i + 4:]
    text = header["__raw__"] if isinstance(header, dict) and "__raw__" in header else \
        json.dumps(header, allow_nan=True)
    raw = text.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", (len(raw) if hlen is None else hlen) % 2**64) + raw + body


# ------------------------------------------------------------------------------- CSV
CELLS = ["", " ", "nan", "NaN", "inf", "-inf", "1e999", "-0", "x", "1,5", '"', '"a"', '"a,b"',
         '"unterminated', "\x00", "\t", "1\r2", "\u00e9", "\ufeff1", "0x10", "1_000",
         "9" * 5000, "a" * 100000, "1" * 2_000_000, "true", "None"]
BAD_BYTES = [b"\xff", b"\xfe\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\x00",
             b"\r", b"\x80abc"]
csv_ops = st.one_of(
    st.tuples(st.just("cell"), positions, positions, st.sampled_from(CELLS) | st.text(
        max_size=8)),
    st.tuples(st.just("encoding"), positions, st.sampled_from(BAD_BYTES)),
    st.tuples(st.just("bom"), st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"])),
    st.tuples(st.just("row"), positions, st.sampled_from(["drop", "duplicate", "extra",
                                                          "short", "empty", "huge"])),
    st.tuples(st.just("header"), st.sampled_from(["duplicate", "empty", "no target",
                                                  "only target", "none"])),
    st.tuples(st.just("newlines"), st.sampled_from(["\r\n", "\r", "\n\n"])),
)


def mutate_csv(data: bytes, ops) -> bytes:
    lines = data.decode("utf-8").rstrip("\n").split("\n")
    rows = [line.split(",") for line in lines]
    prefix, sep, tail = b"", "\n", []
    for op in ops:
        kind = op[0]
        if kind == "cell" and rows:
            r = rows[op[1] % len(rows)]
            if r:
                r[op[2] % len(r)] = op[3]
        elif kind == "row" and len(rows) > 1:
            i = 1 + op[1] % (len(rows) - 1)
            action = op[2]
            if action == "drop":
                rows.pop(i)
            elif action == "duplicate":
                rows.insert(i, list(rows[i]))
            elif action == "extra":
                rows[i].append("7")
            elif action == "short" and rows[i]:
                rows[i].pop()
            elif action == "empty":
                rows[i] = [""]
            elif action == "huge":
                rows[i] = ["1"] * 20000
        elif kind == "header" and rows:
            h = rows[0]
            if op[1] == "duplicate" and len(h) > 1:
                h[1] = h[0]
            elif op[1] == "empty":
                h[0] = ""
            elif op[1] == "no target":
                rows[0] = [c if c != "target" else "t" for c in h]
            elif op[1] == "only target":
                rows = [["target"]] + [r[-1:] for r in rows[1:]]
            elif op[1] == "none":
                rows = rows[1:]
        elif kind == "bom":
            prefix = op[1]
        elif kind == "newlines":
            sep = op[1]
        elif kind == "encoding":
            tail.append(op[1:])
    out = prefix + (sep.join(",".join(r) for r in rows) + sep).encode("utf-8", "surrogatepass")
    for pos, bad in tail:
        i = pos % (len(out) + 1)
        out = out[:i] + bad + out[i:]
    return out


parquet_ops = st.one_of(
    st.tuples(st.just("cell"), positions, st.sampled_from(
        [None, float("nan"), float("inf"), "", "x", "a" * 100000, 2**62, -1, True])),
    st.tuples(st.just("column"), st.sampled_from(["drop target", "rename", "all null",
                                                  "binary", "nested", "dictionary"])),
    st.tuples(st.just("rows"), st.sampled_from([0, 1, 100000])),
)


def mutate_parquet(data: bytes, ops) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    dictionary = set()  # columns written dictionary-encoded
    for op in ops:
        names = list(cols)
        if op[0] == "cell" and names:
            col = cols[names[op[1] % len(names)]]
            if col:
                col[(op[1] // 7) % len(col)] = op[2]
        elif op[0] == "column" and names:
            name = names[-1]
            if op[1] == "drop target" and "target" in cols:
                del cols["target"]
            elif op[1] == "rename":
                cols["renamed"] = cols.pop(name)
            elif op[1] == "all null":
                cols[name] = [None] * len(cols[name])
            elif op[1] == "binary":
                cols[name] = [str(v).encode() + b"\xff" for v in cols[name]]
            elif op[1] == "nested":
                cols[name] = [[v, v] for v in cols[name]]
            elif op[1] == "dictionary":
                dictionary.add(name)
        elif op[0] == "rows":
            cols = {k: (v * (op[1] // max(len(v), 1) + 1))[:op[1]] for k, v in cols.items()}
    arrays = {}
    for name, values in cols.items():
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arrays[name] = pa.array([str(v) for v in values])
        if name in dictionary:
            arrays[name] = pa.array([str(v) for v in values]).dictionary_encode()
    buf = io.BytesIO()
    pq.write_table(pa.table(arrays), buf)
    return buf.getvalue()


# ------------------------------------------------------------------------------- IDX
idx_ops = st.one_of(
    st.tuples(st.just("type"), st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00,
                                                0xFF])),
    st.tuples(st.just("ndim"), st.sampled_from([0, 1, 2, 3, 4, 5, 255])),
    st.tuples(st.just("dim"), positions, huge_ints),
    st.tuples(st.just("recompress"), byte_ops),
)


def mutate_idx(data: bytes, ops, gz: bool) -> bytes:
    raw = gzip.decompress(data) if gz else data
    inner_bytes = []
    for op in ops:
        if op[0] == "type":
            raw = raw[:2] + bytes([op[1]]) + raw[3:]
        elif op[0] == "ndim":
            raw = raw[:3] + bytes([op[1]]) + raw[4:]
        elif op[0] == "dim" and len(raw) >= 8:
            ndim = max(1, min(raw[3], (len(raw) - 4) // 4))
            at = 4 + 4 * (op[1] % ndim)
            raw = raw[:at] + struct.pack(">I", op[2] % 2**32) + raw[at + 4:]
        elif op[0] == "recompress":
            inner_bytes.append(op[1])
    for op in inner_bytes:
        raw = apply_bytes(raw, op)
    return gzip.compress(raw, mtime=0) if gz else raw


# ----------------------------------------------------------------------------- CIFAR
cifar_ops = st.one_of(
    st.tuples(st.just("label"), positions, st.integers(0, 255)),
    st.tuples(st.just("records"), st.integers(0, 6), st.integers(-3, 3)),
)


def mutate_cifar(data: bytes, ops) -> bytes:
    record = 3073
    for op in ops:
        n = len(data) // record
        if op[0] == "label" and n:
            i = (op[1] % n) * record
            data = data[:i] + bytes([op[2]]) + data[i + 1:]
        elif op[0] == "records":
            data = (data[:record] * op[1] if data else b"")
            data = data[:len(data) + op[2]] if op[2] < 0 else data + b"\0" * op[2]
    return data


# --------------------------------------------------------------- sklearn estimators
#: What a field of an estimator's state is replaced with (by name: Hypothesis prints it).
STATE_VALUES = ("none", "zero", "minus_one", "huge_int", "half", "nan", "inf", "empty_str",
                "name", "true", "empty_list", "empty_dict", "tuple", "list_of_none",
                "empty_array", "square", "strings", "nan64", "int64", "object", "estimator",
                "random_state")
#: How an array of the state is changed.
ARRAY_CHANGES = ("transpose", "drop_row", "add_row", "ravel", "add_dim", "float32", "float64",
                 "int64", "object", "str", "bool", "complex", "nan", "inf", "empty", "huge",
                 "list", "negative")
state_paths = st.lists(st.integers(0, 2**16), min_size=1, max_size=5)
state_ops = st.one_of(
    st.tuples(st.just("delete"), state_paths),
    st.tuples(st.just("set"), state_paths, st.sampled_from(STATE_VALUES)),
    st.tuples(st.just("array"), state_paths, st.sampled_from(ARRAY_CHANGES)),
)


def _state_value(name: str):
    import numpy as np
    from sklearn.preprocessing import LabelBinarizer

    return {"none": None, "zero": 0, "minus_one": -1, "huge_int": 2**63 - 1, "half": 0.5,
            "nan": float("nan"), "inf": float("inf"), "empty_str": "", "name": "relu",
            "true": True, "empty_list": [], "empty_dict": {}, "tuple": (1, 2),
            "list_of_none": [None], "empty_array": np.array([]), "square": np.zeros((2, 2)),
            "strings": np.array(["a", "b"]), "nan64": np.float64("nan"),
            "int64": np.int64(3), "object": object(), "estimator": LabelBinarizer(),
            "random_state": np.random.RandomState(0)}[name]


def _change_array(a, how: str):
    import numpy as np

    if how == "list":
        return a.tolist()
    if how == "transpose":
        return a.T
    if how == "drop_row":
        return a[:-1]
    if how == "add_row":
        return np.concatenate([a, a[:1]]) if a.ndim else np.stack([a, a])
    if how == "ravel":
        return a.ravel()
    if how == "add_dim":
        return a[None]
    if how == "empty":
        return a[:0]
    if how in ("float32", "float64", "int64", "object", "str", "bool", "complex"):
        with np.errstate(all="ignore"):
            return a.astype({"str": "U8", "complex": np.complex128}.get(how, how))
    b = np.array(a, dtype=np.float64 if a.dtype.kind not in "fc" else a.dtype)
    if b.size:
        with np.errstate(all="ignore"):  # 1e308 into float32 is Inf: meant
            b.flat[0] = {"nan": np.nan, "inf": np.inf, "huge": 1e308, "negative": -1.0}[how]
    return b


def _edit(node, path, op):
    """``node`` with ``op`` applied at ``path`` (containers copied on the way down)."""
    import numpy as np
    from sklearn.base import BaseEstimator

    children = None
    if isinstance(node, dict):
        children = node
    elif isinstance(node, list | tuple):
        children = dict(enumerate(node))
    elif isinstance(node, BaseEstimator):
        children = vars(node)
    if path and children:
        keys = sorted(children, key=str)
        key = keys[path[0] % len(keys)]
        if len(path) > 1 and isinstance(children[key], dict | list | tuple | BaseEstimator):
            new = {**children, key: _edit(children[key], path[1:], op)}
        elif op[0] == "delete":
            new = {k: v for k, v in children.items() if k != key}
        elif op[0] == "set":
            new = {**children, key: _state_value(op[2])}
        elif isinstance(children[key], np.ndarray):
            try:
                new = {**children, key: _change_array(children[key], op[2])}
            except (ValueError, TypeError, OverflowError):  # labels of text cast to floats
                return node
        else:
            return node
        if isinstance(node, dict):
            return new
        if isinstance(node, list | tuple):
            return type(node)(new[k] for k in sorted(new))
        clone = copy.copy(node)
        clone.__dict__.clear()
        clone.__dict__.update(new)
        return clone
    return node


class _Unpickled:
    """Pickles as ``cls`` with ``state``: unpickling calls ``cls.__setstate__(state)``."""

    def __init__(self, cls, state):
        self.cls, self.state = cls, state

    def __reduce__(self):
        import copyreg

        return copyreg._reconstructor, (self.cls, object, None), self.state


def mutate_estimator(data: bytes, ops) -> bytes:
    """A pickled fitted estimator (a seed: trusted) with fields of its state changed."""
    import pickle

    est = pickle.loads(data)
    state = est.__getstate__()
    for op in ops:
        state = _edit(state, op[1], op)
    return pickle.dumps(_Unpickled(type(est), state))


# ---------------------------------------------------------------------------- plans
_SPECIFIC = {"npz": zip_ops, "checkpoint": checkpoint_ops, "npy": npy_ops,
             "safetensors": st_ops, "csv": csv_ops, "parquet": parquet_ops, "idx": idx_ops,
             "cifar": cifar_ops, "sklearn": state_ops}


def plans(reader: str):
    """A mutation plan for ``reader``: 1-4 structure-aware operations, or byte-level ones."""
    structured = st.lists(_SPECIFIC[reader], min_size=1, max_size=4)
    if reader == "sklearn":  # pickle bytes flipped blindly test pickle, not fastnn
        return structured
    blind = st.lists(byte_ops, min_size=1, max_size=4)
    both = st.tuples(structured, blind).map(lambda p: p[0] + [("bytes", op) for op in p[1]])
    return st.one_of(structured, blind.map(lambda p: [("bytes", op) for op in p]), both)


def mutate(reader: str, seed_path: str, data: bytes, plan) -> bytes:
    specific = [op for op in plan if op[0] != "bytes" or reader == "npy"]
    blind = [op[1] for op in plan if op[0] == "bytes" and reader != "npy"]
    if reader == "npz":
        data = mutate_zip(data, specific) if specific else data
    elif reader == "checkpoint":
        data = mutate_checkpoint(data, specific) if specific else data
    elif reader == "npy":
        data = mutate_npy(data, specific)
    elif reader == "safetensors":
        data = mutate_safetensors(data, specific)
    elif reader == "csv":
        data = mutate_csv(data, specific)
    elif reader == "parquet":
        data = mutate_parquet(data, specific) if specific else data
    elif reader == "idx":
        data = mutate_idx(data, specific, seed_path.endswith(".gz"))
    elif reader == "cifar":
        data = mutate_cifar(data, specific)
    elif reader == "sklearn":
        return mutate_estimator(data, specific)
    for op in blind:
        data = apply_bytes(data, op)
    return data

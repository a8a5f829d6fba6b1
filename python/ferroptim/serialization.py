"""``save`` and ``load``: checkpoints of state dicts in one ``.npz`` file, without pickle.

The file is an ordinary NumPy ``.npz`` archive. Each array (and NumPy scalar) of the
object is one member, written by ``np.save``, so its dtype, shape, byte order, memory
order (C or F) and bits survive. The structure around them is one more member,
``ferroptim``: UTF-8 JSON holding the skeleton, in which

* ``null``, ``true``/``false``, strings and integers stand for themselves, and finite
  floats are written by ``repr`` (exact); NaN and infinities are ``{"float": "<bits>"}``
  with the 64 bits in hex, so a NaN's sign and payload survive too;
* a list is a JSON array; a tuple is ``{"tuple": [...]}``; a dict is
  ``{"dict": [[key, value], ...]}``, which keeps the key types (optimizer state dicts are
  keyed by ``int``) and the order;
* an array is ``{"array": "<member>"}`` and a NumPy scalar ``{"scalar": "<member>"}``.

Loading uses ``np.load(..., allow_pickle=False)``: a file can hold data only, never code.
"""

from __future__ import annotations

import json
import os
import reprlib
import struct
import tempfile
from collections.abc import Mapping
from typing import Any, BinaryIO, Union

import numpy as np

#: The member holding the skeleton, and the format's version.
SKELETON = "ferroptim"
VERSION = 1
#: How deeply dicts, lists and tuples may nest in a checkpoint (a state dict nests 4 deep),
#: well inside Python's recursion limit, which the encoder and decoder recurse on.
MAX_DEPTH = 100

PathOrFile = Union[str, "os.PathLike[str]", BinaryIO]


def save(obj: Any, f: PathOrFile, *, compress: bool = False) -> None:
    """Writes ``obj`` to ``f`` as one ``.npz`` file, without pickle (as ``torch.save`` for
    checkpoints).

    ``obj`` is any nesting of dicts, lists and tuples holding ``None``, bools, ints,
    floats, strings, NumPy arrays and NumPy scalars: an optimizer's ``state_dict()``, a
    scheduler's, or a dict of several, e.g. ``{"optimizer": opt.state_dict(),
    "scheduler": sched.state_dict(), "epoch": 3}``. :func:`load` gives back an equal
    object: the same types (``int`` keys stay ``int``, tuples stay tuples), dtypes and
    bits (NaN, infinities and ``-0.0`` included). Dict subclasses load as ``dict`` and
    array subclasses (:class:`~ferroptim.Parameter`) as ``np.ndarray``, without ``.grad``.

    Args:
        obj: what to save.
        f: a path, written exactly (no ``.npz`` appended) and atomically: the file is
            replaced only once it is complete, so a crash keeps the previous checkpoint.
            Or a binary file object open for writing.
        compress: deflate the members (``np.savez_compressed``).

    Raises:
        TypeError: ``obj`` holds something else (a function, an object array, a set),
            named by its path in ``obj``; nothing is written.
        ValueError: ``obj`` nests dicts, lists and tuples more than ``MAX_DEPTH`` (100)
            deep, named by the path where it does; nothing is written.
    """
    arrays: dict[str, np.ndarray] = {}
    skeleton = {"format": SKELETON, "version": VERSION, "root": _encode(obj, "obj", arrays, set())}
    text = json.dumps(skeleton, allow_nan=False)
    members = {SKELETON: np.frombuffer(text.encode("utf-8"), dtype=np.uint8), **arrays}
    if not isinstance(f, (str, os.PathLike)):
        _write(f, members, compress)
        return
    path = os.fspath(f)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            _write(out, members, compress)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _write(out: Any, members: dict[str, np.ndarray], compress: bool) -> None:
    write = np.savez_compressed if compress else np.savez
    write(out, **members)  # type: ignore[arg-type]


def load(f: PathOrFile) -> Any:
    """Reads what :func:`save` wrote (``np.load`` with ``allow_pickle=False``).

    Args:
        f: a path, or a binary file object open for reading.

    Returns:
        The saved object; its arrays are fresh writeable arrays.

    Raises:
        ValueError: the file is not a ferroptim checkpoint, or it is truncated or corrupted.
        FileNotFoundError: no file at ``f``.
    """
    if not isinstance(f, (str, os.PathLike)):
        return _load(f)
    with open(os.fspath(f), "rb") as source:
        return _load(source)


def _load(source: BinaryIO) -> Any:
    where = getattr(source, "name", "the file")
    try:
        archive = np.load(source, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not an .npz archive")
        with archive:
            members = {name: archive[name] for name in archive.files}
    except Exception as err:  # whatever a truncated or foreign file makes NumPy or zipfile raise
        raise ValueError(f"{where} is not a ferroptim checkpoint, or is corrupted: {err}") from None
    if SKELETON not in members:
        raise ValueError(
            f"{where} is an .npz archive but not a ferroptim checkpoint (no '{SKELETON}' member)"
        )
    raw = members.pop(SKELETON)
    try:
        skeleton = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where}: the checkpoint's skeleton is corrupted: {err}") from None
    except RecursionError:  # the JSON parser recurses on each level of nesting
        raise ValueError(
            f"{where}: the checkpoint nests more than {MAX_DEPTH} dicts, lists or tuples deep"
        ) from None
    if not isinstance(skeleton, dict) or skeleton.get("format") != SKELETON or "root" not in skeleton:
        raise ValueError(f"{where}: the checkpoint's skeleton is corrupted")
    if skeleton.get("version") != VERSION:
        version = skeleton.get("version")
        raise ValueError(f"{where}: checkpoint format version {version!r}; this ferroptim reads {VERSION}")
    used: set[str] = set()
    obj = _decode(skeleton["root"], members, used, where)
    if used != set(members):
        extra = sorted(set(members) - used)
        raise ValueError(f"{where}: the checkpoint has members its skeleton does not use: {extra[:5]}")
    return obj


# --- the skeleton -----------------------------------------------------------------------


def _encode(obj: Any, path: str, arrays: dict[str, np.ndarray], active: set[int]) -> Any:
    # NumPy scalars first: np.float64 is a float and np.str_ a str, but they keep their type
    if isinstance(obj, (np.generic, np.ndarray)):
        if obj.dtype.hasobject:
            raise TypeError(f"{path} has dtype {obj.dtype}, which cannot be saved without pickle")
        name = f"a{len(arrays)}"
        arrays[name] = obj.view(np.ndarray) if isinstance(obj, np.ndarray) else np.asarray(obj)
        return {"array" if isinstance(obj, np.ndarray) else "scalar": name}
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        x = float(obj)
        return x if np.isfinite(x) else {"float": struct.pack(">d", x).hex()}
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, (list, tuple, Mapping)):
        if id(obj) in active:
            raise TypeError(f"{path} contains itself")
        if len(active) >= MAX_DEPTH:
            raise ValueError(f"{path} is nested more than {MAX_DEPTH} dicts, lists or tuples deep")
        active.add(id(obj))
        try:
            if isinstance(obj, list):
                return [_encode(v, f"{path}[{i}]", arrays, active) for i, v in enumerate(obj)]
            if isinstance(obj, tuple):
                return {"tuple": [_encode(v, f"{path}[{i}]", arrays, active) for i, v in enumerate(obj)]}
            if not isinstance(obj, dict):
                raise TypeError(
                    f"{path} is a {type(obj).__name__}; only dicts (and their subclasses) can be saved"
                )
            return {
                "dict": [
                    [
                        _encode(k, f"{path} key {k!r}", arrays, active),
                        _encode(v, f"{path}[{k!r}]", arrays, active),
                    ]
                    for k, v in obj.items()
                ]
            }
        finally:
            active.discard(id(obj))
    raise TypeError(
        f"{path} is a {type(obj).__name__}, which fo.save cannot store; it saves dicts, lists, tuples, "
        "None, bools, ints, floats, strings, NumPy arrays and NumPy scalars"
    )


def _decode(node: Any, members: dict[str, np.ndarray], used: set[str], where: str, depth: int = 0) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    container = isinstance(node, list) or (
        isinstance(node, dict) and len(node) == 1 and next(iter(node)) in ("tuple", "dict")
    )
    if container and depth >= MAX_DEPTH:
        raise ValueError(f"{where}: the checkpoint nests more than {MAX_DEPTH} dicts, lists or tuples deep")
    if isinstance(node, list):
        return [_decode(v, members, used, where, depth + 1) for v in node]
    if isinstance(node, dict) and len(node) == 1:
        ((tag, value),) = node.items()
        if tag == "tuple" and isinstance(value, list):
            return tuple(_decode(v, members, used, where, depth + 1) for v in value)
        if tag == "dict" and isinstance(value, list):
            out = {}
            for pair in value:
                if not isinstance(pair, list) or len(pair) != 2:
                    break
                key = _decode(pair[0], members, used, where, depth + 1)
                try:
                    out[key] = _decode(pair[1], members, used, where, depth + 1)
                except TypeError:
                    raise ValueError(f"{where}: the checkpoint has an unhashable dict key {key!r}") from None
            else:
                return out
        if tag == "float" and isinstance(value, str) and len(value) == 16:
            try:
                return struct.unpack(">d", bytes.fromhex(value))[0]
            except ValueError:
                pass
        if tag in ("array", "scalar") and isinstance(value, str):
            if value not in members or value in used:
                raise ValueError(f"{where}: the checkpoint's member {value!r} is missing or used twice")
            used.add(value)
            array = members[value]
            if tag == "scalar":
                if array.ndim != 0:
                    raise ValueError(f"{where}: the checkpoint's scalar {value!r} is not 0-d")
                return array[()]
            return array if array.flags.writeable else array.copy(order="K")
    raise ValueError(f"{where}: the checkpoint's skeleton is corrupted near {reprlib.repr(node)}")


__all__ = ["load", "save"]

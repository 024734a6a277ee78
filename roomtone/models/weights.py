"""Weight files: an ``.npz`` of named float arrays (``allow_pickle=False``: nothing in it can
execute) plus a JSON config beside it (``name.npz`` and ``name.json``): the architecture's
hyperparameters, the sample rate, the training data manifest and the figures the weights reached.

A model is rebuilt abstractly (``nnx.eval_shape``: no random initialisation, no RNG compiles) from
its config and the arrays are put into it (``nnx.replace_by_pure_dict``); every parameter must be
in the file with its exact shape, and the file may hold nothing else.

Keys are the parameter paths joined by ``/`` (``encoder/layers/0/kernel``).
"""

import json
import os
import tempfile
import zipfile

import numpy as np

from roomtone.errors import RoomtoneError

CONFIG_KEYS = ("architecture", "sample_rate")


class ModelFileError(RoomtoneError, ValueError):
    """A weight file or its config is missing, unreadable, holds a pickle or other non-numeric
    data, or does not fit the model it claims to be."""


def config_path(weights_path):
    """The JSON config beside ``weights_path`` (same name, ``.json``)."""
    root, _ = os.path.splitext(os.fspath(weights_path))
    return root + ".json"


def _leaves(tree, prefix=""):
    """``(path, leaf)`` of a nested dict, paths joined by ``/``."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _leaves(value, path + "/")
        else:
            yield path, value


def flatten(tree):
    """A nested dict of arrays (``nnx.to_pure_dict``) as ``{"a/0/b": array}``."""
    return {path: np.asarray(value) for path, value in _leaves(tree)}


def unflatten(flat, like):
    """``flat`` arranged as the nested dict ``like`` (its keys, ints or strings, decide the types)."""
    out = {}
    for key, value in like.items():
        if isinstance(value, dict):
            out[key] = unflatten({k[len(str(key)) + 1:]: v for k, v in flat.items()
                                  if k.startswith(f"{key}/")}, value)
        else:
            out[key] = flat[str(key)]
    return out


def save_weights(path, arrays, config):
    """Write ``arrays`` (flat ``{"a/b": array}``, numeric dtypes) to ``path`` (``.npz``) and
    ``config`` (JSON-ready dict with at least :data:`CONFIG_KEYS`) beside it, each atomically."""
    path = os.fspath(path)
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise ModelFileError(f"{path}: config lacks {', '.join(missing)}")
    for key, value in arrays.items():
        if not np.issubdtype(np.asarray(value).dtype, np.number):
            raise ModelFileError(f"{path}: array {key!r} has dtype {np.asarray(value).dtype}; weights are numeric")
    _write_atomic(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))
    save_config(path, config)


def save_config(weights_path, config):
    """Write ``config`` (JSON-ready dict with at least :data:`CONFIG_KEYS`) as the config beside
    ``weights_path``, atomically, leaving the ``.npz`` as it is."""
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise ModelFileError(f"{os.fspath(weights_path)}: config lacks {', '.join(missing)}")
    _write_atomic(config_path(weights_path), lambda f: f.write(json.dumps(config, indent=1, sort_keys=True).encode()))


def _write_atomic(target, write):
    """``write(binary file)`` into a temporary file beside ``target``, then renamed over it."""
    handle, temp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(target)), prefix=".tmp-",
                                    suffix=os.path.basename(target))
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # readable as any file the user writes (mkstemp makes it 0600)
        os.replace(temp, target)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def load_config(path):
    """The JSON config of the weights at ``path``. Raises :class:`ModelFileError`."""
    cfg = config_path(path)
    try:
        with open(cfg, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise ModelFileError(f"{cfg}: missing (every weight file has its JSON config beside it)") from None
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{cfg}: unreadable config ({exc})") from None
    if not isinstance(config, dict) or any(key not in config for key in CONFIG_KEYS):
        raise ModelFileError(f"{cfg}: a config needs {', '.join(CONFIG_KEYS)}")
    return config


def load_arrays(path):
    """The arrays of an ``.npz`` weight file, read with ``allow_pickle=False``; a member that is not
    a plain numeric ``.npy`` array (a pickle, an object array) is refused. Returns ``{key: array}``."""
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: weight file missing") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{path}: not an .npz weight file ({exc})") from None
    odd = [name for name in names if not name.endswith(".npy")]
    if odd:
        raise ModelFileError(f"{path}: holds {odd[0]!r}, not a .npy array; refused")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                value = data[key]
                if not np.issubdtype(value.dtype, np.number):
                    raise ModelFileError(f"{path}: array {key!r} has dtype {value.dtype}; refused")
                arrays[key] = value
    except ModelFileError:
        raise
    except ValueError as exc:  # numpy refuses object arrays without allow_pickle
        raise ModelFileError(f"{path}: holds pickled data ({exc}); refused") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: unreadable ({exc})") from None
    return arrays


def build(factory, arrays, *, path="weights"):
    """The Flax NNX model ``factory()`` builds, rebuilt abstractly (``nnx.eval_shape``) and filled
    with ``arrays`` (flat, from :func:`load_arrays`), each cast to the model's dtype (a float16 file
    runs in float32). Every parameter must be there with its shape, and nothing else. Raises
    :class:`ModelFileError`."""
    from flax import nnx
    import jax.numpy as jnp

    model = nnx.eval_shape(factory)
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    expected = flatten_shapes(pure)
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise ModelFileError(f"{path}: does not fit the model (missing {missing[:3]}, unexpected {extra[:3]})")
    for key, shape in expected.items():
        if tuple(arrays[key].shape) != shape:
            raise ModelFileError(f"{path}: {key} has shape {arrays[key].shape}, the model needs {shape}")
    # a file may store its parameters in half precision (a smaller shipped file): every array
    # takes the dtype the model declares for it
    dtypes = {path: value.dtype for path, value in _leaves(pure)}
    nnx.replace_by_pure_dict(state, unflatten({k: jnp.asarray(v, dtype=dtypes[k]) for k, v in arrays.items()}, pure))
    nnx.update(model, state)
    return model


def load_model(path, architecture, build_model):
    """``(model, config)`` from the weight file at ``path``: its config read
    (:func:`load_config`), ``architecture(config, path)`` (the model's own check that the file
    is one of its kind, raising :class:`ModelFileError` otherwise, and its hyperparameters),
    ``build_model(arch, rngs)`` rebuilt abstractly and filled with the file's arrays
    (:func:`build`). One loader for every model we ship."""
    from flax import nnx

    path = str(path)
    config = load_config(path)
    arch = architecture(config, path)
    return build(lambda: build_model(arch, nnx.Rngs(0)), load_arrays(path), path=path), config


def half_precision(arrays):
    """``arrays`` with every float array stored as float16 (half the file; :func:`build` casts back
    to the model's dtype). For a model whose outputs are masks, the rounding (about 5e-4 relative)
    moves its figures by hundredths of a dB."""
    return {k: (np.asarray(v).astype(np.float16) if np.issubdtype(np.asarray(v).dtype, np.floating) else v)
            for k, v in arrays.items()}


def flatten_shapes(tree):
    """``{"a/0/b": shape}`` of a nested dict of (abstract) arrays."""
    return {path: tuple(value.shape) for path, value in _leaves(tree)}


def model_arrays(model):
    """A model's parameters as flat numpy arrays, for :func:`save_weights`."""
    from flax import nnx

    return flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param)))

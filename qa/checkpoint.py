"""Model and training-state files: safetensors for tensors, JSON for everything else, never pickle.

Every file is written atomically (temporary file, fsync, rename), so a crash leaves either the
old file or the new one, never a torn one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load, save

from qa.errors import UserError

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
DIGEST_KEY = "weights_sha256"  # config.json's record of the exact bytes of model.safetensors


class ModelFileError(UserError):
    """A model or checkpoint file that is missing, unreadable or does not match its config."""


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the permissions of a plain open(), not mkstemp's owner-only 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    _atomic_write(Path(path), lambda h: h.write(text.encode()))


def write_json(path: Path, payload) -> None:
    """Write JSON atomically."""
    write_text(path, json.dumps(payload, indent=2, ensure_ascii=False))


def copy_weights(source: Path, destination: Path) -> None:
    """Copy the model folder ``source``'s weights file into the folder ``destination``, atomically."""
    _atomic_write(Path(destination) / MODEL_FILE, lambda h: h.write((Path(source) / MODEL_FILE).read_bytes()))


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Write a safetensors file (with optional string metadata) atomically; returns its SHA-256."""
    payload = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    _atomic_write(Path(path), lambda h: h.write(payload))
    return hashlib.sha256(payload).hexdigest()


def read_tensors(path: Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file, naming the file in any error; with ``sha256``, its bytes must have
    that digest (the file is read once for both)."""
    if not Path(path).exists():
        raise ModelFileError(f"{path}: no such file")
    payload = Path(path).read_bytes()
    if sha256 is not None and hashlib.sha256(payload).hexdigest() != sha256:
        raise ModelFileError(f"{path}: contents do not match the SHA-256 in {CONFIG_FILE} "
                             "(the file was changed or damaged after it was saved)")
    try:
        return load(payload)
    except Exception as error:  # safetensors raises several types for corrupt files
        raise ModelFileError(f"{path}: not a readable safetensors file ({error})") from None


def write_checkpoint(path: Path, groups: dict[str, dict[str, torch.Tensor]], state: dict) -> None:
    """One safetensors file holding named tensor groups and a JSON state, so a resumable
    checkpoint is replaced in a single atomic step (never half old, half new)."""
    tensors = {f"{group}/{name}": tensor for group, members in groups.items() for name, tensor in members.items()}
    write_tensors(path, tensors, metadata={"state": json.dumps(state)})


def read_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """Inverse of ``write_checkpoint``: (tensor groups, state)."""
    from safetensors import safe_open

    if not Path(path).exists():
        raise ModelFileError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as handle:  # one handle: tensors and state of one version
            state = json.loads((handle.metadata() or {}).get("state", "null"))
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors raises several types for corrupt files
        raise ModelFileError(f"{path}: not a readable checkpoint ({error})") from None
    if state is None:
        raise ModelFileError(f"{path}: not a training checkpoint (no state)")
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        group, name = key.split("/", 1)
        groups.setdefault(group, {})[name] = tensor
    return groups, state


def read_json(path: Path) -> dict:
    if not Path(path).exists():
        raise ModelFileError(f"{path}: no such file")
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: not valid JSON ({error})") from None


def save_model(folder: Path, model: torch.nn.Module, config: dict) -> None:
    """Write ``model.safetensors`` (trainable weights only) and ``config.json`` as the model folder
    ``folder``; the config records the weights' SHA-256 so that a changed or damaged weights file is caught.
    Both are written into ``NAME.partial`` beside it, which then replaces ``folder`` whole: a crash leaves
    the old folder or the new one, never new weights beside the old digest (``restore_model_folder``)."""
    folder = Path(folder)
    restore_model_folder(folder)
    partial, old = folder.with_name(folder.name + ".partial"), folder.with_name(folder.name + ".old")
    for leftover in (partial, old):  # of a crash after the swap, or while writing: ``folder`` is whole
        shutil.rmtree(leftover, ignore_errors=True)
    digest = write_tensors(partial / MODEL_FILE, model.state_dict())
    write_json(partial / CONFIG_FILE, {**config, DIGEST_KEY: digest})
    if folder.exists():
        folder.rename(old)
    partial.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def restore_model_folder(folder: Path) -> None:
    """Put back ``folder`` from ``NAME.old`` when a crash came between ``save_model``'s two renames."""
    old = Path(folder).with_name(Path(folder).name + ".old")
    if old.exists() and not Path(folder).exists():
        old.rename(folder)


def load_weights(folder: Path, model: torch.nn.Module, sha256: str | None = None) -> None:
    """Load ``model.safetensors`` into ``model``, naming a digest mismatch (when ``sha256`` is given),
    missing, extra or mis-shaped tensors, wrong dtypes and non-finite values."""
    path = Path(folder) / MODEL_FILE
    tensors = read_tensors(path, sha256)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    shapes = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or extra or shapes:
        raise ModelFileError(
            f"{path}: does not match {CONFIG_FILE} (missing {missing[:3]}, unexpected {extra[:3]}, "
            f"wrong shape {shapes[:3]})"
        )
    dtypes = [f"{k} is {tensors[k].dtype}, expected {v.dtype}" for k, v in expected.items() if tensors[k].dtype != v.dtype]
    if dtypes:
        raise ModelFileError(f"{path}: wrong tensor type ({'; '.join(dtypes[:3])})")
    broken = [k for k, v in tensors.items() if v.dtype.is_floating_point and not torch.isfinite(v).all()]
    if broken:
        raise ModelFileError(f"{path}: non-finite values (NaN or infinity) in {broken[:3]}")
    model.load_state_dict(tensors)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state into tensors (for safetensors) and plain JSON values."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of ``optimizer_tensors``."""
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})

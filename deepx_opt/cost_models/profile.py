"""Device profiles: processors, links, powers and fitted latency models, as versioned JSON.

A profile describes one device (a phone chip, or this machine after ``deepx calibrate``): its processors,
the links between them, and for every processor a fitted latency model per kind of work (see
:mod:`deepx_opt.cost_models.latency`). The loader validates everything and raises
:class:`~deepx_opt.errors.ProfileError` naming the field, the bad value and what is accepted.

JSON layout (``version`` 1)::

    {
      "version": 1,
      "name": "tegrak1",
      "description": "...",
      "host": "cpu",                      # where model inputs live and outputs are returned
      "processors": [
        {"name": "cpu", "kind": "cpu", "backend": null, "memory_bytes": 2147483648,
         "active_power_w": 3.1, "idle_power_w": 0.25, "power_source": "modelled",
         "power_model": null,              # optional: a fitted PowerModel (see cost_models/power.py)
         "unsupported_kinds": [], "supported_ops": null,
         "latency_models": {"gemm": {"family": "linear", "features": ["flops", "bytes"], "coef_": [...]}, ...}}
      ],
      "links": [
        {"src": "cpu", "dst": "cloud", "bandwidth_bytes_per_s": 1.0e6, "latency_us": 60000.0,
         "energy_per_byte_uj": 2.0, "power_w": 0.6, "wireless": true, "symmetric": true}
      ],
      "meta": {...}                       # free-form provenance (calibration host, fit residuals, ...)
    }

Example
-------
>>> from deepx_opt.cost_models import load_profile
>>> p = load_profile("tegrak1")
>>> [q.name for q in p.processors]
['cpu', 'lpu', 'gpu', 'cloud']
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepx_opt.errors import ProfileError

__all__ = [
    "PROFILE_VERSION",
    "PROCESSOR_KINDS",
    "WORK_KINDS",
    "Processor",
    "Link",
    "DeviceProfile",
    "load_profile",
    "save_profile",
    "builtin_profiles",
    "profile_from_dict",
]

#: The only profile format version this code reads and writes.
PROFILE_VERSION = 1

#: Accepted processor kinds. ``remote`` is a server reached over a (wireless) link.
PROCESSOR_KINDS = ("cpu", "gpu", "dsp", "lpu", "remote")

#: Kinds of work a latency model exists for (the ``kind`` layer attribute of docs/ir.md, plus ``copy``
#: for data movement inside one processor, e.g. Transpose).
WORK_KINDS = ("gemm", "conv", "dwconv", "elementwise", "pool", "lrn", "softmax", "concat", "reshape", "pad", "copy")

_BUILTIN_DIR = Path(__file__).resolve().parent.parent / "profiles"


def _err(path: str, msg: str) -> ProfileError:
    return ProfileError(f"profile field {path}: {msg}")


def _get(d: dict, key: str, path: str, *, types: tuple = (), required: bool = True, default: Any = None):
    if key not in d or d[key] is None:
        if required:
            raise _err(f"{path}.{key}" if path else key, "missing (required)")
        return default
    v = d[key]
    if types and not isinstance(v, types) or isinstance(v, bool) and bool not in types:
        names = "/".join(t.__name__ for t in types)
        raise _err(f"{path}.{key}" if path else key, f"{v!r} has type {type(v).__name__}; expected {names}")
    return v


def _nonneg(d: dict, key: str, path: str, *, required: bool = True, default: float = 0.0, positive=False) -> float:
    v = _get(d, key, path, types=(int, float), required=required, default=default)
    v = float(v)
    full = f"{path}.{key}"
    if not math.isfinite(v):
        raise _err(full, f"{v!r} is not finite; expected a finite number >= 0")
    if v < 0:
        raise _err(full, f"{v!r} is negative; expected a number {'> 0' if positive else '>= 0'}")
    if positive and v == 0:
        raise _err(full, f"{v!r}; expected a number > 0")
    return v


@dataclass
class Processor:
    """One processor of a device.

    Attributes
    ----------
    name : str
        Unique name within the profile (``"cpu"``, ``"gpu"``, ``"opencl:0"``, ``"cloud"``).
    kind : str
        One of :data:`PROCESSOR_KINDS`.
    memory_bytes : int
        Capacity available to weights and activations.
    active_power_w, idle_power_w : float
        Power while busy and while idle. For a ``remote`` processor, ``active_power_w`` is what the *local
        device* spends while the server computes (waiting with the radio on) and ``idle_power_w`` is 0.
    backend : str or None
        Runtime backend that executes this processor on this machine (``"cpu"``, ``"opencl:0"``), or None
        for a modelled processor (the paper's DSP, say).
    power_source : str
        ``"modelled"`` (from a datasheet or fitted to published figures) or ``"measured"`` (e.g. NVML).
    unsupported_kinds : list[str]
        Work kinds the processor cannot run (refused, never costed).
    supported_ops : list[str] or None
        If given, the only canonical op types the processor runs.
    latency_models : dict[str, dict]
        Per work kind (``"gemm"``) or work kind and variant (``"gemm/gemv"``, ``"pool/MaxPool"``; see
        :func:`~deepx_opt.cost_models.latency.work_variant`), a serialised
        :class:`~deepx_opt.cost_models.latency.LatencyModel`. A variant's model, when present, is used
        before its kind's.
    block_overhead_us : float
        Fixed cost of one block on top of its ops (the executor's per-block synchronisation and timing);
        measured by calibration, 0 for modelled processors.
    power_model : dict or None
        A serialised :class:`~deepx_opt.cost_models.power.PowerModel` (energy of a block from its works and
        latency, fitted from measured energy, e.g. NVML's during calibration), or None: a block then costs
        ``active_power_w`` × its latency. See :func:`~deepx_opt.cost_models.energy.block_energy_uj`.
    lowrank_table : dict or None
        A serialised :class:`~deepx_opt.cost_models.latency.LowRankTable`: in-model ratios of factor pairs per
        dense layer shape and rank, measured by calibration (None: factor pairs cost their two factors).
    """

    name: str
    kind: str
    memory_bytes: int
    active_power_w: float
    idle_power_w: float
    backend: str | None = None
    power_source: str = "modelled"
    unsupported_kinds: list[str] = field(default_factory=list)
    supported_ops: list[str] | None = None
    latency_models: dict[str, dict] = field(default_factory=dict)
    block_overhead_us: float = 0.0
    power_model: dict | None = None
    lowrank_table: dict | None = None

    def supports_kind(self, kind: str) -> bool:
        return kind not in self.unsupported_kinds

    def supports_op(self, op_type: str) -> bool:
        return self.supported_ops is None or op_type in self.supported_ops

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "backend": self.backend,
            "memory_bytes": int(self.memory_bytes),
            "active_power_w": float(self.active_power_w),
            "idle_power_w": float(self.idle_power_w),
            "power_source": self.power_source,
            "unsupported_kinds": list(self.unsupported_kinds),
            "supported_ops": None if self.supported_ops is None else list(self.supported_ops),
            "latency_models": {k: dict(v) for k, v in self.latency_models.items()},
            "block_overhead_us": float(self.block_overhead_us),
            **({"power_model": dict(self.power_model)} if self.power_model is not None else {}),
            **({"lowrank_table": dict(self.lowrank_table)} if self.lowrank_table else {}),
        }


@dataclass
class Link:
    """A link between two processors.

    A transfer of ``b`` bytes takes ``latency_us + b / bandwidth_bytes_per_s * 1e6`` µs and costs the device
    ``energy_per_byte_uj * b + power_w * latency_us`` µJ: the per-byte energy covers moving the bytes
    (radio or bus active), ``power_w`` the waiting for the link's latency (a wireless link's round trip).
    """

    src: str
    dst: str
    bandwidth_bytes_per_s: float
    latency_us: float
    energy_per_byte_uj: float
    power_w: float = 0.0
    wireless: bool = False
    symmetric: bool = True

    def transfer_time_us(self, nbytes: int | float) -> float:
        return self.latency_us + float(nbytes) / self.bandwidth_bytes_per_s * 1e6

    def transfer_energy_uj(self, nbytes: int | float) -> float:
        return self.energy_per_byte_uj * float(nbytes) + self.power_w * self.latency_us

    def to_dict(self) -> dict:
        return {
            "src": self.src,
            "dst": self.dst,
            "bandwidth_bytes_per_s": float(self.bandwidth_bytes_per_s),
            "latency_us": float(self.latency_us),
            "energy_per_byte_uj": float(self.energy_per_byte_uj),
            "power_w": float(self.power_w),
            "wireless": bool(self.wireless),
            "symmetric": bool(self.symmetric),
        }


@dataclass
class DeviceProfile:
    """A validated device profile; see the module docstring for its JSON form."""

    name: str
    processors: list[Processor]
    links: list[Link]
    host: str = "cpu"
    description: str = ""
    version: int = PROFILE_VERSION
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ lookup
    def processor(self, name: str) -> Processor:
        """The processor called ``name``; :class:`ProfileError` lists the profile's processors otherwise."""
        for p in self.processors:
            if p.name == name:
                return p
        raise ProfileError(
            f"profile {self.name!r} has no processor {name!r}; its processors: {', '.join(self.processor_names)}"
        )

    @property
    def processor_names(self) -> list[str]:
        return [p.name for p in self.processors]

    def link(self, src: str, dst: str) -> Link | None:
        """The direct link from ``src`` to ``dst`` (symmetric links serve both ways), or None."""
        for lk in self.links:
            if lk.src == src and lk.dst == dst:
                return lk
        for lk in self.links:
            if lk.symmetric and lk.src == dst and lk.dst == src:
                return lk
        return None

    def route(self, src: str, dst: str) -> list[Link]:
        """Links a tensor crosses from ``src`` to ``dst``: none for the same processor, the direct link if
        there is one, else through the host (``src → host → dst``).

        Raises
        ------
        ProfileError
            when neither a direct link nor a route through the host exists.
        """
        self.processor(src)
        self.processor(dst)
        if src == dst:
            return []
        direct = self.link(src, dst)
        if direct is not None:
            return [direct]
        a, b = self.link(src, self.host), self.link(self.host, dst)
        if src != self.host and dst != self.host and a is not None and b is not None:
            return [a, b]
        raise ProfileError(
            f"profile {self.name!r} has no link from {src!r} to {dst!r} and no route through host "
            f"{self.host!r}; links: {', '.join(f'{lk.src}-{lk.dst}' for lk in self.links) or 'none'}"
        )

    def transfer_time_us(self, src: str, dst: str, nbytes: int | float) -> float:
        """Time to move ``nbytes`` from ``src`` to ``dst`` (0 on the same processor)."""
        return float(sum(lk.transfer_time_us(nbytes) for lk in self.route(src, dst)))

    def transfer_energy_uj(self, src: str, dst: str, nbytes: int | float) -> float:
        """Device energy to move ``nbytes`` from ``src`` to ``dst`` (0 on the same processor)."""
        return float(sum(lk.transfer_energy_uj(nbytes) for lk in self.route(src, dst)))

    # ------------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "host": self.host,
            "processors": [p.to_dict() for p in self.processors],
            "links": [lk.to_dict() for lk in self.links],
            "meta": self.meta,
        }

    def copy(self) -> "DeviceProfile":
        return profile_from_dict(json.loads(json.dumps(self.to_dict())))


def _parse_latency_models(d: Any, path: str) -> dict[str, dict]:
    from deepx_opt.cost_models.latency import LatencyModel

    if not isinstance(d, dict):
        raise _err(path, f"{type(d).__name__} given; expected an object mapping work kind to model")
    out = {}
    for kind, md in d.items():
        base, _, variant = str(kind).partition("/")
        if base not in WORK_KINDS or (_ and not variant):
            raise _err(f"{path}.{kind}", f"unknown work kind {kind!r}; accepted: {', '.join(WORK_KINDS)}, "
                                         f"optionally followed by /VARIANT (e.g. gemm/gemv)")
        try:
            LatencyModel.from_dict(md)  # validates
        except ProfileError as exc:
            raise _err(f"{path}.{kind}", str(exc)) from None
        out[kind] = dict(md)
    return out


def _parse_power_model(d: Any, path: str) -> dict | None:
    from deepx_opt.cost_models.power import PowerModel

    if d is None:
        return None
    try:
        PowerModel.from_dict(d)  # validates
    except ProfileError as exc:
        raise _err(path, str(exc)) from None
    return dict(d)


def _parse_lowrank_table(d: Any, path: str) -> dict | None:
    from deepx_opt.cost_models.latency import LowRankTable

    if d is None:
        return None
    try:
        return LowRankTable.from_dict(d).to_dict()  # validates
    except ProfileError as exc:
        raise _err(path, str(exc).removeprefix("lowrank_table").lstrip(".: ")) from None


def _parse_processor(d: Any, i: int) -> Processor:
    path = f"processors[{i}]"
    if not isinstance(d, dict):
        raise _err(path, f"{type(d).__name__} given; expected an object")
    name = _get(d, "name", path, types=(str,))
    if not name:
        raise _err(f"{path}.name", "empty; expected a non-empty string")
    kind = _get(d, "kind", path, types=(str,))
    if kind not in PROCESSOR_KINDS:
        raise _err(f"{path}.kind", f"unknown processor kind {kind!r}; accepted: {', '.join(PROCESSOR_KINDS)}")
    mem = _get(d, "memory_bytes", path, types=(int, float))
    if mem <= 0 or not math.isfinite(mem):
        raise _err(f"{path}.memory_bytes", f"{mem!r}; expected a positive number of bytes")
    unsup = _get(d, "unsupported_kinds", path, types=(list,), required=False, default=[])
    for k in unsup:
        if k not in WORK_KINDS:
            raise _err(f"{path}.unsupported_kinds", f"unknown work kind {k!r}; accepted: {', '.join(WORK_KINDS)}")
    sops = _get(d, "supported_ops", path, types=(list,), required=False, default=None)
    backend = _get(d, "backend", path, types=(str,), required=False, default=None)
    psrc = _get(d, "power_source", path, types=(str,), required=False, default="modelled")
    if psrc not in ("modelled", "measured"):
        raise _err(f"{path}.power_source", f"{psrc!r}; accepted: modelled, measured")
    return Processor(
        name=name,
        kind=kind,
        memory_bytes=int(mem),
        active_power_w=_nonneg(d, "active_power_w", path),
        idle_power_w=_nonneg(d, "idle_power_w", path),
        backend=backend,
        power_source=psrc,
        unsupported_kinds=list(unsup),
        supported_ops=None if sops is None else [str(s) for s in sops],
        latency_models=_parse_latency_models(d.get("latency_models", {}), f"{path}.latency_models"),
        block_overhead_us=_nonneg(d, "block_overhead_us", path) if "block_overhead_us" in d else 0.0,
        power_model=_parse_power_model(d.get("power_model"), f"{path}.power_model"),
        lowrank_table=_parse_lowrank_table(d.get("lowrank_table"), f"{path}.lowrank_table"),
    )


def _parse_link(d: Any, i: int, names: list[str]) -> Link:
    path = f"links[{i}]"
    if not isinstance(d, dict):
        raise _err(path, f"{type(d).__name__} given; expected an object")
    src = _get(d, "src", path, types=(str,))
    dst = _get(d, "dst", path, types=(str,))
    for key, v in (("src", src), ("dst", dst)):
        if v not in names:
            raise _err(f"{path}.{key}", f"unknown processor {v!r}; the profile's processors: {', '.join(names)}")
    if src == dst:
        raise _err(path, f"links {src!r} to itself; a link joins two different processors")
    return Link(
        src=src,
        dst=dst,
        bandwidth_bytes_per_s=_nonneg(d, "bandwidth_bytes_per_s", path, positive=True),
        latency_us=_nonneg(d, "latency_us", path),
        energy_per_byte_uj=_nonneg(d, "energy_per_byte_uj", path),
        power_w=_nonneg(d, "power_w", path, required=False, default=0.0),
        wireless=bool(_get(d, "wireless", path, types=(bool,), required=False, default=False)),
        symmetric=bool(_get(d, "symmetric", path, types=(bool,), required=False, default=True)),
    )


def profile_from_dict(d: Any) -> DeviceProfile:
    """Validate a profile's JSON object and build a :class:`DeviceProfile`.

    Raises
    ------
    ProfileError
        naming the field, the bad value and what is accepted.
    """
    if not isinstance(d, dict):
        raise ProfileError(f"a profile is a JSON object; got {type(d).__name__}")
    version = d.get("version")
    if version is None:
        raise _err("version", f"missing (required); this code reads version {PROFILE_VERSION}")
    if version != PROFILE_VERSION:
        raise _err("version", f"{version!r} is not supported; accepted: {PROFILE_VERSION}")
    name = _get(d, "name", "", types=(str,))
    procs_raw = _get(d, "processors", "", types=(list,))
    if not procs_raw:
        raise _err("processors", "empty; a profile needs at least one processor")
    procs = [_parse_processor(p, i) for i, p in enumerate(procs_raw)]
    names = [p.name for p in procs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _err("processors", f"duplicate processor names {dup}; names must be unique")
    links = [_parse_link(lk, i, names) for i, lk in enumerate(_get(d, "links", "", types=(list,), required=False,
                                                                   default=[]))]
    for p, raw in zip(procs, procs_raw):
        if p.kind == "remote":
            lks = [lk for lk in links if p.name in (lk.src, lk.dst)]
            if not lks:
                raise _err("links", f"remote processor {p.name!r} has no link; a remote processor needs one")
            for lk in lks:
                if not lk.wireless:
                    raise _err("links", f"link {lk.src}-{lk.dst} reaches remote processor {p.name!r} but has "
                                        "wireless=false; a remote processor's link is wireless")
    host = _get(d, "host", "", types=(str,), required=False, default=names[0])
    if host not in names:
        raise _err("host", f"unknown processor {host!r}; the profile's processors: {', '.join(names)}")
    if procs[names.index(host)].kind == "remote":
        raise _err("host", f"{host!r} is a remote processor; the host must be a local one")
    meta = d.get("meta") or {}
    if not isinstance(meta, dict):
        raise _err("meta", f"{type(meta).__name__} given; expected an object")
    return DeviceProfile(
        name=name,
        processors=procs,
        links=links,
        host=host,
        description=str(d.get("description", "")),
        version=PROFILE_VERSION,
        meta=meta,
    )


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped in ``deepx_opt/profiles/`` (loadable by name)."""
    return sorted(p.stem for p in _BUILTIN_DIR.glob("*.json") if not p.name.startswith("_"))


def load_profile(name_or_path: str | os.PathLike | DeviceProfile) -> DeviceProfile:
    """Load a profile by built-in name (``"snapdragon800"``, ``"tegrak1"``) or from a JSON file path.

    Raises
    ------
    ProfileError
        when the name is neither built in nor a file, the file is not JSON, or a field is invalid.

    Example
    -------
    >>> load_profile("snapdragon800").processor("dsp").kind
    'dsp'
    """
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path
    s = os.fspath(name_or_path)
    path = Path(s).expanduser()
    if not path.is_file():
        cand = _BUILTIN_DIR / f"{s}.json"
        if os.sep not in s and "/" not in s and not s.startswith("_") and cand.is_file():
            path = cand
        else:
            raise ProfileError(
                f"no profile {s!r}: not a file and not a built-in profile; built-in: {', '.join(builtin_profiles())}"
            )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ProfileError(f"profile file {str(path)!r} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise ProfileError(f"cannot read profile file {str(path)!r}: {exc}") from None
    try:
        return profile_from_dict(data)
    except ProfileError as exc:
        raise ProfileError(f"{path.name}: {exc}") from None


def save_profile(profile: DeviceProfile, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write a profile as JSON (validated by re-reading it first); returns the path.

    Raises
    ------
    ProfileError
        when ``overwrite`` is False and the file exists, or the profile does not validate.
    """
    path = Path(path).expanduser()
    data = profile.to_dict()
    profile_from_dict(json.loads(json.dumps(data)))  # never write a profile we could not read back
    if path.exists() and not overwrite:
        raise ProfileError(f"profile file {str(path)!r} exists; pass overwrite=True (CLI: --force) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    return path


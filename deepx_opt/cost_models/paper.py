"""The DeepX paper's single-processor energies, and how a profile compares with them.

``PUBLISHED_MJ`` holds the published energy of one inference on a single processor (Lane et al., IPSN
2016; /work/shared/paper-setup.md). ``None`` marks a "—" cell: a plan the profile must refuse (memory
capacity or operator support). :func:`compare_with_paper` predicts every cell with
:func:`~deepx_opt.cost_models.single.single_processor_cost` (full rank, whole model on one processor) and
reports the residual; ``deepx profile check NAME`` prints it.

Example
-------
>>> from deepx_opt.cost_models import load_profile                                 # doctest: +SKIP
>>> for c in compare_with_paper(load_profile("tegrak1")): print(c.model, c.processor, c.residual_pct)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from deepx_opt.cost_models.single import ModelSummary, check_single_processor, single_processor_cost, summarize_model
from deepx_opt.errors import InfeasiblePlanError, ProfileError

__all__ = ["PAPER_MODELS", "PUBLISHED_MJ", "PaperCell", "paper_summaries", "write_paper_summaries",
           "compare_with_paper"]

#: The four models of the DeepX evaluation, as named in the zoo.
PAPER_MODELS = ("alexnet", "svhn", "speakerid", "audioscene")

#: Published energy (mJ) of one inference on a single processor; None = the paper's "—" (must be refused).
PUBLISHED_MJ: dict[str, dict[str, dict[str, float | None]]] = {
    "snapdragon800": {
        "cpu": {"alexnet": 933.5, "svhn": 230.9, "speakerid": 113.4, "audioscene": 110.3},
        "dsp": {"alexnet": None, "svhn": 142.1, "speakerid": 103.6, "audioscene": 99.3},
        "cloud": {"alexnet": 4978.4, "svhn": 1101.1, "speakerid": 124.2, "audioscene": 122.7},
    },
    "tegrak1": {
        "cpu": {"alexnet": 1681.3, "svhn": 479.6, "speakerid": 7.1, "audioscene": 6.7},
        "lpu": {"alexnet": None, "svhn": None, "speakerid": 109.1, "audioscene": 106.1},
        "gpu": {"alexnet": 234.1, "svhn": 167.3, "speakerid": 1.3, "audioscene": 1.2},
        "cloud": {"alexnet": 2820.0, "svhn": 1382.9, "speakerid": 26.9, "audioscene": 26.1},
    },
}


@dataclass(frozen=True)
class PaperCell:
    """One cell of a paper table: published vs predicted energy (mJ), or the refusal."""

    device: str
    processor: str
    model: str
    published_mj: float | None
    predicted_mj: float | None
    latency_ms: float | None
    refused: str | None  # the refusal message, when the profile refuses the plan

    @property
    def residual_pct(self) -> float | None:
        if self.published_mj is None or self.predicted_mj is None:
            return None
        return (self.predicted_mj - self.published_mj) / self.published_mj * 100.0

    @property
    def ok(self) -> bool:
        """A number cell is ok when predicted; a "—" cell is ok when refused."""
        if self.published_mj is None:
            return self.refused is not None
        return self.predicted_mj is not None


#: Summaries of the four zoo models, written by ``python -m deepx_opt.profiles.fit_paper`` (building AlexNet's
#: 61M synthetic weights takes ~15 s; the tests check the file against freshly built models).
SUMMARIES_FILE = Path(__file__).resolve().parent.parent / "profiles" / "_paper_models.json"


def paper_summaries(models: tuple[str, ...] = PAPER_MODELS, *, rebuild: bool = False) -> dict[str, ModelSummary]:
    """Summaries of the paper's zoo models: from :data:`SUMMARIES_FILE`, or built from the zoo (``rebuild``)."""
    if not rebuild and SUMMARIES_FILE.is_file():
        data = json.loads(SUMMARIES_FILE.read_text())
        if all(m in data["models"] for m in models):
            return {m: ModelSummary.from_dict(data["models"][m]) for m in models}
    from deepx_opt import zoo
    from deepx_opt.graphs import load_onnx

    return {m: summarize_model(load_onnx(zoo.build(m))) for m in models}


def write_paper_summaries(summaries: Mapping[str, ModelSummary], path: Path = SUMMARIES_FILE) -> Path:
    """Write summaries as :data:`SUMMARIES_FILE` reads them."""
    path.write_text(json.dumps({"note": "written by python -m deepx_opt.profiles.fit_paper from deepx_opt.zoo",
                                "models": {m: s.to_dict() for m, s in summaries.items()}}, indent=None) + "\n")
    return path


def compare_with_paper(profile: Any, summaries: Mapping[str, ModelSummary] | None = None, *,
                       device: str | None = None) -> list[PaperCell]:
    """Predict every cell of the paper's table for ``profile`` (matched by ``device`` or its name).

    Raises
    ------
    ProfileError
        when the profile is not one of the paper's devices.
    """
    dev = device or profile.meta.get("paper_device") or profile.name
    if dev not in PUBLISHED_MJ:
        raise ProfileError(f"profile {profile.name!r} is not one of the paper's devices; "
                           f"known: {', '.join(PUBLISHED_MJ)}")
    if summaries is None:
        summaries = paper_summaries()
    cells = []
    for proc, row in PUBLISHED_MJ[dev].items():
        for model, pub in row.items():
            s = summaries[model]
            try:
                check_single_processor(profile, proc, s)
            except InfeasiblePlanError as exc:
                cells.append(PaperCell(dev, proc, model, pub, None, None, str(exc)))
                continue
            c = single_processor_cost(profile, proc, s, check=False)
            cells.append(PaperCell(dev, proc, model, pub, c.energy_uj / 1000.0, c.latency_us / 1000.0, None))
    return cells

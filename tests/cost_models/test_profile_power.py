"""The optional ``power_model`` field of a profile's processor: round trip and every validation error."""

import copy
import json

import pytest

from deepx_opt.cost_models import load_profile, profile_from_dict, save_profile
from deepx_opt.cost_models.power import PowerModel
from deepx_opt.errors import ProfileError

MODEL = PowerModel(["time_us", "busy_us", "runs"], flops_per_us=5e6, bytes_per_us=1.5e6,
                   coef_=[129.0, 250.0, 30_000.0], fit_={"chosen": "utilisation+run", "samples": 16})


@pytest.fixture
def raw():
    d = load_profile("tegrak1").to_dict()
    d["processors"][2]["power_model"] = MODEL.to_dict()
    return d


def test_round_trip_and_absent_field(raw, tmp_path):
    p = profile_from_dict(copy.deepcopy(raw))
    q = load_profile(str(save_profile(p, tmp_path / "p.json")))
    assert q.processor("gpu").power_model == MODEL.to_dict()
    assert q.to_dict() == p.to_dict()
    m = PowerModel.from_dict(q.processor("gpu").power_model)
    assert m.family == "utilisation" and list(m.coef_) == [129.0, 250.0, 30_000.0]
    assert m.fit_["chosen"] == "utilisation+run"
    # profiles without it read and write as before: no key, None on the processor
    plain = load_profile("tegrak1")
    assert plain.processor("gpu").power_model is None
    assert "power_model" not in plain.to_dict()["processors"][2]
    assert "power_model" not in json.loads((tmp_path / "p.json").read_text())["processors"][0]


@pytest.mark.parametrize("mutate, patterns", [
    (lambda pm: pm.update(coef_=[129.0, -1.0, 0.0]), ["coef_", "-1.0", ">= 0"]),
    (lambda pm: pm.update(coef_=[129.0, float("nan"), 0.0]), ["coef_", "finite"]),
    (lambda pm: pm.update(coef_=[129.0, 250.0]), ["coef_", "expected 3 numbers"]),
    (lambda pm: pm.update(coef_=[129.0, "x", 1.0]), ["coef_", "'x'"]),
    (lambda pm: pm.update(features=["time_us", "watts", "runs"]), ["features", "watts", "accepted:"]),
    (lambda pm: pm.update(features=["flops", "busy_us", "runs"]), ["features", "must include time_us"]),
    (lambda pm: pm.update(features=[]), ["features", "non-empty list"]),
    (lambda pm: pm.update(family="quadratic"), ["family", "quadratic", "constant, linear, utilisation"]),
    (lambda pm: pm.pop("bytes_per_us"), ["bytes_per_us", "None", "busy_us needs"]),
    (lambda pm: pm.update(flops_per_us=0), ["flops_per_us", "> 0"]),
    (lambda pm: pm.update(fit=[1, 2]), ["fit", "list given"]),
])
def test_bad_power_model_names_the_field(raw, mutate, patterns):
    d = copy.deepcopy(raw)
    mutate(d["processors"][2]["power_model"])
    with pytest.raises(ProfileError) as ei:
        profile_from_dict(d)
    msg = str(ei.value)
    assert "processors[2].power_model" in msg, msg
    for pat in patterns:
        assert pat in msg, msg


def test_power_model_of_wrong_type(raw):
    d = copy.deepcopy(raw)
    d["processors"][2]["power_model"] = "120 W"
    with pytest.raises(ProfileError, match=r"processors\[2\].power_model: str given"):
        profile_from_dict(d)

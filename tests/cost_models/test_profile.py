"""Device profiles: round trip, built-ins, and every validation error naming the field and accepted values."""

import copy
import json

import pytest

from deepx_opt.cost_models import (
    PROCESSOR_KINDS,
    builtin_profiles,
    load_profile,
    profile_from_dict,
    save_profile,
)
from deepx_opt.errors import DeepxError, ProfileError


@pytest.fixture
def raw():
    return load_profile("tegrak1").to_dict()


def test_builtins_load_by_name():
    assert {"snapdragon800", "tegrak1"} <= set(builtin_profiles())
    sd = load_profile("snapdragon800")
    assert sd.processor_names == ["cpu", "dsp", "cloud"]
    tk = load_profile("tegrak1")
    assert tk.processor_names == ["cpu", "lpu", "gpu", "cloud"]
    assert tk.processor("cloud").kind == "remote"
    assert tk.link("cloud", "cpu").wireless  # symmetric link serves both directions
    assert all(p.power_source == "modelled" for p in tk.processors)


def test_round_trip(tmp_path):
    p = load_profile("snapdragon800")
    path = save_profile(p, tmp_path / "p.json")
    q = load_profile(str(path))
    assert q.to_dict() == p.to_dict()
    assert json.loads(path.read_text())["version"] == 1


def test_save_refuses_overwrite(tmp_path):
    p = load_profile("tegrak1")
    save_profile(p, tmp_path / "p.json")
    with pytest.raises(ProfileError, match="exists"):
        save_profile(p, tmp_path / "p.json", overwrite=False)


def test_unknown_name_lists_builtins():
    with pytest.raises(ProfileError, match="snapdragon800"):
        load_profile("pixel9")


def test_not_json(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text("{not json")
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(f)


def _expect(raw, mutate, *patterns):
    d = copy.deepcopy(raw)
    mutate(d)
    with pytest.raises(ProfileError) as ei:
        profile_from_dict(d)
    msg = str(ei.value)
    for pat in patterns:
        assert pat in msg, msg
    assert isinstance(ei.value, DeepxError)


def test_wrong_version(raw):
    _expect(raw, lambda d: d.update(version=2), "version", "2", "accepted: 1")


def test_missing_version(raw):
    _expect(raw, lambda d: d.pop("version"), "version", "missing")


def test_missing_processor_field(raw):
    _expect(raw, lambda d: d["processors"][1].pop("active_power_w"), "processors[1].active_power_w", "missing")


def test_unknown_processor_kind(raw):
    _expect(raw, lambda d: d["processors"][2].update(kind="tpu"), "processors[2].kind", "'tpu'",
            ", ".join(PROCESSOR_KINDS))


def test_negative_bandwidth(raw):
    _expect(raw, lambda d: d["links"][0].update(bandwidth_bytes_per_s=-5.0), "links[0].bandwidth_bytes_per_s",
            "negative")


def test_zero_bandwidth(raw):
    _expect(raw, lambda d: d["links"][0].update(bandwidth_bytes_per_s=0), "links[0].bandwidth_bytes_per_s", "> 0")


def test_negative_power(raw):
    _expect(raw, lambda d: d["processors"][0].update(idle_power_w=-1), "processors[0].idle_power_w", "negative")


def test_link_to_unknown_processor(raw):
    _expect(raw, lambda d: d["links"][0].update(dst="npu"), "links[0].dst", "'npu'", "cpu, lpu, gpu, cloud")


def test_duplicate_processor(raw):
    _expect(raw, lambda d: d["processors"][1].update(name="cpu"), "duplicate")


def test_remote_link_must_be_wireless(raw):
    def mutate(d):
        for lk in d["links"]:
            if lk["dst"] == "cloud":
                lk["wireless"] = False
    _expect(raw, mutate, "wireless")


def test_unknown_work_kind(raw):
    _expect(raw, lambda d: d["processors"][0]["latency_models"].update(attention={}), "attention", "gemm")


def test_bad_latency_coefficients(raw):
    _expect(raw, lambda d: d["processors"][0]["latency_models"]["gemm"].update(coef_=[1.0, -2.0, 0.0]),
            "latency_models.gemm", "coef_")
    _expect(raw, lambda d: d["processors"][0]["latency_models"]["gemm"].update(family="cubic"),
            "latency_models.gemm", "linear, roofline")


def test_unknown_unsupported_kind(raw):
    _expect(raw, lambda d: d["processors"][1].update(unsupported_kinds=["convolution"]), "unsupported_kinds",
            "'convolution'")


def test_bad_host(raw):
    _expect(raw, lambda d: d.update(host="cloud"), "host", "remote")


def test_routes_and_transfers():
    p = load_profile("tegrak1")
    assert p.route("gpu", "gpu") == []
    assert p.transfer_time_us("gpu", "gpu", 10**6) == 0.0
    direct = p.link("cpu", "gpu")
    assert p.transfer_time_us("cpu", "gpu", 10**6) == pytest.approx(direct.latency_us + 1e12 / direct.bandwidth_bytes_per_s)
    # no lpu-gpu link: routed through the host cpu
    assert len(p.route("lpu", "gpu")) == 2
    assert p.transfer_energy_uj("lpu", "gpu", 1000) == pytest.approx(
        p.link("cpu", "lpu").transfer_energy_uj(1000) + direct.transfer_energy_uj(1000))
    with pytest.raises(ProfileError, match="no processor 'npu'"):
        p.route("cpu", "npu")


def test_variant_keys_accepted_and_checked(raw):
    d = copy.deepcopy(raw)
    lm = d["processors"][0]["latency_models"]
    lm["gemm/gemv"] = dict(next(iter(lm.values())))
    d["processors"][0]["block_overhead_us"] = 3.5
    p = profile_from_dict(d)
    assert "gemm/gemv" in p.processors[0].latency_models and p.processors[0].block_overhead_us == 3.5
    assert profile_from_dict(p.to_dict()).processors[0].block_overhead_us == 3.5
    _expect(raw, lambda d: d["processors"][0]["latency_models"].update({"attention/x": {}}), "attention/x", "VARIANT")
    _expect(raw, lambda d: d["processors"][0]["latency_models"].update({"gemm/": {}}), "gemm/")
    _expect(raw, lambda d: d["processors"][0].update(block_overhead_us=-1), "block_overhead_us", "negative")

"""The docstring examples of deepx_opt.solvers run and hold."""

import doctest
import importlib

import pytest

MODULES = ["problem", "plan", "synthetic", "registry", "diagnose", "cpsat", "__init__"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module("deepx_opt.solvers" + ("" if name == "__init__" else f".{name}"))
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0

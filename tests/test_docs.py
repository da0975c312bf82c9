"""Every public name has a docstring, and every docstring example runs (doctest)."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import pkgutil

import pytest

import importers
import jrnn


def _public_objects():
    for package in (jrnn, importers):
        for name in package.__all__:
            yield f"{package.__name__}.{name}", getattr(package, name)


@pytest.mark.parametrize("name,obj", list(_public_objects()), ids=[n for n, _ in _public_objects()])
def test_public_names_have_docstrings(name, obj):
    assert inspect.getdoc(obj), f"{name} has no docstring"
    if inspect.isclass(obj):
        for attr, member in vars(obj).items():
            if attr.startswith("_") or not callable(member):
                continue
            assert inspect.getdoc(member), f"{name}.{attr} has no docstring"


def _modules():
    for package in (jrnn, importers):
        yield package.__name__
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            origin = importlib.util.find_spec(info.name).origin or ""
            if origin.endswith((".so", ".pyd")):  # the native kernel: a ctypes library
                continue
            yield info.name


@pytest.mark.parametrize("module_name", list(_modules()))
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, module_name):
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) failed in {module_name}"

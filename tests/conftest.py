"""Shared fixtures. The ComfyUI stand-in (tests/comfy_stub) is on sys.path only while a test that asks for
`comfy_pack` runs; every other test file sees a Python without ComfyUI."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
STUB = TESTS / "comfy_stub"
STUB_MODULES = ("comfy", "comfy_api", "folder_paths", "core_nodes")


def comfy_module_name(pack_dir: Path) -> str:
    """The sys.modules key ComfyUI gives a custom-node folder: its path with every '.' replaced by '_x_'."""
    return str(pack_dir).replace(".", "_x_")


def import_pack(pack_dir: Path = REPO) -> ModuleType:
    """Execute `<pack_dir>/__init__.py` as ComfyUI's `load_custom_node` does."""
    name = comfy_module_name(pack_dir)
    spec = importlib.util.spec_from_file_location(name, pack_dir / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _drop_modules(prefixes: tuple[str, ...]) -> None:
    for name in [n for n in sys.modules if n in prefixes or n.startswith(tuple(p + "." for p in prefixes))]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def comfy_pack():
    """The pack loaded into the ComfyUI stand-in: `nodes` by id, plus the stub's `folder_paths`,
    `model_management` and `utils` modules. ComfyUI and the pack are unloaded again afterwards."""
    saved_path = list(sys.path)
    sys.path.insert(0, str(STUB))
    _drop_modules(STUB_MODULES)
    import folder_paths

    folder_paths.set_base(TESTS / "_unused_comfyui")
    pack = import_pack()
    extension = asyncio.run(pack.comfy_entrypoint())
    node_list = asyncio.run(extension.get_node_list())
    for node in node_list:
        node.RELATIVE_PYTHON_MODULE = f"custom_nodes.{REPO.name}"
    import comfy.model_management
    import comfy.utils

    yield SimpleNamespace(pack=pack, extension=extension, node_list=node_list,
                          nodes={node.GET_SCHEMA().node_id: node for node in node_list},
                          folder_paths=folder_paths, model_management=comfy.model_management, utils=comfy.utils)
    _drop_modules(STUB_MODULES + (pack.__name__,))
    sys.path[:] = saved_path

"""Regenerate every API-format workflow (workflows/api/NAME.json) from its editor twin (workflows/NAME.json).

Run after editing an editor workflow or a node's schema: `python scripts/api_twins.py`. It loads the pack into the
test suite's ComfyUI stand-in and converts with the client's own editor->API conversion, so the files it writes are
exactly what the tests (and a real ComfyUI) expect.
"""

import asyncio
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "comfy_stub")]

import folder_paths  # noqa: E402
from conftest import import_pack  # noqa: E402
from workflow_harness import CORE_OBJECT_INFO, object_info  # noqa: E402

from videosdgx.client.convert import to_api  # noqa: E402


def main() -> None:
    folder_paths.set_base(REPO / "tests" / "_unused_comfyui")
    extension = asyncio.run(import_pack().comfy_entrypoint())
    nodes = asyncio.run(extension.get_node_list())
    info = {**object_info({node.GET_SCHEMA().node_id: node for node in nodes}), **CORE_OBJECT_INFO}
    for path in sorted((REPO / "workflows").glob("*.json")):
        target = REPO / "workflows" / "api" / path.name
        text = json.dumps(to_api(json.loads(path.read_text()), info), indent=2, ensure_ascii=False) + "\n"
        if not target.is_file() or target.read_text() != text:
            target.write_text(text)
            print(f"wrote {target.relative_to(REPO)}")


if __name__ == "__main__":
    main()

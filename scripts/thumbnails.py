"""Draw the template thumbnails ComfyUI shows for the shipped workflows (workflows/NAME.jpg).

The editor's template browser shows `NAME.jpg` beside each `NAME.json` of a pack's workflow folder and otherwise
only the file name, so each card carries what the workflow does and which files it needs, taken from the
workflow's own Note (its first line, then the "Model files" list). Run after adding or changing a workflow:
`python scripts/thumbnails.py` (needs Pillow, which the test extra brings).
"""

import json
import sys
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from videosdgx.families import shipped_workflows  # noqa: E402

SIZE = (384, 384)
FAMILY_COLOURS = {"wan": (46, 110, 170), "ltx2": (170, 70, 50), "magi1": (90, 130, 60), "skyreels_v3": (120, 80, 150)}


def note_text(workflow: dict) -> str:
    [note] = [node for node in workflow["nodes"] if node["type"] == "Note"]
    return note["widgets_values"][0]


def card_lines(note: str) -> tuple[str, str, list[str]]:
    """(title, what it does, the model files) from a workflow Note."""
    head, _, rest = note.partition("\n")
    title, _, task = head.partition(" — ")
    files = [line.strip().rsplit("/", 1)[-1] for line in rest.splitlines() if line.strip().startswith("models/")]
    return title, task.removesuffix(" with the VideosDGX nodes."), files


def draw(name: str, family: str, note: str) -> Image.Image:
    title, task, files = card_lines(note)
    image = Image.new("RGB", SIZE, (24, 26, 30))
    pen = ImageDraw.Draw(image)
    pen.rectangle((0, 0, SIZE[0], 92), fill=FAMILY_COLOURS.get(family, (80, 80, 80)))
    big, small = ImageFont.load_default(30), ImageFont.load_default(15)
    pen.text((16, 14), title, font=big, fill="white")
    pen.text((16, 58), task, font=ImageFont.load_default(20), fill=(235, 235, 235))
    y = 110
    pen.text((16, y), "needs:", font=small, fill=(160, 170, 180))
    lines = [line for file in files for line in textwrap.wrap(file, 44)]
    step, font = 20, small
    if len(lines) * step > SIZE[1] - 60 - y:  # a long list: smaller type, unwrapped names, then "+ n more"
        step, font = 13, ImageFont.load_default(11)
        lines = files
    y += 20 - step  # the first line below "needs:" whatever the type
    room = (SIZE[1] - 60 - y) // step
    if len(lines) > room:
        lines = [*lines[:room - 1], f"+ {len(lines) - room + 1} more"]
    for line in lines:
        y += step
        pen.text((24, y), line, font=font, fill=(220, 225, 230))
    pen.text((16, SIZE[1] - 50), f"python install.py --models", font=small, fill=(160, 170, 180))
    bundle = name.removesuffix("-t2v").removesuffix("-i2v").removesuffix("-flf")
    pen.text((16, SIZE[1] - 30), bundle, font=small, fill=(160, 170, 180))
    return image


def main() -> None:
    for name, row in sorted(shipped_workflows().items()):
        workflow = json.loads((REPO / "workflows" / f"{name}.json").read_text())
        path = REPO / "workflows" / f"{name}.jpg"
        draw(name, row.id, note_text(workflow)).save(path, quality=85, optimize=True)
        print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()

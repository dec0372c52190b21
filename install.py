"""VideosDGX installer.

With no arguments (what ComfyUI-Manager runs after `pip install -r requirements.txt`, with ComfyUI's Python):
install requirements.txt into this interpreter and say what to do next; no model is downloaded. It never installs
torch, and exits 0 with a message when pip cannot reach the package index. Everything up to that point uses only
the standard library.

With options it is the model installer (`--list`, `--models BUNDLE...`, `--dry-run`, `--verify`, `--comfyui PATH`);
see `python install.py --help` and videosdgx/install/.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REQUIREMENTS = ROOT / "requirements.txt"
FORBIDDEN = ("torch", "torchvision", "torchaudio")  # would replace ComfyUI's CUDA build
OFFLINE_SIGNS = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "NewConnectionError",
    "ConnectTimeoutError",
    "Could not fetch URL",
    "No matching distribution found",
    "ProxyError",
)

log = logging.getLogger("videosdgx.install")


def forbidden_requirements(text: str) -> list[str]:
    """Requirement lines that name torch, torchvision or torchaudio."""
    names = [re.split(r"[\s<>=!~;\[@]", line.strip(), maxsplit=1)[0].lower() for line in text.splitlines()]
    return [name for name in names if name.replace("_", "-") in FORBIDDEN]


def install_requirements(requirements: Path) -> bool:
    """pip-install requirements.txt into this interpreter. False only on a real failure (not when offline)."""
    if not requirements.is_file():
        log.warning("No %s: nothing to pip-install.", requirements)
        return True
    forbidden = forbidden_requirements(requirements.read_text(encoding="utf-8"))
    if forbidden:
        log.error("%s lists %s: refusing to install it, because it would replace the CUDA build ComfyUI runs on. "
                  "Remove those lines.", requirements, ", ".join(forbidden))
        return False
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-r", str(requirements)]
    log.info("Installing the Python requirements: %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        return True
    output = result.stdout + result.stderr
    if any(sign in output for sign in OFFLINE_SIGNS):
        log.warning("pip could not reach the package index (offline?). Nothing was changed; run "
                    "`python install.py` again when the network is back.")
        return True
    log.error("pip failed (exit code %d):\n%s", result.returncode, output[-4000:])
    return False


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _main(argv)
    except KeyboardInterrupt:
        log.error("Interrupted by the user; run `python install.py` again to finish.")
        return 130


def _main(argv: list[str]) -> int:
    if not argv and not install_requirements(REQUIREMENTS):
        return 1
    try:
        from videosdgx.install.cli import main as cli_main
    except ImportError as exc:
        log.warning("The requirements are not importable yet (%s). Run `python install.py --list` once they are "
                    "installed to see the model bundles.", exc)
        return 0 if not argv else 1
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The family registry: one row per model family, the only place that names them all.

Rows are data. Hooks are "module:attribute" strings imported on first use, so importing this module (and the
CLI's `--help`) loads no model code. A family is added by writing its package and one row here:

- `detector`: module whose import registers the family's checkpoint detectors with `runtime.identify`;
- `variants`: a dict `{name: Variant}` (`videosdgx.job.Variant` or a subclass);
- `pipeline`: `load(variant, files, load, low_memory) -> pipeline`, where `files` is a `BundleFiles`
  (paths by manifest role), `load` a `runtime.model_files.LoadRequest`, and the pipeline has
  `generate(request: VideoRequest, progress) -> VideoResult`;
- `demo`: `write(bundle, models_dir, seed=0)` writes tiny random files for every entry of a manifest bundle, in
  the exact published layouts, where the real lookup finds them;
- `memory`: `phases(variant, files, weights, size, load, low_memory) -> [videosdgx.plan.Phase]`, the family's
  activation formula per phase (`videosdgx plan`, and the check at the start of a run);
- `workflows`: the shipped workflow names (`workflows/NAME.json` and its API twin `workflows/api/NAME.json`).

Manifest entries and bundles use the family ids of this table; bundles name their variant.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from videosdgx.runtime.errors import ConfigurationError


@dataclass(frozen=True)
class Family:
    id: str
    title: str
    detector: str | None = None
    variants: str | None = None
    pipeline: str | None = None
    demo: str | None = None
    memory: str | None = None
    workflows: tuple[str, ...] = ()
    status: str = "available"  # or "not_released": listed so every tool speaks of it, nothing to run

    def hook(self, name: str) -> Any:
        """Import and return one of this family's hooks (`variants`, `pipeline`, `demo`)."""
        target = getattr(self, name)
        if target is None:
            raise ConfigurationError(f"{self.title} has no {name} in this release.")
        module, attribute = target.split(":")
        return getattr(importlib.import_module(module), attribute)

    def variant_table(self) -> dict:
        return self.hook("variants") if self.variants else {}


FAMILIES: tuple[Family, ...] = (
    Family(
        id="wan", title="Wan",
        detector="videosdgx.wan.detect",
        variants="videosdgx.wan.variants:WAN_VARIANTS",
        pipeline="videosdgx.wan.pipeline:load_wan_pipeline",
        demo="videosdgx.testing.wan:write_wan_bundle",
        memory="videosdgx.wan.memory:wan_memory_phases",
        workflows=("wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b-480p", "wan2.2-t2v-a14b", "wan2.2-i2v-a14b",
                   "wan2.2-ti2v-5b-t2v", "wan2.2-ti2v-5b-i2v", "wan2.2-t2v-a14b-lightning",
                   "wan2.2-i2v-a14b-lightning"),
    ),
    Family(
        id="ltx2", title="LTX-2",
        detector="videosdgx.ltx2.detect",
        variants="videosdgx.ltx2.variants:LTX2_VARIANTS",
        pipeline="videosdgx.ltx2.pipeline:load_ltx2_pipeline",
        demo="videosdgx.testing.ltx2:write_ltx2_bundle",
        memory="videosdgx.ltx2.memory:ltx2_memory_phases",
        workflows=("ltx-2-19b-distilled", "ltx-2-19b-distilled-i2v", "ltx-2-19b-dev", "ltx-2.3-22b-distilled",
                   "ltx-2.3-22b-distilled-i2v", "ltx-2.5-22b-distilled", "ltx-2.5-22b-distilled-i2v",
                   "ltx-2.5-22b-distilled-flf"),
    ),
    Family(
        id="magi1", title="MAGI-1",
        detector="videosdgx.magi1.detect",
        variants="videosdgx.magi1.variants:MAGI1_VARIANTS",
        pipeline="videosdgx.magi1.pipeline:load_magi1_pipeline",
        demo="videosdgx.testing.magi1:write_magi1_bundle",
        memory="videosdgx.magi1.memory:magi1_memory_phases",
        workflows=("magi-1-4.5b-distill", "magi-1-4.5b-distill-i2v", "magi-1-4.5b-distill-v2v",
                   "magi-1-24b-distill-fp8"),
    ),
    Family(
        id="skyreels_v3", title="SkyReels V3",  # its DiTs are identified by videosdgx.wan.detect
        detector="videosdgx.skyreels_v3.detect",
        variants="videosdgx.skyreels_v3.variants:SKYREELS_V3_VARIANTS",
        pipeline="videosdgx.skyreels_v3.pipeline:load_skyreels_pipeline",
        demo="videosdgx.testing.skyreels_v3:write_skyreels_bundle",
        memory="videosdgx.skyreels_v3.memory:skyreels_memory_phases",
        workflows=("skyreels-v3-r2v-14b", "skyreels-v3-v2v-14b-extend", "skyreels-v3-v2v-14b-shot",
                   "skyreels-v3-a2v-19b"),
    ),
    Family(id="waver", title="Waver", status="not_released"),
)
# Components several families share; identification reports them under these names.
SHARED_COMPONENTS = {"text": ("text encoder", "videosdgx.text.detect")}


def family(family_id: str) -> Family:
    for row in FAMILIES:
        if row.id == family_id:
            return row
    raise ConfigurationError(f"Unknown model family '{family_id}'. Known: {', '.join(f.id for f in FAMILIES)}.")


def family_ids() -> tuple[str, ...]:
    return tuple(row.id for row in FAMILIES)


def family_title(family_id: str) -> str:
    """A family's or a shared component group's display name (the id itself if unknown)."""
    if family_id in SHARED_COMPONENTS:
        return SHARED_COMPONENTS[family_id][0]
    return next((row.title for row in FAMILIES if row.id == family_id), family_id)


def detector_modules() -> tuple[str, ...]:
    """Every module that registers checkpoint detectors, families first."""
    rows = tuple(row.detector for row in FAMILIES if row.detector)
    return rows + tuple(module for _, module in SHARED_COMPONENTS.values())


def all_variants() -> dict[str, Any]:
    """Every variant of every family by name."""
    found: dict[str, Any] = {}
    for row in FAMILIES:
        found.update(row.variant_table())
    return found


def shipped_workflows() -> dict[str, Family]:
    """Every shipped workflow name with the family it belongs to."""
    return {name: row for row in FAMILIES for name in row.workflows}

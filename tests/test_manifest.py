"""model_manifest.yaml and its schema check (videosdgx.manifest)."""

from __future__ import annotations

import copy

import pytest

from videosdgx.families import family, family_ids
from videosdgx.manifest import MODEL_FOLDERS, load_manifest, parse_manifest, validate_manifest
from videosdgx.runtime.errors import ConfigurationError

REQUIRED_BUNDLES = [
    "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b-480p", "wan2.1-flf2v-14b-720p",
    "wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b",
]  # fmt: skip


@pytest.fixture(scope="module")
def manifest():
    return load_manifest()


def test_real_manifest_is_valid_and_complete(manifest):
    assert len(manifest.entries) >= 70
    for name in REQUIRED_BUNDLES:
        entries = manifest.bundle_entries(name)
        assert manifest.bundle(name).status == "available"
        assert {e.folder for e in entries} >= {"diffusion_models", "text_encoders", "vae"}, name
        assert all(e.repo.startswith("Comfy-Org/") for e in entries), name
    families = {b.family for b in manifest.bundles.values()} | {e.family for e in manifest.entries.values()}
    assert families == set(family_ids())
    for bundle in manifest.bundles.values():
        assert all(entry_id in manifest.entries for entry_id in bundle.entries)
        if not family(bundle.family).pipeline and bundle.status != "not_released":
            assert bundle.status == "planned", bundle.name


def test_every_runnable_bundle_names_a_variant_and_has_its_roles(manifest):
    for bundle in manifest.bundles.values():
        if bundle.status != "available":
            continue
        variant = family(bundle.family).variant_table()[bundle.variant]
        roles = {entry.role for entry in manifest.bundle_entries(bundle.name)}
        if bundle.family == "ltx2":  # one checkpoint holds the DiT, VAEs, vocoder and text projection (2.5: split)
            parts = {"dit", "vae", "audio_vae"} if variant.version == "2.5" else {"checkpoint"}
            needed = parts | {"text_encoder"} | ({"upsampler"} if variant.two_stage else set())
            needed |= {"lora"} if variant.two_stage and not variant.distilled else set()
            assert roles >= needed, bundle.name
            continue
        dit = {"dit_high", "dit_low"} if getattr(variant, "experts", 1) == 2 else {"dit"}
        assert roles >= dit | {"text_encoder", "vae"}, bundle.name
        avatar = variant.task == "a2v"  # SkyReels V3's talking avatar: CLIP of the portrait, wav2vec2 of the speech
        assert ("clip_vision" in roles) == getattr(variant, "clip_vision", avatar), bundle.name
        assert ("audio_encoder" in roles) == avatar, bundle.name


def test_real_manifest_sizes_and_hashes(manifest):
    vae = manifest.entry("wan2.1-vae")
    assert (vae.size, vae.size_verified, vae.sha256, vae.sha256_hint) == (253815318, True, None, "2fc39d31…976b")
    assert manifest.entry("wan2.1-t2v-1.3b-fp16").size == 2838303560
    dit14 = manifest.entry("wan2.1-t2v-14b-fp16")
    assert (dit14.size, dit14.size_verified) == (28600000000, False)
    assert manifest.entry("ltx-2.5-video-vae-bf16").size is None
    assert all(e.sha256 is None for e in manifest.entries.values())  # the specs give no full hash
    assert all(e.size is not None for e in manifest.entries.values() if e.size_verified)
    assert manifest.bundle_size("wan2.1-t2v-1.3b") == (2838303560 + 6735906897 + 253815318, True)
    assert manifest.bundle_size("wan2.1-t2v-14b") == (28600000000 + 6735906897 + 253815318, False)


def test_gated_gemma_has_non_gated_alternatives(manifest):
    google = [e for e in manifest.entries.values() if e.repo == "google/gemma-3-12b-it"]
    assert len(google) == 5 and all(e.gated for e in google)
    for entry in google:
        alternatives = [manifest.entry(a) for a in entry.alternatives]
        assert "gemma-3-12b-it-fp8-scaled" in entry.alternatives
        assert alternatives and not any(a.gated for a in alternatives)
    assert manifest.entry("gemma-3-12b-it-fp8-scaled").repo == "Comfy-Org/ltx-2"
    assert "gemma-3-12b-it-fp8-scaled" in manifest.bundle("ltx-2-19b-dev").entries


def test_waver_is_not_released(manifest):
    waver = manifest.bundle("waver-1.0")
    assert (waver.status, waver.entries) == ("not_released", ())
    assert "have not been published" in waver.message and "https://arxiv.org/abs/2508.15761" in waver.links


def test_lookups_and_install_hint(manifest):
    assert [e.id for e in manifest.find_by_filename("wan_2.1_vae.safetensors")] == ["wan2.1-vae"]
    assert [e.id for e in manifest.find_by_filename("/x/models/text_encoders/umt5-xxl/spiece.model")] == [
        "umt5-xxl-tokenizer-spiece"]  # fmt: skip
    assert manifest.find_by_filename("spiece.model") == []  # a bare name does not match a file in a subfolder
    hint = manifest.install_hint("wan2.1_t2v_1.3B_fp16.safetensors")
    assert hint == ("models/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors comes with bundle wan2.1-t2v-1.3b: "
                    "`python install.py --models wan2.1-t2v-1.3b`.")  # fmt: skip
    assert "or one of" in manifest.install_hint("wan_2.1_vae.safetensors")
    assert manifest.install_hint("nothing.safetensors") == ""
    with pytest.raises(ConfigurationError, match="No model bundle 'wan9'.*python install.py --list"):
        manifest.bundle("wan9")
    with pytest.raises(ConfigurationError, match="No model entry 'nope'"):
        manifest.entry("nope")


def _valid() -> dict:
    entry = {
        "id": "a", "family": "wan", "role": "vae", "repo": "o/r", "path": "a.safetensors", "revision": "main", "size": 10,
        "size_verified": True, "folder": "vae", "filename": "a.safetensors", "license": "mit", "gated": False,
    }  # fmt: skip
    return {
        "version": 1,
        "entries": [entry, {**entry, "id": "b", "filename": "b.safetensors"}],
        "bundles": [{"name": "x", "family": "wan", "description": "d", "status": "available", "entries": ["a", "b"]}],
    }


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda d: d["entries"][0].pop("size"), "entry #1 (a): missing field 'size'"),
        (lambda d: d["entries"][0].update(size="10 GB"), "field 'size' must be int or null, got '10 GB'"),
        (lambda d: d["entries"][0].update(gated=1), "field 'gated' must be bool, got 1"),
        (lambda d: d["entries"][0].update(size=True), "field 'size' must be int or null, got True"),
        (lambda d: d["entries"][0].update(folder="unet"), "folder 'unet' is not one of checkpoints"),
        (lambda d: d["entries"][1].update(id="a", filename="c.safetensors"), "entry #2 (a): duplicate id 'a'"),
        (lambda d: d["entries"][1].update(filename="a.safetensors"), "destination vae/a.safetensors is already used"),
        (lambda d: d["entries"][0].update(sha256="be531024…4dc5"), "sha256 must be 64 lower-case hex digits"),
        (lambda d: d["entries"][0].update(filename="../a.safetensors"), "must be a relative path inside the folder"),
        (lambda d: d["entries"][0].update(size=None), "size_verified is true but size is null"),
        (lambda d: d["entries"][0].update(repo="nope"), "repo 'nope' is not an 'owner/name'"),
        (lambda d: d["entries"][0].update(alternatives=["zzz"]), "alternative 'zzz' is not an entry id"),
        (lambda d: d["entries"][0].update(extra=1), "unknown field 'extra'"),
        (lambda d: d["bundles"][0]["entries"].append("c"), "bundle #1 (x): entry 'c' does not exist"),
        (lambda d: d["bundles"][0].update(status="soon"), "status 'soon' is not one of available, planned"),
        (lambda d: d["bundles"].append(dict(d["bundles"][0])), "duplicate bundle name 'x'"),
        (lambda d: d["bundles"][0].update(status="not_released"), "a not_released bundle has no entries"),
        (lambda d: d.update(version=2), "unsupported manifest version 2"),
        (lambda d: d["entries"][0].update(family="wan2.1"), "family 'wan2.1' is not one of wan, ltx2"),
        (lambda d: d["bundles"][0].update(family="tiny"), "bundle #1 (x): family 'tiny' is not one of"),
        (lambda d: d["entries"][0].update(role="tokeniser"), "role 'tokeniser' is not one of dit"),
        (lambda d: d["entries"][0].pop("role"), "entry #1 (a): missing field 'role'"),
        (lambda d: d["entries"][0].update(weights=["*.safetensors"]), "a folder entry's sizes and hashes come from"),
        (lambda d: d["entries"][0].update(weights=["x/*.bin"], size_verified=False), "patterns inside the folder"),
        (lambda d: d["entries"][0].update(weights=[], size_verified=False), "weights must name at least one"),
        (lambda d: d["entries"][0].update(files=["config.json"]), "files belong to a folder entry, which needs"),
        (lambda d: d["entries"][0].update(weights=["*.bin"], path="a/", size_verified=False), "without leading or"),
        (lambda d: d["entries"][0].update(download_url="https://x.org/dev/a"), "pinned at the entry's revision"),
        (lambda d: d["entries"][0].update(download_url="ftp://x.org/main/a"), "must be an http(s) URL"),
        (lambda d: d["entries"][0].update(download_url="https://x/main/a", weights=["*"], size_verified=False),
         "a download_url entry is one file"),
    ],
)
def test_schema_problems_are_reported(mutate, problem):
    data = _valid()
    assert validate_manifest(copy.deepcopy(data)) == []
    mutate(data)
    problems = validate_manifest(data)
    assert any(problem in p for p in problems), problems
    with pytest.raises(ConfigurationError, match="is invalid"):
        parse_manifest(data)


def test_schema_lists_every_problem_at_once():
    data = _valid()
    data["entries"][0]["folder"] = "models"
    data["bundles"][0]["entries"].append("ghost")
    assert len(validate_manifest(data)) == 2
    assert validate_manifest({"entries": []}) == [
        "the manifest must be a mapping with exactly the keys 'version', 'entries' and 'bundles'"]  # fmt: skip
    assert "vae" in MODEL_FOLDERS and "latent_upscale_models" in MODEL_FOLDERS


def test_load_manifest_errors(tmp_path):
    with pytest.raises(ConfigurationError, match="Model manifest not found"):
        load_manifest(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: [1\n")
    with pytest.raises(ConfigurationError, match="is not valid YAML"):
        load_manifest(broken)

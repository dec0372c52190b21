"""SkyReels V3 nodes: the model loader (R2V / V2V / A2V), reference-to-video and video-extension samplers, the
talking avatar and its wav2vec2 loader. Text encoder, VAE, CLIP vision, text encoding and decoding are the Wan
nodes' (same UMT5, same Wan 2.1 VAE, same CLIP ViT-H)."""

from __future__ import annotations

import torch

from videosdgx.plan import Size
from videosdgx.request import WEIGHT_FORMATS
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.memory import check_memory
from videosdgx.runtime.quantized_linear import compute_dtype
from videosdgx.sampling import SOLVERS
from videosdgx.skyreels_v3.a2v import AvatarSettings, AvatarText, animate_portrait
from videosdgx.skyreels_v3.buckets import AVATAR_BUCKETS, RESOLUTIONS, avatar_bucket_size, bucket_size
from videosdgx.skyreels_v3.loaders import load_avatar_dit, load_skyreels_dit, load_wav2vec2
from videosdgx.skyreels_v3.memory import task_sampling_activations
from videosdgx.skyreels_v3.variants import AVATAR_MAX_FRAMES, skyreels_variant
from videosdgx.skyreels_v3.r2v import r2v_sigmas, sample_r2v
from videosdgx.skyreels_v3.references import check_references, encode_references, size_from_reference
from videosdgx.skyreels_v3.v2v import (check_duration, condition_frames, extend_single_shot, extension_sigmas,
                                      resize_nearest, switch_shot)
from videosdgx.wan.conditioning import valid_size
from videosdgx.wan.pipeline import decode_frames

from ._comfy import check_interrupt, io, model_names, model_path, progress, torch_device
from ._loaders import WEIGHT_DTYPES, check_choice, check_files, first_problem, load_request
from ._model_manager import manage, use
from .wan_types import (WanClipVisionType, WanConditioning, WanConditioningType, WanExperts, WanModelType,
                        WanVAEType)

CATEGORY = "VideosDGX/SkyReels V3"
MAX_SEED = 0xFFFFFFFFFFFFFFFF
TASKS = {"r2v": "reference to video (R2V-14B)", "v2v": "video extension (V2V-14B transformer or shot_transformer)",
         "a2v": "talking avatar (A2V-19B)"}
AudioEncoderType = io.Custom("VDGX_SKYREELS_AUDIO_ENCODER")


def _step_callback(steps: int):
    bar = progress(steps)

    def on_step(step: int, total: int, _x: torch.Tensor) -> None:
        check_interrupt()
        bar.update_absolute(step + 1, total)

    return on_step


def _single_model(model: WanExperts):
    if len(model.models) != 1:
        raise ConfigurationError("SkyReels V3 takes one diffusion model; load it with the SkyReels V3 Model Loader.")
    return model.models[0]


def _use_with_room(task: str, size: Size, model: WanExperts, *others) -> None:
    """Reload the node's models and free room for the DiT's sampling peak, then check it fits (as Wan's sampler)."""
    dit = model.models[0]
    activations = task_sampling_activations(task, dit.cfg, size, compute_dtype(dit.head.head).itemsize)
    use(model, *others, memory_required=activations)
    check_memory(activations, torch_device(), f"SkyReels V3 {task} sampling at {size}")


class SkyReelsModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXSkyReelsModelLoader", display_name="SkyReels V3 Model Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads a SkyReels V3 R2V-14B (diffusers keys), V2V-14B or A2V-19B (original Wan keys) model.",
            inputs=[
                io.Combo.Input("model_name", options=model_names("diffusion_models")),
                io.Combo.Input("task", options=list(TASKS), default="r2v", tooltip="; ".join(
                    f"{k}: {v}" for k, v in TASKS.items())),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default"),
                io.Combo.Input("weight_format", options=list(WEIGHT_FORMATS), default="default"),
            ],
            outputs=[WanModelType.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, model_name: str, task: str = "r2v", weight_dtype: str = "default",
                        weight_format: str = "default") -> bool | str:
        return first_problem(check_choice("task", task, TASKS),
                             check_choice("weight_dtype", weight_dtype, WEIGHT_DTYPES),
                             check_choice("weight_format", weight_format, WEIGHT_FORMATS),
                             check_files(model=("diffusion_models", model_name)))

    @classmethod
    def execute(cls, model_name: str, task: str, weight_dtype: str, weight_format: str) -> io.NodeOutput:
        path = model_path("diffusion_models", model_name)
        request = load_request(weight_dtype, weight_format)
        model = (load_avatar_dit(path, request) if task == "a2v" else load_skyreels_dit(task, path, request)).module
        return io.NodeOutput(manage(WanExperts((model,), None, (model_name,)), "SkyReels V3 diffusion model"))


class SkyReelsReferenceToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXSkyReelsReferenceToVideo", display_name="SkyReels V3 Reference to Video (VideosDGX)",
            category=CATEGORY,
            description="Samples a video latent from 1-4 reference images and a prompt (SkyReels V3 R2V-14B).",
            inputs=[
                WanModelType.Input("model"), WanConditioningType.Input("conditioning"), WanVAEType.Input("vae"),
                io.Image.Input("reference_1"),
                io.Image.Input("reference_2", optional=True), io.Image.Input("reference_3", optional=True),
                io.Image.Input("reference_4", optional=True),
                io.Combo.Input("resolution", options=list(RESOLUTIONS), default="720P",
                               tooltip="Size bucket closest to the first reference's aspect ratio."),
                io.Int.Input("width", default=0, min=0, max=4096, step=16, tooltip="0: from the bucket."),
                io.Int.Input("height", default=0, min=0, max=4096, step=16, tooltip="0: from the bucket."),
                io.Int.Input("length", default=121, min=1, max=1001, step=4, tooltip="Frames (4n+1), 24 fps."),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True),
                io.Int.Input("steps", default=8, min=1, max=200),
                io.Float.Input("cfg", default=1.0, min=0.0, max=30.0, step=0.1, round=0.01),
                io.Float.Input("cfg_image", default=1.0, min=0.0, max=30.0, step=0.1, round=0.01,
                               tooltip="Reference guidance, used when cfg > 1."),
                io.Float.Input("shift", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01),
                io.Combo.Input("sampler", options=list(SOLVERS), default="unipc"),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, resolution: str = "720P", sampler: str = "unipc") -> bool | str:
        return first_problem(check_choice("resolution", resolution, RESOLUTIONS),
                             check_choice("sampler", sampler, SOLVERS))

    @classmethod
    def execute(cls, model: WanExperts, conditioning: WanConditioning, vae, reference_1: torch.Tensor,
                resolution: str, width: int, height: int, length: int, seed: int, steps: int, cfg: float,
                cfg_image: float, shift: float, sampler: str, reference_2: torch.Tensor | None = None,
                reference_3: torch.Tensor | None = None, reference_4: torch.Tensor | None = None) -> io.NodeOutput:
        references = tuple(r[:1] for r in (reference_1, reference_2, reference_3, reference_4) if r is not None)
        check_references(references)
        dit = _single_model(model)
        bucket_w, bucket_h = size_from_reference(references[0], resolution)
        size = valid_size(width or bucket_w, height or bucket_h, length, 16)
        _use_with_room("r2v", Size(size.width, size.height, size.frames), model, vae)
        generator = torch.Generator().manual_seed(seed)
        shape = (1, dit.cfg.out_dim, (size.frames - 1) // 4 + 1, size.height // 8, size.width // 8)
        noise = torch.randn(shape, generator=generator)
        refs = encode_references(vae, references, size.width, size.height, generator)
        latents = sample_r2v(dit, conditioning.text, noise, refs, r2v_sigmas(steps, shift), cfg, cfg_image, sampler,
                             _step_callback(steps))
        return io.NodeOutput({"samples": latents})


class SkyReelsExtendVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXSkyReelsExtendVideo", display_name="SkyReels V3 Extend Video (VideosDGX)",
            category=CATEGORY,
            description="Continues a video (single shot, 1-30 s in 5 s chunks) or cuts to a new shot (2-5 s); "
                        "returns the new frames only.",
            inputs=[
                WanModelType.Input("model"), WanConditioningType.Input("conditioning"), WanVAEType.Input("vae"),
                io.Image.Input("video"),
                io.Combo.Input("mode", options=["extend", "shot"], default="extend",
                               tooltip="shot needs the V2V shot_transformer model; start the prompt with a cut tag."),
                io.Int.Input("duration", default=5, min=1, max=30, tooltip="Seconds to add (shot: 2-5)."),
                io.Combo.Input("resolution", options=list(RESOLUTIONS), default="720P",
                               tooltip="Size bucket closest to the video's aspect ratio (nearest resize)."),
                io.Int.Input("width", default=0, min=0, max=4096, step=16, tooltip="0: from the bucket."),
                io.Int.Input("height", default=0, min=0, max=4096, step=16, tooltip="0: from the bucket."),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True),
                io.Int.Input("steps", default=8, min=1, max=200),
                io.Float.Input("cfg", default=1.0, min=0.0, max=30.0, step=0.1, round=0.01),
                io.Float.Input("shift", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01),
                io.Combo.Input("sampler", options=list(SOLVERS), default="unipc"),
            ],
            outputs=[io.Image.Output(display_name="images")],
        )

    @classmethod
    def validate_inputs(cls, mode: str = "extend", resolution: str = "720P", sampler: str = "unipc") -> bool | str:
        return first_problem(check_choice("mode", mode, ("extend", "shot")),
                             check_choice("resolution", resolution, RESOLUTIONS),
                             check_choice("sampler", sampler, SOLVERS))

    @classmethod
    def execute(cls, model: WanExperts, conditioning: WanConditioning, vae, video: torch.Tensor, mode: str,
                duration: int, resolution: str, width: int, height: int, seed: int, steps: int, cfg: float,
                shift: float, sampler: str) -> io.NodeOutput:
        check_duration(duration, mode)
        needed = condition_frames(mode, duration)
        if video.shape[0] < needed:
            raise ConfigurationError(f"The input video has {video.shape[0]} frames; {mode} needs at least {needed}.")
        dit = _single_model(model)
        bucket_h, bucket_w = bucket_size(video.shape[1], video.shape[2], resolution)
        size = valid_size(width or bucket_w, height or bucket_h, 1, 16)
        _use_with_room("v2v", Size(size.width, size.height, duration * 24), model, vae)
        frames = resize_nearest(video, size.height, size.width)
        parameter = next(vae.parameters())

        def encode(pixels: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return vae.encode((pixels.permute(3, 0, 1, 2)[None] * 2 - 1).to(parameter.device, parameter.dtype))

        decode = lambda latents: decode_frames(vae, latents)  # noqa: E731
        sigmas, callback = extension_sigmas(steps, shift), _step_callback(steps)
        if mode == "shot":
            out = switch_shot(dit, conditioning.text, frames, duration, 24, encode, decode, sigmas, seed, cfg,
                              sampler, callback)
        else:
            out = extend_single_shot(dit, conditioning.text, frames, duration, encode, decode, sigmas, seed, cfg,
                                     sampler, callback)
        return io.NodeOutput(out)


class SkyReelsAudioEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXSkyReelsAudioEncoderLoader", display_name="SkyReels V3 Audio Encoder Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads the talking avatar's wav2vec2 speech encoder (chinese-wav2vec2-base).",
            inputs=[io.Combo.Input("audio_encoder_name", options=model_names("audio_encoders"))],
            outputs=[AudioEncoderType.Output(display_name="audio_encoder")],
        )

    @classmethod
    def validate_inputs(cls, audio_encoder_name: str) -> bool | str:
        return check_files(audio_encoder=("audio_encoders", audio_encoder_name))

    @classmethod
    def execute(cls, audio_encoder_name: str) -> io.NodeOutput:
        path = model_path("audio_encoders", audio_encoder_name)
        return io.NodeOutput(manage(load_wav2vec2(path, load_request()).module, "SkyReels V3 audio encoder"))


class SkyReelsTalkingAvatar(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        avatar = skyreels_variant("skyreels-v3-a2v-19b")
        return io.Schema(
            node_id="VideosDGXSkyReelsTalkingAvatar", display_name="SkyReels V3 Talking Avatar (VideosDGX)",
            category=CATEGORY,
            description="A portrait speaks the audio (up to 200 s at 25 fps): 81-frame clips chained as the release "
                        "does. Returns the frames and the audio cut to them.",
            inputs=[
                WanModelType.Input("model"), WanConditioningType.Input("conditioning"),
                WanConditioningType.Input("connection", tooltip="The prompt of every chained clip (the release: "
                                          "'a person is talking'); conditioning's prompt makes the keyframes."),
                WanVAEType.Input("vae"), WanClipVisionType.Input("clip_vision"),
                AudioEncoderType.Input("audio_encoder"),
                io.Image.Input("image", tooltip="The portrait."), io.Audio.Input("audio", tooltip="The speech."),
                io.Combo.Input("resolution", options=list(AVATAR_BUCKETS), default=avatar.resolution),
                io.Int.Input("width", default=0, min=0, max=4096, step=16, tooltip="0: from the bucket."),
                io.Int.Input("height", default=0, min=0, max=4096, step=16, tooltip="0: from the bucket."),
                io.Int.Input("length", default=AVATAR_MAX_FRAMES, min=1, max=AVATAR_MAX_FRAMES,
                             tooltip="At most this many frames (the speech sets the length)."),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True),
                io.Int.Input("steps", default=avatar.steps, min=1, max=200),
                io.Float.Input("cfg", default=avatar.guidance, min=0.0, max=30.0, step=0.1, round=0.01),
                io.Float.Input("cfg_audio", default=avatar.guidance_audio, min=0.0, max=30.0, step=0.1, round=0.01),
                io.Float.Input("shift", default=avatar.shift, min=0.0, max=100.0, step=0.1, round=0.01),
                io.Int.Input("motion_frames", default=avatar.motion_frames, min=1, max=40,
                             tooltip="Frames of each clip carried into the next (the official CLI: 5)."),
            ],
            outputs=[io.Image.Output(display_name="images"), io.Audio.Output(display_name="audio")],
        )

    @classmethod
    def validate_inputs(cls, resolution: str = "720P") -> bool | str:
        return check_choice("resolution", resolution, AVATAR_BUCKETS)

    @classmethod
    def execute(cls, model: WanExperts, conditioning: WanConditioning, connection: WanConditioning, vae, clip_vision,
                audio_encoder, image: torch.Tensor, audio: dict, resolution: str, width: int, height: int,
                length: int, seed: int, steps: int, cfg: float, cfg_audio: float, shift: float,
                motion_frames: int) -> io.NodeOutput:
        variant = skyreels_variant("skyreels-v3-a2v-19b")
        bucket_h, bucket_w = avatar_bucket_size(image.shape[1], image.shape[2], resolution)
        size = valid_size(width or bucket_w, height or bucket_h, 1, 16)
        _use_with_room("a2v", Size(size.width, size.height, variant.frames), model, vae, clip_vision, audio_encoder)
        settings = AvatarSettings(steps=steps, shift=shift, guidance=cfg, guidance_audio=cfg_audio,
                                  clip_frames=variant.frames, motion_frames=motion_frames,
                                  drop_frames=variant.drop_frames, max_frames=length)
        bar = progress(steps)

        def on_step(done: int, total: int) -> None:
            check_interrupt()
            bar.update_absolute(done, total)

        text = AvatarText(conditioning.text.positive, conditioning.text.negative, connection.text.positive)
        frames, speech = animate_portrait(_single_model(model), vae, clip_vision, audio_encoder, text, image, audio,
                                          size.height, size.width, settings, seed, on_step, variant.fps)
        return io.NodeOutput(frames, speech)


NODES = [SkyReelsModelLoader, SkyReelsReferenceToVideo, SkyReelsExtendVideo, SkyReelsAudioEncoderLoader,
         SkyReelsTalkingAvatar]

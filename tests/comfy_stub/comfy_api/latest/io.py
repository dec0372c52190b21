"""Stand-in for comfy_api.latest._io with the real constructor signatures and V1 serialisation."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


def prune(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class UploadType(str, Enum):
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class Input:
    io_type = "*"

    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 extra_dict=None):
        self.id, self.display_name, self.optional, self.tooltip, self.lazy = id, display_name, optional, tooltip, lazy
        self.extra_dict = extra_dict or {}

    def as_dict(self) -> dict:
        return prune({"display_name": self.display_name, "optional": self.optional, "tooltip": self.tooltip,
                      "lazy": self.lazy}) | prune(self.extra_dict)

    def get_io_type(self) -> str:
        return self.io_type


class WidgetInput(Input):
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None, socketless=None,
                 widget_type=None, force_input=None, extra_dict=None):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
        self.default, self.socketless = default, socketless
        self.widget_type, self.force_input = widget_type, force_input

    def as_dict(self) -> dict:
        return super().as_dict() | prune({"default": self.default, "socketless": self.socketless,
                                          "widgetType": self.widget_type, "forceInput": self.force_input})


class Output:
    io_type = "*"

    def __init__(self, id: str = None, display_name: str = None, tooltip: str = None, is_output_list=False):
        self.id, self.display_name, self.tooltip, self.is_output_list = id, display_name, tooltip, is_output_list


def _socket_type(name: str):
    class Type:
        io_type = name

        class Input(Input):
            io_type = name

        class Output(Output):
            io_type = name

    Type.__name__ = name
    return Type


Image = _socket_type("IMAGE")
Mask = _socket_type("MASK")
Latent = _socket_type("LATENT")
Conditioning = _socket_type("CONDITIONING")
Audio = _socket_type("AUDIO")
Video = _socket_type("VIDEO")
Model = _socket_type("MODEL")
Vae = _socket_type("VAE")
Clip = _socket_type("CLIP")
ClipVision = _socket_type("CLIP_VISION")
ClipVisionOutput = _socket_type("CLIP_VISION_OUTPUT")


def Custom(io_type: str):  # noqa: N802 - mirrors the real factory name
    return _socket_type(io_type)


class Int:
    io_type = "INT"

    class Input(WidgetInput):
        io_type = "INT"

        def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None, min=None,
                     max=None, step=None, control_after_generate=None, display_mode=None, socketless=None,
                     force_input=None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min, self.max, self.step, self.control_after_generate = min, max, step, control_after_generate

        def as_dict(self):
            return super().as_dict() | prune({"min": self.min, "max": self.max, "step": self.step,
                                              "control_after_generate": self.control_after_generate})

    class Output(Output):
        io_type = "INT"


class Float:
    io_type = "FLOAT"

    class Input(WidgetInput):
        io_type = "FLOAT"

        def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None, min=None,
                     max=None, step=None, round=None, display_mode=None, socketless=None, force_input=None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min, self.max, self.step, self.round = min, max, step, round

        def as_dict(self):
            return super().as_dict() | prune({"min": self.min, "max": self.max, "step": self.step, "round": self.round})

    class Output(Output):
        io_type = "FLOAT"


class String:
    io_type = "STRING"

    class Input(WidgetInput):
        io_type = "STRING"

        def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, multiline=False,
                     placeholder=None, default=None, dynamic_prompts=None, socketless=None, force_input=None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.multiline, self.placeholder, self.dynamic_prompts = multiline, placeholder, dynamic_prompts

        def as_dict(self):
            return super().as_dict() | prune({"multiline": self.multiline, "placeholder": self.placeholder,
                                              "dynamicPrompts": self.dynamic_prompts})

    class Output(Output):
        io_type = "STRING"


class Boolean:
    io_type = "BOOLEAN"

    class Input(WidgetInput):
        io_type = "BOOLEAN"

        def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None,
                     label_on=None, label_off=None, socketless=None, force_input=None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.label_on, self.label_off = label_on, label_off

        def as_dict(self):
            return super().as_dict() | prune({"label_on": self.label_on, "label_off": self.label_off})


class Combo:
    io_type = "COMBO"

    class Input(WidgetInput):
        io_type = "COMBO"

        def __init__(self, id, options=None, display_name=None, optional=False, tooltip=None, lazy=None,
                     default=None, control_after_generate=None, upload=None, image_folder=None, remote=None,
                     socketless=None):
            if isinstance(options, type) and issubclass(options, Enum):
                options = [v.value for v in options]
            if isinstance(default, Enum):
                default = default.value
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless)
            self.options, self.control_after_generate, self.upload = options, control_after_generate, upload

        def as_dict(self):
            return super().as_dict() | prune({"multiselect": False, "options": self.options,
                                              "control_after_generate": self.control_after_generate,
                                              **({self.upload.value: True} if self.upload is not None else {})})


class Hidden(str, Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    def __init__(self, unique_id=None, prompt=None, extra_pnginfo=None, dynprompt=None, auth_token_comfy_org=None,
                 api_key_comfy_org=None, **kwargs):
        self.unique_id, self.prompt, self.extra_pnginfo, self.dynprompt = unique_id, prompt, extra_pnginfo, dynprompt
        self.auth_token_comfy_org, self.api_key_comfy_org = auth_token_comfy_org, api_key_comfy_org

    def __getattr__(self, key):
        return None

    @classmethod
    def from_dict(cls, d: dict | None) -> "HiddenHolder":
        d = d or {}
        return cls(**{h.name: d.get(h) for h in Hidden})


@dataclass
class Schema:
    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    hidden: list = None
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def validate(self):
        ids = [i.id for i in self.inputs] + [o.id for o in self.outputs if o.id]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{self.node_id}: input/output ids must be unique: {ids}")

    def get_v1_info(self, cls) -> dict:
        """The node's /object_info entry, built exactly like ComfyUI's Schema.get_v1_info."""
        inputs: dict[str, dict] = {"required": {}}
        for i in self.inputs:
            as_dict = i.as_dict()
            as_dict.pop("optional", None)
            inputs.setdefault("optional" if i.optional else "required", {})[i.id] = [i.get_io_type(), as_dict]
        hidden = list(self.hidden or [])
        if self.is_output_node:
            hidden += [h for h in (Hidden.prompt, Hidden.extra_pnginfo) if h not in hidden]
        for h in hidden:
            inputs.setdefault("hidden", {})[h.name] = [h.value]
        return {
            "input": inputs,
            "input_order": {k: list(v) for k, v in inputs.items()},
            "output": [o.io_type for o in self.outputs],
            "output_is_list": [o.is_output_list for o in self.outputs],
            "output_name": [o.display_name or o.io_type for o in self.outputs],
            "output_tooltips": [o.tooltip for o in self.outputs],
            "name": self.node_id,
            "display_name": self.display_name,
            "description": self.description,
            "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
            "category": self.category,
            "output_node": self.is_output_node,
            "deprecated": self.is_deprecated,
            "experimental": self.is_experimental,
            "api_node": self.is_api_node,
        }


class NodeOutput:
    def __init__(self, *args: Any, ui=None, expand=None, block_execution=None):
        self.args, self.ui, self.expand, self.block_execution = args, ui, expand, block_execution

    @property
    def result(self):
        return self.args if self.args else None

    def __getitem__(self, index):
        return self.args[index]


class ComfyNode:
    RELATIVE_PYTHON_MODULE = None
    hidden: HiddenHolder = None

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError

    @classmethod
    def GET_SCHEMA(cls) -> Schema:  # noqa: N802 - ComfyUI's name
        schema = cls.define_schema()
        schema.validate()
        return schema

    @classmethod
    def PREPARE_CLASS_CLONE(cls, hidden_inputs: dict) -> type:  # noqa: N802 - ComfyUI's name
        """A copy of the class with `hidden` filled, as ComfyUI's executor makes before calling `execute`."""
        clone = type(cls.__name__, (cls,), {})
        clone.hidden = HiddenHolder.from_dict(hidden_inputs)
        return clone

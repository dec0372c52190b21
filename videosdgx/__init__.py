"""VideosDGX engine: video model code, loaders and samplers. Never imports ComfyUI."""

__version__ = "0.1.0"

"""The built-in trainable neural audio codec (SEANet encoder/decoder + EMA residual VQ).

`model` never imports `codecdoctor`; the toolkit imports this package one-way.
"""
from .checkpoint import FORMAT, build_codec, load_checkpoint, save_checkpoint
from .codec import Codec, CodecOutput
from .config import CodecConfig

__all__ = ["Codec", "CodecOutput", "CodecConfig", "FORMAT", "build_codec", "load_checkpoint", "save_checkpoint"]

"""The built-in trainable neural audio codec (SEANet encoder/decoder + EMA residual VQ).

`model` never imports `codecdoctor`; the toolkit imports this package one-way.
"""
from model.checkpoint import FORMAT, build_codec, load_checkpoint, save_checkpoint
from model.codec import Codec, CodecOutput
from model.config import CodecConfig

__all__ = ["Codec", "CodecOutput", "CodecConfig", "FORMAT", "build_codec", "load_checkpoint", "save_checkpoint"]

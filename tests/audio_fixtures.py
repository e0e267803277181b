"""Shared generators of test audio: deterministic, speech-like, nothing downloaded.

The generators live in the package (`codecdoctor.synth`) because the demo uses them at run time;
this module re-exports them for the tests. Others may append test-only helpers at the end.
"""
from __future__ import annotations

from codecdoctor.measure.stimuli import speech_like, write_audio  # noqa: F401

"""`check-ckpt --model file.py:Cls.factory` on a class built from modules (encoder, decoder,
quantizer) with a static factory and a class method beside it, as community EnCodec trainers
write it; arguments from `--model-kwargs` and from the checkpoint's saved hydra `cfg`; one-line
errors naming the argument; codes captured from `quantizer.encode(...)` calls."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures import checkpoints as fx
from fixtures.modules_codec import ModulesCodec

from codecdoctor.check_ckpt import check_checkpoint
from codecdoctor.core.errors import InputError

MODEL_FILE = Path(__file__).resolve().parent / "fixtures" / "modules_codec.py"
FACTORY = f"{MODEL_FILE}:ModulesCodec._get_model"
CFG = {"model": {"target_bandwidths": [9.6], "sample_rate": 16000, "channels": 1, "bins": 64, "name": "tiny"},
       "optimization": {"lr": 3e-4}}


def _checkpoint(path: Path, *, one_code: bool = False, cfg=CFG) -> Path:
    """A trainer's checkpoint of the 4-level model (9.6 kbps = 400 frames/s x 4 x 6 bits). Every
    level's EMA counts are spread over all 64 codes (perplexity ~50); `one_code`: the codebook blew
    up (RMS ~2000) except code 7, which every latent is nearest to, on every level."""
    from audio_fixtures import speech_like

    torch.manual_seed(0)
    model = ModulesCodec._get_model([9.6], 16000, 1, bins=64)
    # healthy: each level's codebook is 64 residual latents of speech (a k-means-style init)
    with torch.no_grad():
        residual = model.encoder(torch.as_tensor(speech_like(2.0, 16000, seed=9, peak=0.5), dtype=torch.float32)
                                 .reshape(1, 1, -1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for level in range(4):
        prefix = f"quantizer.layers.{level}."
        counts = fx.usage_counts(64, 64, seed=level)
        frames = residual[0].T
        embed = frames[torch.randperm(frames.shape[0], generator=torch.Generator().manual_seed(level))[:64]].clone()
        with torch.no_grad():
            nearest = torch.cdist(frames, embed).argmin(-1)
            residual = residual - embed[nearest].T[None]
        if one_code:
            embed = torch.randn(64, 8, generator=torch.Generator().manual_seed(level)) * 2000.0
            embed[7] = 0.01 * torch.randn(8)
        state[prefix + "cluster_size"], state[prefix + "embed"] = counts, embed
        state[prefix + "embed_avg"] = embed * counts[:, None]
    saved = {"epoch": 3, "model_state_dict": state, "optimizer_state_dict": {}}
    if cfg is not None:
        saved["cfg"] = cfg
    return fx.save(saved, path)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    from audio_fixtures import speech_like, write_audio

    folder = tmp_path_factory.mktemp("speech")
    for seed in (1, 2):
        write_audio(folder / f"{seed}.wav", speech_like(1.0, 16000, seed=seed, peak=0.5), 16000)
    return folder


def test_static_factory_gets_its_arguments_from_the_saved_hydra_cfg(tmp_path, speech):
    report = check_checkpoint(_checkpoint(tmp_path / "c.pt"), model=FACTORY, data=speech, probes=False,
                              n_crops=2, crop_seconds=0.5)
    load = report.measurements["model_load"]
    assert load.kind == "factory" and load.checked and load.clean and load.loaded == 4 + 4 * 4
    assert load.kwargs_sources == {"target_bandwidths": "checkpoint cfg['model']", "sample_rate": "checkpoint cfg['model']",
                                   "channels": "checkpoint cfg['model']", "bins": "checkpoint cfg['model']",
                                   "name": "checkpoint cfg['model']"}
    # the eval path calls quantizer.encode(): codes of the 4 levels, 2 crops x 0.5 s x 400 frames/s
    on_data = report.measurements["quantizer_on_data"]
    assert len(on_data["levels"]) == 4 and on_data["frames"] == 400
    assert all(lv["used"] >= 32 for lv in on_data["levels"])
    assert not [f for f in report.findings if f.id in ("Q401", "Q402", "Q405")], report.ids()


def test_class_method_and_model_kwargs(tmp_path):
    ckpt = _checkpoint(tmp_path / "c.pt", cfg=None)
    report = check_checkpoint(ckpt, model=f"{MODEL_FILE}:ModulesCodec._get_model", probes=False,
                              model_kwargs='{"target_bandwidths": [9.6], "bins": 64}')
    assert report.measurements["model_load"].clean
    assert report.measurements["model_load"].kwargs_sources == {"target_bandwidths": "--model-kwargs",
                                                                "bins": "--model-kwargs"}
    report = check_checkpoint(_checkpoint(tmp_path / "d.pt"), model=f"{MODEL_FILE}:ModulesCodec.from_config",
                              probes=False)
    assert report.measurements["model_load"].clean and report.measurements["model_built"]


def test_an_omegaconf_cfg_saved_as_it_was_feeds_the_factory(tmp_path):
    omegaconf = pytest.importorskip("omegaconf")
    ckpt = _checkpoint(tmp_path / "c.pt", cfg=omegaconf.OmegaConf.create(CFG))
    report = check_checkpoint(ckpt, model=FACTORY, probes=False, unsafe_load=True)
    assert report.measurements["model_load"].clean
    assert report.measurements["model_load"].kwargs_sources["target_bandwidths"] == "checkpoint cfg['model']"
    # a class method taking the whole cfg gets it as saved (a DictConfig, attribute access intact)
    report = check_checkpoint(ckpt, model=f"{MODEL_FILE}:ModulesCodec.from_config", probes=False, unsafe_load=True)
    assert report.measurements["model_load"].kwargs_sources == {"cfg": "checkpoint cfg"}
    assert report.measurements["model_load"].clean


def test_codes_from_encode_calls_name_every_collapsed_level_whatever_the_buffers_say(tmp_path, speech):
    report = check_checkpoint(_checkpoint(tmp_path / "c.pt", one_code=True), model=FACTORY, data=speech,
                              probes=False, n_crops=2, crop_seconds=0.5)
    levels = report.measurements["quantizer_on_data"]["levels"]
    assert [lv["used"] for lv in levels] == [1, 1, 1, 1] and levels[0]["total_count"] == 400
    assert all(lv["buffer_perplexity"] > 40 for lv in levels)              # the buffers claim health
    # every level's histogram is code 7 on all 400 frames, from the layer's own encode() call
    assert [lv["top_codes"] for lv in levels] == [[[7, 400]]] * 4
    assert [lv["source_module"] for lv in levels] == [f"quantizer.layers.{i}" for i in range(4)]
    from codecdoctor.report.figures.check_ckpt import codes_table

    table = codes_table(report.measurements["quantizer_on_data"])
    assert table.rows[0][0] == "level 0 (quantizer.layers.0)" and table.rows[0][4] == "7: 100%"
    buffers = report.measurements["quantizer"]
    assert len(buffers) == 4 and all(lv["perplexity"] > 40 for lv in buffers)
    q402 = [f for f in report.findings if f.id == "Q402"]
    assert [f.subject for f in q402] == [f"codes on data: level {i}" for i in range(4)]
    shown = [f for f in report.sorted_findings() if f.id.startswith("Q4")]
    top = shown[0]                                                            # measured codes first, one finding
    assert top.id == "Q402" and top.subject == "codes on data: level 0-3 (4)" and top.evidence["grouped_items"] == 4
    assert "1 distinct code in 400 frames measured on data" in top.message
    assert "EMA buffers read perplexity" in top.message and top.evidence["buffer_perplexity"] > 40
    # the root cause ranks first; the failed reconstruction it explains says so
    assert (report.sorted_findings()[0].id, report.sorted_findings()[0].subject) == ("Q402", top.subject)
    explained = [f for f in report.findings if f.id in ("R301", "R314")]
    assert explained and all("explained by q402" in f.message.lower() for f in explained)


def test_a_class_that_takes_modules_points_to_its_factories(tmp_path):
    with pytest.raises(InputError) as info:
        check_checkpoint(_checkpoint(tmp_path / "c.pt"), model=f"{MODEL_FILE}:ModulesCodec", probes=False)
    text = str(info.value)
    assert "needs encoder, decoder, quantizer" in text and "ModulesCodec._get_model, ModulesCodec.from_config" in text
    assert "\n" not in text


def test_a_factory_that_fails_names_the_argument_and_where_it_came_from(tmp_path):
    ckpt = _checkpoint(tmp_path / "c.pt", cfg=None)
    with pytest.raises(InputError) as info:
        check_checkpoint(ckpt, model=FACTORY, probes=False, model_kwargs='{"target_bandwidths": 9.6}')
    text = str(info.value)
    assert "target_bandwidths = 9.6 from --model-kwargs" in text and "TypeError" in text and "\n" not in text
    assert "n_q = int(1000 * target_bandwidths[-1]" in text
    with pytest.raises(InputError, match="needs target_bandwidths, which neither --model-kwargs"):
        check_checkpoint(ckpt, model=FACTORY, probes=False)
    with pytest.raises(InputError, match="ModulesCodec.encode is an instance method"):
        check_checkpoint(ckpt, model=f"{MODEL_FILE}:ModulesCodec.encode", probes=False)
    with pytest.raises(InputError, match="_get_model takes no argument 'n_codebooks'"):
        check_checkpoint(ckpt, model=FACTORY, probes=False, model_kwargs='{"n_codebooks": 4}')


def test_the_cli_builds_the_factory_and_exits_2_with_one_line_on_a_bad_argument(cli, tmp_path):
    ckpt = _checkpoint(tmp_path / "c.pt", cfg=None)
    code, _, err = cli("check-ckpt", ckpt, "--model", FACTORY, "--model-kwargs", '{"target_bandwidths": [9.6]}',
                       "--no-probes", "--json", tmp_path / "r.json", "--html", "none")
    assert code in (0, 1), err
    code, _, err = cli("check-ckpt", ckpt, "--model", FACTORY, "--model-kwargs", '{"target_bandwidths": "9.6"}',
                       "--no-probes", "--json", "none", "--html", "none")
    assert code == 2 and "target_bandwidths = '9.6' from --model-kwargs" in err and "Traceback" not in err


INLINE_ARGMIN = '''
import torch
from torch import nn


class InlineRVQ(nn.Module):
    """Two levels in one module; the nearest-code search is inline and only vectors come out."""

    def __init__(self, dim=8, bins=64, levels=2):
        super().__init__()
        self.codebooks = nn.Parameter(torch.randn(levels, bins, dim) * 0.1)

    def forward(self, z):
        flat, out = z.transpose(1, 2), torch.zeros_like(z.transpose(1, 2))
        for book in self.codebooks:
            index = torch.cdist(flat - out, book[None]).argmin(dim=-1)
            out = out + book[index]
        return out.transpose(1, 2), torch.zeros(())


class InlineCodec(nn.Module):
    def __init__(self, hop=40):
        super().__init__()
        self.encoder, self.decoder = nn.Conv1d(1, 8, hop, hop), nn.ConvTranspose1d(8, 1, hop, hop)
        self.quantizer = InlineRVQ()

    def forward(self, x):
        quantized, _ = self.quantizer(self.encoder(x))
        return self.decoder(quantized)[..., : x.shape[-1]]
'''


def test_codes_searched_inline_in_a_quantizers_forward_are_captured(tmp_path, speech):
    (tmp_path / "inline_codec.py").write_text(INLINE_ARGMIN)
    torch.manual_seed(0)
    import importlib.util

    spec = importlib.util.spec_from_file_location("inline_codec_fixture", tmp_path / "inline_codec.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.InlineCodec()
    with torch.no_grad():
        model.quantizer.codebooks[1] = 1000.0  # level 1 blew up: every residual is nearest its code 0...
        model.quantizer.codebooks[1, 5] = 0.0  # ... except code 5, at the origin
    ckpt = fx.save(model.state_dict(), tmp_path / "inline.pt")
    report = check_checkpoint(ckpt, model=f"{tmp_path / 'inline_codec.py'}:InlineCodec", data=speech, probes=False,
                              n_crops=2, crop_seconds=0.5)
    levels = report.measurements["quantizer_on_data"]["levels"]
    assert [lv["source_module"] for lv in levels] == ["quantizer #0", "quantizer #1"]
    assert levels[0]["used"] > 2 and levels[1]["used"] == 1 and levels[1]["top_codes"] == [[5, 400]]
    assert levels[1]["codebook_size"] == 64                                   # the searched dimension
    q402 = {f.subject: f for f in report.findings if f.id == "Q402"}
    assert "1 distinct code in 400 frames measured on data" in q402["codes on data: level 1"].message

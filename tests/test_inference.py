"""The numpy encoder (dubalign.inference) against the torch one, the torch-free weights reader, and
an alignment that never imports torch."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import grid_analysis
from test_model import fake_track, tiny

from dubalign import media
from dubalign.audio import log_mel
from dubalign.encoder import SyncEncoder, save_checkpoint
from dubalign.errors import MediaError
from dubalign.inference import (
    NumpyEncoder,
    _conv1d_weights,
    conv1d,
    fit_state,
    gelu,
    read_checkpoint,
    state_shapes,
)
from dubalign.model import VIDEO_RATE, EncoderConfig, LipSyncModel, load_model
from dubalign.pipeline import dub_features
from dubalign.units import N_MELS, PATH_RATE

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "grid_bbaf2n"
SHIPPED = REPO / "models" / "lipsync.pt"
TOLERANCE = 1e-4  # max abs difference between numpy and torch unit embeddings (measured: about 5e-7)


def random_encoder(cfg: EncoderConfig, seed: int = 0) -> SyncEncoder:
    """A SyncEncoder with random weights and BatchNorm statistics far from (0, 1), as trained ones are."""
    torch.manual_seed(seed)
    enc = SyncEncoder(cfg)
    with torch.no_grad():
        for name, buf in enc.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.5)
            elif name.endswith("running_var"):
                buf.uniform_(0.3, 3.0)
        for name, p in enc.named_parameters():
            if name.endswith("ln.weight") or name.endswith("convs.1.weight"):
                p.uniform_(0.5, 1.5)
    return enc.eval()


def numpy_twin(encoder: SyncEncoder) -> LipSyncModel:
    """The numpy model holding the weights of a torch encoder."""
    state = {k: v.detach().numpy() for k, v in encoder.state_dict().items()}
    return LipSyncModel(NumpyEncoder(encoder.cfg, fit_state(state, encoder.cfg)))


def faceless_track(rng: np.random.Generator, n: int = 30):
    track = fake_track(rng, n=n)
    track.present[:] = False
    return track


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    return float(np.abs(a - b).max())


# ---- the forward pass --------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [tiny("landmarks"), tiny("crops"), tiny("both"), EncoderConfig()],
                         ids=["landmarks", "crops", "both", "default"])
def test_state_shapes_are_the_torch_encoders(cfg):
    assert state_shapes(cfg) == {k: tuple(v.shape) for k, v in SyncEncoder(cfg).state_dict().items()}


@pytest.mark.parametrize("design", ["landmarks", "crops", "both"])
def test_numpy_matches_torch_on_random_clips(rng, design):
    enc = random_encoder(tiny(design))
    ours, theirs = numpy_twin(enc), LipSyncModel(enc)
    track = fake_track(rng, n=60)  # frames 5-7 without a face
    grid = np.arange(0, 2.0, 1 / PATH_RATE)
    mel = rng.normal(-5, 2, (237, N_MELS)).astype(np.float32)
    for a, b in ((ours.embed_video(track), theirs.embed_video(track)),
                 (ours.embed_video(track, times=grid), theirs.embed_video(track, times=grid)),
                 (ours.embed_video(faceless_track(rng)), theirs.embed_video(faceless_track(rng))),
                 (ours.embed_audio(mel), theirs.embed_audio(mel)),
                 (ours.embed_audio(mel[:3]), theirs.embed_audio(mel[:3]))):  # shorter than the kernels
        assert max_diff(a, b) <= TOLERANCE
    assert ours.logit_scale == pytest.approx(float(enc.logit_scale.detach()), rel=1e-6)


def test_conv1d_is_torchs_with_dilations_past_the_clip(rng):
    x = rng.normal(size=(7, 5)).astype(np.float32)
    conv = torch.nn.Conv1d(5, 4, 3, padding=8, dilation=8)  # every side tap falls outside 7 frames
    state = {"c.weight": conv.weight.detach().numpy(), "c.bias": conv.bias.detach().numpy()}
    ours = conv1d(x, _conv1d_weights(state, "c", dilation=8))
    theirs = conv(torch.from_numpy(x.T)[None])[0].detach().numpy().T
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_gelu_is_the_erf_gelu(rng):
    x = np.concatenate([rng.normal(0, 3, 100_000), np.linspace(-12, 12, 10_001)]).astype(np.float32)
    ours = gelu(x.copy())
    theirs = torch.nn.functional.gelu(torch.from_numpy(x).double()).numpy()  # float64: the exact one
    assert np.abs(ours - theirs).max() < 2e-6
    # not the tanh approximation, which is further off than the tolerance between the encoders
    tanh_gelu = torch.nn.functional.gelu(torch.from_numpy(x).double(), approximate="tanh").numpy()
    assert np.abs(tanh_gelu - theirs).max() > 1e-4


@pytest.mark.slow
@pytest.mark.skipif(not EXAMPLE.is_dir(), reason="examples/grid_bbaf2n is not there")
def test_shipped_model_matches_torch_on_the_bundled_example(rng):
    ours = load_model()
    theirs = LipSyncModel(ours.encoder)  # the torch encoder built from the same weights
    picture = grid_analysis()  # tests/data/grid/video/bbaf2n.mkv is examples/grid_bbaf2n/picture.mkv
    track = picture.track
    grid = np.arange(0, picture.duration, 1 / PATH_RATE)
    dub_mel = dub_features(media.read_dub(EXAMPLE / "dub.wav")).mel
    diffs = {
        "video": max_diff(ours.embed_video(track), theirs.embed_video(track)),
        "video on the path grid": max_diff(ours.embed_video(track, times=grid), theirs.embed_video(track, times=grid)),
        "picture audio": max_diff(ours.embed_audio(log_mel(picture.audio)), theirs.embed_audio(log_mel(picture.audio))),
        "dub": max_diff(ours.embed_audio(dub_mel), theirs.embed_audio(dub_mel)),
    }
    long_track = fake_track(rng, n=10 * VIDEO_RATE)  # random lips and crops, some frames without a face
    diffs["random video"] = max_diff(ours.embed_video(long_track), theirs.embed_video(long_track))
    diffs["faceless video"] = max_diff(ours.embed_video(faceless_track(rng)), theirs.embed_video(faceless_track(rng)))
    assert max(diffs.values()) <= TOLERANCE, diffs


# ---- reading the weights -----------------------------------------------------------------------


def test_read_checkpoint_gives_what_torch_load_gives(tmp_path):
    enc = random_encoder(tiny())
    save_checkpoint(enc, tmp_path / "m.pt")
    ours = read_checkpoint(tmp_path / "m.pt")
    theirs = torch.load(tmp_path / "m.pt", weights_only=True)
    assert ours["config"] == theirs["config"]
    assert ours["state_dict"].keys() == theirs["state_dict"].keys()
    for k, v in theirs["state_dict"].items():
        assert ours["state_dict"][k].dtype == v.numpy().dtype
        np.testing.assert_array_equal(ours["state_dict"][k], v.numpy())
    # views into shared storages and non-contiguous tensors come out as torch sees them
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    obj = {"t": base.T, "row": base[2], "half": base.half(), "flags": base > 3, "n": 7, "s": ["a", (1.5,)]}
    torch.save(obj, tmp_path / "x.pt")
    got = read_checkpoint(tmp_path / "x.pt")
    for k in ("t", "row", "half", "flags"):
        np.testing.assert_array_equal(got[k], obj[k].numpy())
        assert got[k].dtype == obj[k].numpy().dtype
    assert got["n"] == 7 and got["s"] == ["a", (1.5,)]


class _Payload:
    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def _with_sums(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    Path(f"{path}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
    return path


def test_code_in_a_weights_file_is_refused_not_run(tmp_path):
    payload = _Payload()
    payload.marker = tmp_path / "ran"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("m/data.pkl", pickle.dumps({"config": {}, "state_dict": payload}, protocol=2))
    path = _with_sums(tmp_path / "m.pt", buf.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        read_checkpoint(path)
    with pytest.raises(MediaError, match="not a PyTorch checkpoint"):
        load_model(path)
    # a whole pickled module (torch.save(model) rather than its state_dict) is refused the same way
    buf = io.BytesIO()
    torch.save(SyncEncoder(tiny()), buf)
    with pytest.raises(MediaError, match="not a PyTorch checkpoint"):
        load_model(_with_sums(tmp_path / "module.pt", buf.getvalue()))
    assert not payload.marker.exists()


def _torch_file(path: Path, obj) -> Path:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return _with_sums(path, buf.getvalue())


def _truncated_storage(path: Path) -> Path:
    buf = io.BytesIO()
    save_checkpoint(random_encoder(tiny()), path)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[: len(data) // 2] if item.filename.endswith("/data/1") else data)
    return _with_sums(path, buf.getvalue())


def _state(cfg: EncoderConfig) -> dict:
    return {k: v.clone() for k, v in SyncEncoder(cfg).state_dict().items()}


def _cfg(cfg: EncoderConfig) -> dict:
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


# each damaged file and the whole message load_model gave for it with torch.load (the same words)
FIX = "give a checkpoint written by scripts/train.py"
DAMAGED = {
    "truncated storage": (_truncated_storage, f"cannot load the lip-sync model m.pt: not a PyTorch checkpoint; {FIX}"),
    "not a zip": (lambda p: _with_sums(p, pickle.dumps({"config": {}, "state_dict": {}})),
                  f"cannot load the lip-sync model m.pt: not a PyTorch checkpoint; {FIX}"),
    "a list": (lambda p: _torch_file(p, [1, 2]), "cannot load the lip-sync model m.pt: a PyTorch file, but not a "
               f"dubalign checkpoint (no 'config' and 'state_dict'); {FIX}"),
    "unknown design": (lambda p: _torch_file(p, {"config": {**_cfg(tiny()), "design": "ears"}, "state_dict": {}}),
                       "cannot load the lip-sync model m.pt: its model configuration is not one this version of "
                       f"dubalign knows; {FIX}"),
    "other shapes": (lambda p: _torch_file(p, {"config": _cfg(tiny()), "state_dict": _state(tiny("crops"))}),
                     f"cannot load the lip-sync model m.pt: its weights do not fit its configuration; {FIX}"),
    "missing weight": (lambda p: _torch_file(p, {"config": _cfg(tiny()), "state_dict": {
        k: v for k, v in _state(tiny()).items() if k != "audio.out.bias"}}),
        f"cannot load the lip-sync model m.pt: its weights do not fit its configuration; {FIX}"),
    "wider weight": (lambda p: _torch_file(p, {"config": _cfg(tiny()), "state_dict": {
        **_state(tiny()), "video.inp.bias": torch.zeros(17)}}),
        f"cannot load the lip-sync model m.pt: its weights do not fit its configuration; {FIX}"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_weights_give_the_one_line_error_they_gave(case, tmp_path):
    make, message = DAMAGED[case]
    path = make(tmp_path / "m.pt")
    with pytest.raises(MediaError) as caught:
        load_model(path)
    assert str(caught.value) == message


def test_corrupted_weights_are_refused_by_their_checksum(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(random_encoder(tiny()), path)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(MediaError, match=r"^lip-sync model m\.pt is corrupt: its sha256 .* copy the file again$"):
        load_model(path)


# ---- the tool -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not EXAMPLE.is_dir() or not SHIPPED.is_file(), reason="the example or the model is not there")
def test_aligning_the_example_imports_only_what_it_runs(tmp_path):
    out, modules = tmp_path / "out.wav", tmp_path / "modules.json"
    # `dubalign align`, noting at exit which modules it imported (-X importtime writes to the native
    # stderr, which the CLI mutes while MediaPipe runs)
    cli = (f"import atexit, json, sys; atexit.register(lambda: open({str(modules)!r}, 'w').write("
           "json.dumps(sorted(sys.modules)))); from dubalign.cli import main; main()")
    p = subprocess.run(
        [sys.executable, "-c", cli, "align", str(EXAMPLE / "picture.mkv"), str(EXAMPLE / "dub.wav"), "-o", str(out),
         "--report", str(tmp_path / "out.json"), "-q"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert out.is_file()
    imported = set(json.loads(modules.read_text()))
    assert {"dubalign.model", "dubalign.inference"} <= imported  # the lip model did run
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}
    assert "dubalign.encoder" not in imported
    # MediaPipe's Face Landmarker alone (lips._mediapipe), not its package's pyplot and every task
    assert "matplotlib" not in imported
    # the path solver and the smoother are numpy: neither numba nor scipy is loaded
    assert not {"numba", "scipy"} & imported

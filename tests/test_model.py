"""The lips-speech dual encoder: shapes, unit norm, training smoke test, checkpoints."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dubalign.encoder import SyncEncoder, save_checkpoint, upsample_video
from dubalign.errors import MediaError
from dubalign.lips import CROP_H, CROP_W, LipTrack
from dubalign.model import (
    AUDIO_PER_VIDEO,
    N_LIP_FEATURES,
    VIDEO_RATE,
    EncoderConfig,
    LipSyncModel,
    load_model,
    resample_track,
)
from dubalign.units import N_MELS

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "lipsync.pt"


def tiny(design: str = "both") -> EncoderConfig:
    return EncoderConfig(design=design, crop_pool=2, crop_channels=(4, 8), crop_dim=8, width=16,
                         video_dilations=(1,), audio_dilations=(1, 2), embed_dim=8, dropout=0.0)


def fake_track(rng: np.random.Generator, n: int = 40, fps: float = 29.97) -> LipTrack:
    present = np.ones(n, bool)
    present[5:8] = False
    return LipTrack(
        times=np.arange(n) / fps, present=present,
        lips=rng.normal(0, 0.1, (n, 40, 2)).astype(np.float32),
        blendshapes=rng.uniform(0, 1, (n, 52)).astype(np.float32),
        crops=rng.integers(0, 256, (n, CROP_H, CROP_W), dtype=np.uint8),
        face=0, n_faces=1, face_x=0.5,
    )


@pytest.mark.parametrize("design", ["landmarks", "crops", "both"])
def test_wrapper_shapes_and_unit_norm(rng, design):
    torch.manual_seed(0)
    model = LipSyncModel(SyncEncoder(tiny(design)))
    track = fake_track(rng)
    v = model.embed_video(track)
    a = model.embed_audio(rng.normal(-5, 2, (137, N_MELS)).astype(np.float32))
    assert v.shape == (track.n_frames, 8) and v.dtype == np.float32
    assert a.shape == (137, 8) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)


def test_embed_audio_rejects_wrong_bands(rng):
    model = LipSyncModel(SyncEncoder(tiny()))
    with pytest.raises(ValueError, match="mel must have shape"):
        model.embed_audio(rng.normal(size=(10, N_MELS + 1)).astype(np.float32))


def test_resample_track_interpolates_and_bridges_gaps():
    times = np.array([0.0, 0.1, 0.2, 0.3])
    present = np.array([True, True, False, True])
    feats = np.array([[0.0], [1.0], [99.0], [3.0]], np.float32)  # frame 2 has no face
    out, pres = resample_track(times, present, feats, np.array([0.05, 0.2, 0.27]))
    np.testing.assert_allclose(out[:, 0], [0.5, 2.0, 2.7], atol=1e-5)  # bridged over frame 2
    assert pres.tolist() == [True, False, True]


def test_upsample_video_is_linear_between_frames():
    emb = torch.zeros(1, 2, 2)
    emb[0, 0, 0] = 1.0  # frame 0 points along x, frame 1 along y
    emb[0, 1, 1] = 1.0
    up = upsample_video(emb, 2 * AUDIO_PER_VIDEO)
    half = AUDIO_PER_VIDEO // 2  # halfway between the two video frames
    np.testing.assert_allclose(up[0, 0].numpy(), [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(up[0, half].numpy(), [2**-0.5, 2**-0.5], atol=1e-6)
    np.testing.assert_allclose(up[0, -1].numpy(), [0.0, 1.0], atol=1e-6)  # held past the end


@pytest.mark.parametrize("hard_weight", [0.0, 0.5])
def test_training_step_decreases_loss(hard_weight):
    """A few steps on one fixed batch whose audio follows the lips: the loss must fall."""
    torch.manual_seed(0)
    B, T = 4, 20
    lips = torch.randn(B, T, N_LIP_FEATURES)
    crops = torch.randn(B, T, CROP_H, CROP_W)
    # audio: the first lip features, repeated at FEATURE_RATE and spread over the bands
    drive = lips[..., :N_MELS].repeat_interleave(AUDIO_PER_VIDEO, dim=1)
    mel = drive + 0.1 * torch.randn(B, T * AUDIO_PER_VIDEO, N_MELS)
    vmask = torch.ones(B, T, dtype=torch.bool)
    amask = torch.ones(B, T * AUDIO_PER_VIDEO, dtype=torch.bool)
    model = SyncEncoder(tiny())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss, _ = model.loss(lips, crops, vmask, mel, amask, n_query=64, hard_weight=hard_weight,
                             generator=torch.Generator().manual_seed(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.1


def test_hard_negatives_add_a_loss_over_the_same_clip_nearby():
    torch.manual_seed(0)
    B, T = 2, 20
    args = (torch.randn(B, T, N_LIP_FEATURES), torch.randn(B, T, CROP_H, CROP_W),
            torch.ones(B, T, dtype=torch.bool), torch.randn(B, T * AUDIO_PER_VIDEO, N_MELS),
            torch.ones(B, T * AUDIO_PER_VIDEO, dtype=torch.bool))
    model = SyncEncoder(tiny()).eval()
    base, _ = model.loss(*args, n_query=32, generator=torch.Generator().manual_seed(1))
    both, _ = model.loss(*args, n_query=32, hard_weight=1.0, generator=torch.Generator().manual_seed(1))
    # the local softmax has fewer negatives, so its loss is positive and below the global one
    assert base.item() < both.item() < 2 * base.item()


def test_checkpoint_round_trip_and_corruption(rng, tmp_path):
    torch.manual_seed(0)
    enc = SyncEncoder(tiny()).eval()
    path = tmp_path / "m.pt"
    digest = save_checkpoint(enc, path)
    assert (tmp_path / "m.pt.sha256").read_text().split()[0] == digest
    loaded = load_model(path)
    assert loaded.cfg == enc.cfg
    track = fake_track(rng)
    np.testing.assert_allclose(loaded.embed_video(track), LipSyncModel(enc).embed_video(track),
                               atol=1e-6)

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(MediaError, match="corrupt"):
        load_model(path)


def test_average_weights_script_writes_the_mean(tmp_path):
    paths = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"run{seed}.pt")
        save_checkpoint(SyncEncoder(tiny()), paths[-1])
    out = tmp_path / "soup" / "lipsync.pt"
    script = REPO / "scripts" / "average_weights.py"
    subprocess.run([sys.executable, str(script), *map(str, paths), "-o", str(out)], check=True,
                   capture_output=True)
    soup = load_model(out).encoder.state_dict()  # the sha256 beside it checks out too
    runs = [load_model(p).encoder.state_dict() for p in paths]
    for k, v in soup.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, sum(r[k] for r in runs) / 3)

    torch.manual_seed(3)
    other = tmp_path / "other.pt"
    save_checkpoint(SyncEncoder(tiny("landmarks")), other)
    p = subprocess.run([sys.executable, str(script), str(paths[0]), str(other), "-o", str(tmp_path / "x.pt")],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "different configurations" in p.stderr
    assert not (tmp_path / "x.pt").exists()


def test_load_model_missing_files(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        load_model(tmp_path / "nothing.pt")
    enc = SyncEncoder(tiny())
    save_checkpoint(enc, tmp_path / "m.pt")
    (tmp_path / "m.pt.sha256").unlink()
    with pytest.raises(MediaError, match="checksum"):
        load_model(tmp_path / "m.pt")


def test_load_model_rejects_foreign_checkpoint(tmp_path):
    import hashlib

    path = tmp_path / "x.pt"
    torch.save({"something": torch.zeros(3)}, path)
    (tmp_path / "x.pt.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "\n")
    with pytest.raises(MediaError, match="cannot load"):
        load_model(path)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="models/lipsync.pt not trained yet")
def test_shipped_model_loads_and_embeds(rng):
    model = load_model()
    track = fake_track(rng, n=2 * VIDEO_RATE)
    v = model.embed_video(track)
    a = model.embed_audio(rng.normal(-5, 2, (200, N_MELS)).astype(np.float32))
    assert v.shape == (track.n_frames, model.embed_dim)
    assert a.shape == (200, model.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    assert SHIPPED.stat().st_size < 20 * 2**20


def test_embed_video_at_given_times_matches_frames(rng):
    torch.manual_seed(0)
    model = LipSyncModel(SyncEncoder(tiny("landmarks")))
    track = fake_track(rng, fps=25.0)  # frames on the VIDEO_RATE grid: no resampling blur
    own = model.embed_video(track)
    at = model.embed_video(track, times=track.times[[3, 10, 20]])
    np.testing.assert_allclose(at, own[[3, 10, 20]], atol=1e-5)
    grid = model.embed_video(track, times=np.arange(0, 1.0, 0.01))
    assert grid.shape == (100, 8)
    np.testing.assert_allclose(np.linalg.norm(grid, axis=1), 1.0, atol=1e-4)


# ---- the training scripts' data helpers -----------------------------------------------------


def _script(name: str):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_clip_offset_finds_a_planted_offset_and_narrows_for_short_clips():
    clip_offsets = _script("clip_offsets")
    eval_offsets = _script("eval_offsets")
    rng = np.random.default_rng(0)
    fps, n, late = 25.0, 120, 3  # the sound comes 3 frames late
    emb = rng.normal(size=(n + 40, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    times = np.arange(n) / fps
    audio = np.repeat(emb, 4, axis=0)  # FEATURE_RATE = 4 x 25 Hz; audio frame 4k is video frame k
    video = emb[:n]  # picture frame k shows what the (rolled) audio says at k + late
    audio = np.roll(audio, 4 * late, axis=0)
    dist, ok = eval_offsets.offset_distances(video, audio, times, fps)
    offset, confidence, used = clip_offsets.clip_offset(dist, ok, np.ones(n, bool))
    assert offset == late and confidence > 0.5 and used >= clip_offsets.MIN_FRAMES
    # 30 frames: too short for +-15, measured over a narrower range
    dist, ok = eval_offsets.offset_distances(video[:30], audio, times[:30], fps)
    offset, _, used = clip_offsets.clip_offset(dist, ok, np.ones(30, bool))
    assert offset == late and used >= clip_offsets.MIN_FRAMES
    assert clip_offsets.clip_offset(dist[:5], ok[:5], np.ones(5, bool))[2] == 0  # not measured


def test_folds_split_the_clips_in_two_stable_halves():
    in_fold = _script("clip_offsets").in_fold
    names = [f"clip{i}" for i in range(200)]
    first = {n for n in names if in_fold(n, (0, 2))}
    assert first == {n for n in names if not in_fold(n, (1, 2))} and 60 < len(first) < 140
    assert all(in_fold(n, None) for n in names)
    parse_fold = _script("clip_offsets").parse_fold
    assert parse_fold("1/2") == (1, 2)
    for bad in ("2/2", "x/2", "1"):
        with pytest.raises(ValueError, match="K/N"):
            parse_fold(bad)


def test_retime_mel_brings_late_sound_into_sync():
    retime_mel = _script("train").retime_mel
    mel = np.arange(20, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(retime_mel(mel, 0.05)[:, 0], np.arange(5, 20))  # 50 ms late
    early = retime_mel(mel, -0.03)
    assert early.shape == (23, 3) and (early[:3] == 0).all() and (early[3:] == mel).all()
    assert retime_mel(mel, 0.0) is mel


@pytest.mark.parametrize("faces", ["all", "gaps", "one", "none"])
def test_grid_crops_equal_the_whole_resampled_copy(rng, faces):
    from dubalign.model import _GridCrops, standardize_crops, video_grid

    n = 40
    times = np.arange(n) / 29.97
    present = {"all": np.ones(n, bool), "gaps": rng.random(n) < 0.6, "one": np.arange(n) == 7,
               "none": np.zeros(n, bool)}[faces]
    crops = rng.integers(0, 256, (n, CROP_H, CROP_W), dtype=np.uint8)
    grid = video_grid(float(times[-1]))
    whole, _ = resample_track(times, present, standardize_crops(crops), grid)
    lazy = _GridCrops(times, present, crops, grid)
    assert len(lazy) == len(grid)
    np.testing.assert_array_equal(np.asarray(lazy), whole)
    np.testing.assert_array_equal(np.concatenate([lazy[0:5], lazy[5:len(lazy)]]), whole)

"""The lip-sync encoder's forward pass on numpy, and a reader for its weights that needs no torch.

Alignment only runs the trained encoder (:mod:`dubalign.encoder`) in eval mode: no dropout,
BatchNorm with its running statistics (folded into the convolution before it), the erf GELU. That is
a few dozen matrix products, so it runs here on float32 numpy (2-D convolutions as one im2col
product, 1-D ones as one product per kernel tap) and aligning a dub never imports torch, which cost
the bundled example about 2.5 s of CPU and 200 MB of peak memory. The embeddings agree with torch's
to within 1e-6 (tests/test_inference.py).

:func:`read_checkpoint` reads the file ``torch.save`` writes (a zip holding ``<name>/data.pkl`` and
one ``<name>/data/<key>`` entry per tensor storage) with an unpickler that builds plain containers,
numbers, strings and numeric arrays and refuses anything else, as ``torch.load(weights_only=True)``
does. :func:`state_shapes` lists the weights a configuration needs, :func:`fit_state` checks a state
against them, and :class:`NumpyEncoder` runs them.
"""

from __future__ import annotations

import collections
import math
import os
import pickle
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .lips import CROP_H, CROP_W

if TYPE_CHECKING:
    from .model import EncoderConfig

LN_EPS = 1e-5  # torch.nn.LayerNorm's default eps, which the encoder's ChannelNorm was trained with
BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default eps, as in the mouth-crop CNN
CROP_BATCH = 256  # mouth crops per CNN pass: bounds the im2col buffers (about 11 MB at the shipped size)
GELU_CHUNK = 1 << 16  # values per pass of gelu: its four float32 temporaries stay in the CPU cache
# erf(z) ~ z * P(z^2) / Q(z^2) for |z| <= 4 (+-1 beyond, in float32): Eigen's float32 erf
# (generic_fast_erf_float, also XLA's), coefficients of P from z^12 down, of Q from z^8 down
ERF_CLAMP = 4.0
ERF_NUM = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
           -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
ERF_DEN = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
           -1.42647390514189e-02)
# the same in x = z * sqrt 2, with the GELU's 1 / 2 folded into P: erf(x / sqrt 2) / 2 = x * P'(x^2) / Q'(x^2)
_GELU_CLAMP = np.float32(ERF_CLAMP * math.sqrt(2))
_GELU_NUM = tuple(np.float32(c / 2 / math.sqrt(2) / 2 ** (len(ERF_NUM) - 1 - i)) for i, c in enumerate(ERF_NUM))
_GELU_DEN = tuple(np.float32(c / 2 ** (len(ERF_DEN) - 1 - i)) for i, c in enumerate(ERF_DEN))
# the tensor storage classes torch.save names (as torch.<Name>) and their element types
STORAGE_DTYPES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "LongStorage": "i8",
    "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "b1",
}
BATCHES_TRACKED = "num_batches_tracked"  # BatchNorm's step counter: in the state, unused by inference


# ----------------------------------------------------------------------------------------------
# reading torch.save files


def read_checkpoint(path: str | os.PathLike) -> Any:
    """The object ``torch.save`` wrote to ``path``, each tensor a numpy array (native byte order).

    Raises pickle.UnpicklingError for anything but dicts, lists, tuples, strings, numbers and
    tensors of a numeric type, zipfile.BadZipFile for a file that is not a zip, ValueError or
    KeyError for a damaged one.
    """
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise pickle.UnpicklingError("not a torch.save archive: no single <name>/data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        order = "<"  # files without a byteorder record come from little-endian machines
        if prefix + "byteorder" in names:
            order = {b"little": "<", b"big": ">"}[zf.read(prefix + "byteorder").strip()]
        with zf.open(pickles[0]) as f:
            return _WeightsUnpickler(f, zf, prefix, order).load()


@dataclass(frozen=True)
class _StorageType:
    """Stands in for a torch storage class (torch.FloatStorage, ...) inside the pickle."""

    dtype: np.dtype


class _WeightsUnpickler(pickle.Unpickler):
    """Builds tensors as numpy arrays from the archive's storages; refuses every other class."""

    def __init__(self, file, zf: zipfile.ZipFile, prefix: str, order: str):
        super().__init__(file)
        self.zf, self.prefix, self.order = zf, prefix, order
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):  # a tensor's (empty) backward hooks
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(np.dtype(STORAGE_DTYPES[name]))
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid):
        # ("storage", storage class, key of its data/<key> record, device, number of elements)
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and isinstance(pid[4], int)):
            raise pickle.UnpicklingError("unknown persistent id in a weights file")
        kind, key, numel = pid[1], pid[2], pid[4]
        if key not in self.storages:
            data = self.zf.read(f"{self.prefix}data/{key}")
            if len(data) != numel * kind.dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key} holds {len(data)} bytes, not {numel} elements")
            self.storages[key] = np.frombuffer(data, dtype=kind.dtype.newbyteorder(self.order))
        return self.storages[key]


def _rebuild_tensor(storage, offset, size, stride, *_) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2 on numpy: a copy of the strided view of ``storage``."""
    if not isinstance(storage, np.ndarray) or not all(
        isinstance(v, int) and v >= 0 for v in (offset, *size, *stride)
    ) or len(size) != len(stride):
        raise pickle.UnpicklingError("malformed tensor in a weights file")
    size, stride = tuple(size), tuple(stride)
    if math.prod(size) == 0:
        return np.zeros(size, storage.dtype.newbyteorder("="))
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= len(storage):
        raise pickle.UnpicklingError("a tensor reaches past its storage in a weights file")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], size, [s * item for s in stride], writeable=False)
    return np.array(view, dtype=storage.dtype.newbyteorder("="))


def _rebuild_parameter(data, requires_grad, backward_hooks, *_) -> np.ndarray:
    """torch._utils._rebuild_parameter: an nn.Parameter is its data here."""
    if not isinstance(data, np.ndarray):
        raise pickle.UnpicklingError("malformed parameter in a weights file")
    return data


# ----------------------------------------------------------------------------------------------
# the weights a configuration needs


def state_shapes(cfg: EncoderConfig) -> dict[str, tuple[int, ...]]:
    """The weights of a :class:`dubalign.encoder.SyncEncoder` built with ``cfg``: its state_dict
    keys and their shapes (tests/test_inference.py checks them against torch's)."""
    shapes: dict[str, tuple[int, ...]] = {"logit_scale": ()}
    n_video = cfg.n_lip if cfg.uses_lips else 0
    if cfg.uses_crops:
        c_in, h, w = 1, CROP_H // cfg.crop_pool, CROP_W // cfg.crop_pool
        for i, c in enumerate(cfg.crop_channels):
            k = 5 if i == 0 else 3  # as CropCNN: a wider first kernel on the raw pixels
            conv, bn = f"crop_cnn.convs.{3 * i}.", f"crop_cnn.convs.{3 * i + 1}."  # conv, BatchNorm, GELU
            shapes |= {conv + "weight": (c, c_in, k, k), conv + "bias": (c,)}
            shapes |= {bn + n: (c,) for n in ("weight", "bias", "running_mean", "running_var")}
            shapes[bn + BATCHES_TRACKED] = ()
            c_in, h, w = c, -(-h // 2), -(-w // 2)  # stride 2, 'same' padding
        shapes |= {"crop_cnn.fc.weight": (cfg.crop_dim, c_in * h * w), "crop_cnn.fc.bias": (cfg.crop_dim,)}
        n_video += cfg.crop_dim
    for part, n_in, dilations in (("video", n_video, cfg.video_dilations), ("audio", cfg.n_mels, cfg.audio_dilations)):
        c = cfg.width
        shapes |= {f"{part}.inp.weight": (c, n_in, 5), f"{part}.inp.bias": (c,)}
        for b in range(len(dilations)):
            p = f"{part}.blocks.{b}."
            shapes |= {p + "norm.ln.weight": (c,), p + "norm.ln.bias": (c,), p + "conv.weight": (c, c, 3),
                       p + "conv.bias": (c,), p + "proj.weight": (c, c, 1), p + "proj.bias": (c,)}
        shapes |= {f"{part}.norm.ln.weight": (c,), f"{part}.norm.ln.bias": (c,),
                   f"{part}.out.weight": (cfg.embed_dim, c, 1), f"{part}.out.bias": (cfg.embed_dim,)}
    return shapes


def fit_state(state: Any, cfg: EncoderConfig) -> dict[str, np.ndarray]:
    """``state`` (name -> numeric array) checked against :func:`state_shapes` of ``cfg``, the way
    torch's strict ``load_state_dict`` checks it: the same names, the same shapes. Weights come
    back float32, BatchNorm step counters int64. Raises ValueError naming the first misfit.
    """
    shapes = state_shapes(cfg)
    if not isinstance(state, dict) or set(state) != set(shapes):
        have = set(state) if isinstance(state, dict) else set()
        raise ValueError(f"missing {sorted(set(shapes) - have)[:3]}, unexpected {sorted(have - set(shapes))[:3]}")
    out = {}
    for name, shape in shapes.items():
        v = state[name]
        if not isinstance(v, np.ndarray) or v.dtype.kind not in "biuf" or v.shape != shape:
            raise ValueError(f"{name}: expected shape {shape}")
        out[name] = v.astype(np.int64 if name.endswith(BATCHES_TRACKED) else np.float32)
    return out


# ----------------------------------------------------------------------------------------------
# the forward pass


@dataclass(frozen=True)
class _Conv:
    """A convolution's weights as one matrix, w [shape=(k * k * c_in or k * c_in, c_out)] with the
    kernel taps major and c_in minor (the im2col order of :func:`conv2d`), b [shape=(c_out,)]."""

    w: np.ndarray
    b: np.ndarray
    k: int  # kernel size (square in 2-D)
    dilation: int = 1  # 1-D only
    stride: int = 1  # 2-D only


@dataclass(frozen=True)
class _Block:
    """TemporalBlock: x + proj(gelu(conv(layer_norm(x))))."""

    norm: tuple[np.ndarray, np.ndarray]  # LayerNorm (weight, bias) over channels
    conv: _Conv
    proj: _Conv


@dataclass(frozen=True)
class _Temporal:
    """TemporalEncoder: inp, the blocks, then out(gelu(layer_norm(.))) as unit vectors."""

    inp: _Conv
    blocks: tuple[_Block, ...]
    norm: tuple[np.ndarray, np.ndarray]
    out: _Conv


class NumpyEncoder:
    """The trained :class:`dubalign.encoder.SyncEncoder` in eval mode, one clip at a time, float32.

    cfg : its EncoderConfig; state : its weights as :func:`fit_state` returns them (kept as they
    are: :class:`dubalign.model.LipSyncModel` builds the torch encoder from them for adaptation).
    """

    def __init__(self, cfg: EncoderConfig, state: dict[str, np.ndarray]):
        self.cfg = cfg
        self.state = state
        self.logit_scale = float(state["logit_scale"])
        self.video = _temporal(state, "video", cfg.video_dilations)
        self.audio = _temporal(state, "audio", cfg.audio_dilations)
        if cfg.uses_crops:
            self.crop_convs = tuple(_crop_conv(state, 3 * i) for i in range(len(cfg.crop_channels)))
            # fc takes torch's (C, h, w) flattening; the convolutions here give (h, w, C)
            fc = state["crop_cnn.fc.weight"]  # (crop_dim, C * h * w)
            c = cfg.crop_channels[-1]
            fc = fc.reshape(len(fc), c, -1).transpose(0, 2, 1).reshape(len(fc), -1)
            self.crop_fc = _Conv(np.ascontiguousarray(fc.T), state["crop_cnn.fc.bias"], 1)

    def embed_video(self, lips: np.ndarray | None, crops: np.ndarray | None) -> np.ndarray:
        """lips [shape=(T, n_lip)] z-scored and/or crops [shape=(T, CROP_H, CROP_W)] standardised,
        as the design uses them. Returns [shape=(T, embed_dim)] float32 unit rows."""
        parts = []
        if self.cfg.uses_lips:
            parts.append(np.asarray(lips, np.float32))
        if self.cfg.uses_crops:
            parts.append(self.crop_features(crops))
        return _run_temporal(np.concatenate(parts, axis=1), self.video)

    def embed_audio(self, mel: np.ndarray) -> np.ndarray:
        """mel [shape=(T_a, n_mels)] normalised per utterance. Returns [shape=(T_a, embed_dim)] float32 unit rows."""
        return _run_temporal(np.asarray(mel, np.float32), self.audio)

    def crop_features(self, crops: np.ndarray) -> np.ndarray:
        """The mouth-crop CNN: crops [shape=(N, H, W)] -> [shape=(N, crop_dim)], CROP_BATCH at a time.

        ``crops`` may be anything sliced into arrays (model._GridCrops makes its rows per slice)."""
        out = np.empty((len(crops), self.cfg.crop_dim), np.float32)
        for s in range(0, len(crops), CROP_BATCH):
            batch = np.asarray(crops[s:s + CROP_BATCH], np.float32)
            x = avg_pool(batch, self.cfg.crop_pool)[..., None]  # (n, h, w, 1)
            for conv in self.crop_convs:
                x = gelu(conv2d(x, conv))  # (n, h / 2, w / 2, c)
            out[s:s + len(x)] = x.reshape(len(x), -1) @ self.crop_fc.w + self.crop_fc.b
        return out


def _conv1d_weights(state: dict[str, np.ndarray], name: str, dilation: int = 1) -> _Conv:
    w = state[name + ".weight"]  # (c_out, c_in, k) -> (k * c_in, c_out), kernel tap major
    k = w.shape[2]
    return _Conv(np.ascontiguousarray(w.transpose(2, 1, 0).reshape(k * w.shape[1], w.shape[0])),
                 state[name + ".bias"], k, dilation=dilation)


def _temporal(state: dict[str, np.ndarray], part: str, dilations: tuple[int, ...]) -> _Temporal:
    def norm(name: str) -> tuple[np.ndarray, np.ndarray]:
        return state[name + ".ln.weight"], state[name + ".ln.bias"]

    blocks = tuple(
        _Block(norm(f"{part}.blocks.{i}.norm"), _conv1d_weights(state, f"{part}.blocks.{i}.conv", d),
               _conv1d_weights(state, f"{part}.blocks.{i}.proj"))
        for i, d in enumerate(dilations)
    )
    return _Temporal(_conv1d_weights(state, f"{part}.inp"), blocks, norm(f"{part}.norm"),
                     _conv1d_weights(state, f"{part}.out"))


def _crop_conv(state: dict[str, np.ndarray], i: int) -> _Conv:
    """Conv2d i of the mouth-crop CNN with the BatchNorm after it folded in (running statistics)."""
    conv, bn = f"crop_cnn.convs.{i}.", f"crop_cnn.convs.{i + 1}."
    w = state[conv + "weight"].astype(np.float64)  # (c_out, c_in, k, k)
    scale = state[bn + "weight"] / np.sqrt(state[bn + "running_var"].astype(np.float64) + BN_EPS)
    b = (state[conv + "bias"] - state[bn + "running_mean"]) * scale + state[bn + "bias"]
    k = w.shape[2]
    w = (w * scale[:, None, None, None]).transpose(2, 3, 1, 0).reshape(k * k * w.shape[1], w.shape[0])
    return _Conv(np.ascontiguousarray(w, np.float32), b.astype(np.float32), k, stride=2)


def _run_temporal(x: np.ndarray, enc: _Temporal) -> np.ndarray:
    """TemporalEncoder.forward: x [shape=(T, n_in)] -> [shape=(T, embed_dim)] unit rows."""
    h = conv1d(x, enc.inp)  # (T, C)
    for block in enc.blocks:
        h = h + conv1d(gelu(conv1d(layer_norm(h, *block.norm), block.conv)), block.proj)
    e = conv1d(gelu(layer_norm(h, *enc.norm)), enc.out)  # (T, E)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)  # F.normalize's floor


def conv1d(x: np.ndarray, conv: _Conv) -> np.ndarray:
    """Conv1d with zero padding dilation * (k // 2) (same length): x [shape=(T, c_in)] -> [shape=(T, c_out)].

    One matrix product per kernel tap on the rows that tap reaches, added up: no padded copy and
    no im2col matrix (which cost a fifth more here).
    """
    t, c = x.shape
    taps = conv.w.reshape(conv.k, c, -1)  # (k, c_in, c_out)
    mid = conv.k // 2
    y = x @ taps[mid]
    for j in range(conv.k):
        o = (j - mid) * conv.dilation  # output row r reads input row r + o
        if j == mid or abs(o) >= t:
            continue
        if o < 0:
            y[-o:] += x[:t + o] @ taps[j]
        else:
            y[:t - o] += x[o:] @ taps[j]
    y += conv.b
    return y


def conv2d(x: np.ndarray, conv: _Conv) -> np.ndarray:
    """Conv2d with zero padding k // 2: x [shape=(N, H, W, c_in)] -> [shape=(N, H_out, W_out, c_out)]."""
    n, h, w, c = x.shape
    k, s, p = conv.k, conv.stride, conv.k // 2
    xp = np.zeros((n, h + 2 * p, w + 2 * p, c), np.float32)
    xp[:, p:p + h, p:p + w] = x
    # im2col: one row per output pixel, (k, k, c_in) inside it; the reshape makes the one copy, and
    # with c_in innermost it copies runs of k * c_in values (separate tap copies ran 2-3 times slower)
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::s, ::s]  # (N, ho, wo, c, k, k)
    ho, wo = win.shape[1:3]
    cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, k * k * c)
    y = cols @ conv.w
    y += conv.b
    return y.reshape(n, ho, wo, -1)


def avg_pool(x: np.ndarray, p: int) -> np.ndarray:
    """avg_pool2d(x, p) of x [shape=(N, H, W)]: p x p blocks averaged, edge rows that do not fill one dropped."""
    if p == 1:
        return x
    n, h, w = x.shape
    h, w = h // p * p, w // p * p
    cols = x[:, :h, 0:w:p].copy()  # sums along W, then along H: strided adds, several times faster
    for j in range(1, p):  # than a mean over reshaped axes
        cols += x[:, :h, j:w:p]
    out = cols[:, 0::p].copy()
    for i in range(1, p):
        out += cols[:, i::p]
    out *= np.float32(1 / (p * p))
    return out


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """LayerNorm over the last axis (the channels) of x [shape=(T, C)], biased variance, LN_EPS."""
    xc = x - x.mean(axis=-1, keepdims=True)
    var = np.einsum("tc,tc->t", xc, xc)[:, None]
    var *= np.float32(1 / x.shape[-1])
    var += np.float32(LN_EPS)
    xc *= 1 / np.sqrt(var)
    xc *= weight
    xc += bias
    return xc


def gelu(x: np.ndarray) -> np.ndarray:
    """The erf GELU (torch's default, not its tanh approximation), x * (1 + erf(x / sqrt 2)) / 2,
    computed in place of ``x`` (float32) and returned.

    erf is Eigen's float32 rational approximation (ERF_NUM / ERF_DEN): within 2e-7 of the exact
    erf, as close as float32 holds it, at a quarter of the time of scipy.special.erf (which works
    in float64). The GELU's 1 / sqrt 2 and 1 / 2 are folded into the coefficients, and it runs over
    GELU_CHUNK values at a time so that its temporaries stay in the CPU cache.
    """
    x = np.ascontiguousarray(x, np.float32)
    flat = x.reshape(-1)
    n = min(GELU_CHUNK, flat.size)
    bufs = [np.empty(n, np.float32) for _ in range(4)]
    for s in range(0, flat.size, GELU_CHUNK):
        v = flat[s:s + GELU_CHUNK]
        vc, v2, p, q = (b[:len(v)] for b in bufs)
        np.clip(v, -_GELU_CLAMP, _GELU_CLAMP, out=vc)
        np.multiply(vc, vc, out=v2)
        np.multiply(v2, _GELU_NUM[0], out=p)  # Horner in x^2: p odd (times x below), q even
        p += _GELU_NUM[1]
        for c in _GELU_NUM[2:]:
            p *= v2
            p += c
        p *= vc
        np.multiply(v2, _GELU_DEN[0], out=q)
        q += _GELU_DEN[1]
        for c in _GELU_DEN[2:]:
            q *= v2
            q += c
        p /= q  # erf(x / sqrt 2) / 2
        p += np.float32(0.5)
        v *= p
    return x

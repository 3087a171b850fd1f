"""Image-to-image translation data: two real tasks built from Fashion-MNIST on disk,
and pix2pix / CycleGAN folder loaders for users' own data sets.

* ``fashion_edges`` (paired, pix2pix-style): A = the edge map of a Fashion-MNIST
  garment (Sobel gradient magnitude of the real image, thresholded per image),
  B = the garment itself. Like edges2shoes, the generator has to fill in
  texture and shading from a line drawing.
* ``fashion_classes`` (unpaired, CycleGAN-style): domain A and domain B are two
  Fashion-MNIST classes (default: sneaker (7) -> ankle boot (9)); the images of
  the two domains are different garments, never aligned.
* ``aligned_folder``: pix2pix's layout, one image per pair with A and B side by
  side (``A|B``), under ``root/train``, ``root/val`` (optional) and ``root/test``.
* ``unaligned_folder``: CycleGAN's layout, ``root/trainA``, ``root/trainB``,
  ``root/testA``, ``root/testB``.

The Fashion-MNIST tasks are generated from the IDX files of Debian's
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) by
``hwaml-gan-compress data`` (or on first use) and cached as ``.npz`` under
``$HWAML_CACHE_DIR/gan_compress``. Images are float tensors in [-1, 1], NCHW.

Splits: ``train`` and ``val`` are disjoint slices of the training set (``val``
is the held-out slice the search scores candidates on), ``test`` comes from the
test set and is used only for final figures.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = [
    "DataConfig",
    "DataError",
    "SOURCES",
    "TranslationData",
    "cache_dir",
    "edge_map",
    "load_data",
    "read_idx",
    "read_fashion_mnist",
    "load_aligned_folder",
    "load_unaligned_folder",
]

SOURCES = ("fashion_edges", "fashion_classes", "aligned_folder", "unaligned_folder")
PAIRED_SOURCES = ("fashion_edges", "aligned_folder")
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
FASHION_SIDE = 28
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class DataError(ValueError):
    """A data set that cannot be read or does not fit the task (names the file or folder)."""


def cache_dir() -> Path:
    return Path(os.environ.get("HWAML_CACHE_DIR", Path.home() / ".cache" / "hwaml")) / "gan_compress"


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from (``data:`` in the evaluator's config).

    :param source: one of :data:`SOURCES`.
    :param root: the folder of ``aligned_folder`` / ``unaligned_folder``;
        for the Fashion-MNIST tasks, the folder of the IDX files.
    :param classes: ``fashion_classes``: the Fashion-MNIST labels of domain A and domain B.
    :param n_train: training images (pairs, or images per domain); ``None``: all.
    :param n_val: held-out training images the search scores candidates on.
    :param n_test: test images (figures of the final generator).
    :param image_size: the square side of the images, a multiple of 4. Folder data: images
        are resized to it (``None``: 64). Fashion-MNIST tasks: ``None`` keeps the native
        28x28; a larger side upsamples each garment (bicubic) before the edge map is
        computed, so ``fashion_edges`` at 64 or 128 is the same task at a higher resolution.
    :param channels: folder data: 1 (grayscale) or 3 (RGB).
    :param edge_threshold: ``fashion_edges``: a pixel is an edge where the gradient
        magnitude exceeds this fraction of the image's largest.
    :param seed: the shuffle that picks the slices.
    """

    source: str = "fashion_edges"
    root: Optional[str] = None
    classes: List[int] = field(default_factory=lambda: [7, 9])
    n_train: Optional[int] = 4000
    n_val: int = 500
    n_test: int = 500
    image_size: Optional[int] = None
    channels: int = 3
    edge_threshold: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise DataError(f"data.source: {self.source!r} is not one of {SOURCES}")
        if self.source in ("aligned_folder", "unaligned_folder") and not self.root:
            raise DataError(f"data.source={self.source} needs data.root (the data set's folder)")
        if self.image_size is not None and (self.image_size < 4 or self.image_size % 4):
            raise DataError(f"data.image_size={self.image_size}: the ResNet generators need a multiple of 4")
        if self.channels not in (1, 3):
            raise DataError(f"data.channels={self.channels}: 1 (grayscale) or 3 (RGB)")
        if self.source == "fashion_classes" and (len(self.classes) != 2 or len(set(self.classes)) != 2 or not all(0 <= c < 10 for c in self.classes)):
            raise DataError(f"data.classes={list(self.classes)}: two different Fashion-MNIST labels in 0..9")
        if self.n_val < 2 or self.n_test < 2:
            raise DataError(f"data.n_val={self.n_val}, data.n_test={self.n_test}: at least 2 images each")

    @property
    def paired(self) -> bool:
        return self.source in PAIRED_SOURCES

    @property
    def side(self) -> int:
        """The images' side: ``image_size``, or 28 (Fashion-MNIST) / 64 (folders) when unset."""
        if self.image_size is not None:
            return int(self.image_size)
        return FASHION_SIDE if self.source in ("fashion_edges", "fashion_classes") else 64


@dataclass
class TranslationData:
    """The splits of one translation task (tensors in [-1, 1], NCHW).

    Paired tasks: ``*_a[i]`` and ``*_b[i]`` are one pair. Unpaired tasks: the
    two domains, not aligned and not necessarily of equal size.
    """

    paired: bool
    train_a: torch.Tensor
    train_b: torch.Tensor
    val_a: torch.Tensor
    val_b: torch.Tensor
    test_a: torch.Tensor
    test_b: torch.Tensor
    description: str = ""

    @property
    def input_nc(self) -> int:
        return int(self.train_a.shape[1])

    @property
    def output_nc(self) -> int:
        return int(self.train_b.shape[1])

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        return tuple(int(s) for s in self.train_a.shape[1:])  # type: ignore[return-value]


# -- IDX -------------------------------------------------------------------------


def read_idx(path: Any) -> np.ndarray:
    """An IDX file (MNIST format, gzip or plain) as a numpy array of unsigned bytes."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such IDX file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip stream ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: byte 0: not an IDX file (magic {raw[:4].hex()})")
    if raw[2] != 0x08:
        raise DataError(f"{path}: byte 2: element type 0x{raw[2]:02x}, expected unsigned bytes (0x08)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: byte {len(raw)}: file ends inside the {ndim} dimensions")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    count = int(np.prod(dims)) if dims else 0
    start = 4 + 4 * ndim
    if len(raw) - start != count:
        raise DataError(f"{path}: byte {start}: {len(raw) - start} data bytes for dimensions {dims} ({count} expected)")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


def read_fashion_mnist(root: Optional[str] = None, split: str = "train") -> Tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels uint8 [N]) of Fashion-MNIST's ``train`` or ``t10k`` split."""
    root_path = Path(root or FASHION_DIR)
    prefix = "train" if split == "train" else "t10k"

    def find(kind: str) -> Path:
        for name in (f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz", f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"):
            if (root_path / name).is_file():
                return root_path / name
        raise DataError(
            f"{root_path}: no Fashion-MNIST {prefix} {kind} file (install Debian's dataset-fashion-mnist, or set data.root to a folder with the IDX files)"
        )

    images, labels = read_idx(find("images")), read_idx(find("labels"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{root_path}: {prefix} images {images.shape} and labels {labels.shape} do not match")
    return images, labels


def edge_map(images: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Binary edge maps (1 = edge) of uint8/float images [N, H, W]: Sobel gradient
    magnitude above ``threshold`` times each image's largest magnitude."""
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    gx = (p[:, :-2, 2:] + 2 * p[:, 1:-1, 2:] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, 1:-1, :-2] + p[:, 2:, :-2])
    gy = (p[:, 2:, :-2] + 2 * p[:, 2:, 1:-1] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, :-2, 1:-1] + p[:, :-2, 2:])
    mag = np.sqrt(gx * gx + gy * gy)
    top = mag.reshape(len(mag), -1).max(axis=1).reshape(-1, 1, 1)
    return (mag > threshold * np.maximum(top, 1e-8)).astype(np.float32)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] or [N, H, W, C] / float [0,1] -> float [-1, 1] NCHW."""
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    if x.ndim == 3:
        x = x[:, None]
    else:
        x = x.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x * 2.0 - 1.0))


def _slices(n: int, n_train: Optional[int], n_val: int, seed: int, what: str) -> Tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    if n_val >= n:
        raise DataError(f"{what}: {n} images, not enough for data.n_val={n_val} held out plus training images")
    val = order[:n_val]
    rest = order[n_val:]
    return (rest if n_train is None else rest[:n_train]), val


def _fashion_key(cfg: DataConfig) -> str:
    keep = {k: v for k, v in asdict(cfg).items() if k not in ("image_size", "channels")}
    if cfg.side != FASHION_SIDE:
        keep["image_size"] = cfg.side  # native-size caches keep their names
    return hashlib.sha1(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:10]


def upsample(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 images [N, H, W] resized (bicubic) to [N, side, side]; unchanged when already that size."""
    if images.shape[1:] == (side, side):
        return np.ascontiguousarray(images)
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.BICUBIC)) for im in images])


def build_fashion(cfg: DataConfig) -> Dict[str, np.ndarray]:
    """The arrays of a Fashion-MNIST task (uint8 images at ``cfg.side``; ``*_a`` edge maps as
    0/255 for ``fashion_edges``, computed on the (upsampled) garment)."""
    train_x, train_y = read_fashion_mnist(cfg.root, "train")
    test_x, test_y = read_fashion_mnist(cfg.root, "test")
    out: Dict[str, np.ndarray] = {}
    if cfg.source == "fashion_edges":
        tr, va = _slices(len(train_x), cfg.n_train, cfg.n_val, cfg.seed, "fashion_edges train split")
        te = np.random.default_rng(cfg.seed + 1).permutation(len(test_x))[: cfg.n_test]
        for split, imgs in (("train", train_x[tr]), ("val", train_x[va]), ("test", test_x[te])):
            imgs = upsample(imgs, cfg.side)
            out[f"{split}_a"] = (edge_map(imgs, cfg.edge_threshold) * 255).astype(np.uint8)
            out[f"{split}_b"] = imgs
    else:
        for dom, label in zip("ab", cfg.classes):
            xs = train_x[train_y == label]
            tr, va = _slices(len(xs), cfg.n_train, cfg.n_val, cfg.seed + (0 if dom == "a" else 7), f"class {label} of the train split")
            txs = test_x[test_y == label]
            te = np.random.default_rng(cfg.seed + 1).permutation(len(txs))[: cfg.n_test]
            out[f"train_{dom}"], out[f"val_{dom}"], out[f"test_{dom}"] = (upsample(x, cfg.side) for x in (xs[tr], xs[va], txs[te]))
    return out


def fashion_cache_path(cfg: DataConfig) -> Path:
    return cache_dir() / f"data_{cfg.source}_{_fashion_key(cfg)}.npz"


def load_fashion(cfg: DataConfig, rebuild: bool = False) -> TranslationData:
    """A Fashion-MNIST task, from its cache file (built first when missing)."""
    path = fashion_cache_path(cfg)
    if rebuild or not path.is_file():
        arrays = build_fashion(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays, meta=np.frombuffer(json.dumps(asdict(cfg)).encode(), dtype=np.uint8))
        os.replace(tmp, path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
    if cfg.source == "fashion_edges":
        desc = f"Fashion-MNIST edges -> garments ({len(arrays['train_a'])} train pairs, {len(arrays['val_a'])} held out, {len(arrays['test_a'])} test)"
    else:
        a, b = (FASHION_CLASSES[c] for c in cfg.classes)
        desc = f"Fashion-MNIST {a} -> {b}, unpaired ({len(arrays['train_a'])}/{len(arrays['train_b'])} train, {len(arrays['val_a'])} held out per domain)"
    t = {k: _to_tensor(v) for k, v in arrays.items()}
    return TranslationData(cfg.paired, t["train_a"], t["train_b"], t["val_a"], t["val_b"], t["test_a"], t["test_b"], desc)


# -- folders -----------------------------------------------------------------------


def _image_files(folder: Path) -> List[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _read_image(path: Path, channels: int):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from exc


def _stack(images: Sequence[Any], size: int) -> torch.Tensor:
    from PIL import Image

    arrays = [np.asarray(im.resize((size, size), Image.BICUBIC)) for im in images]
    return _to_tensor(np.stack(arrays))


def load_aligned_folder(cfg: DataConfig) -> TranslationData:
    """pix2pix ``aligned`` data: ``root/train`` (``val`` optional, else held out from train) and ``root/test``,
    each image ``A|B`` side by side (width = 2 x height)."""
    root = Path(cfg.root or "")

    def split(name: str) -> Tuple[torch.Tensor, torch.Tensor]:
        a_list, b_list = [], []
        for path in _image_files(root / name):
            im = _read_image(path, cfg.channels)
            w, h = im.size
            if w < 2 or w % 2:
                raise DataError(f"{path}: an aligned image is A and B side by side; its width {w} is not even")
            a_list.append(im.crop((0, 0, w // 2, h)))
            b_list.append(im.crop((w // 2, 0, w, h)))
        return _stack(a_list, cfg.side), _stack(b_list, cfg.side)

    train_a, train_b = split("train")
    if (root / "val").is_dir():
        val_a, val_b = split("val")
    else:
        tr, va = _slices(len(train_a), None, cfg.n_val, cfg.seed, f"{root}/train")
        train_a, train_b, val_a, val_b = train_a[tr], train_b[tr], train_a[va], train_b[va]
    if cfg.n_train is not None:
        train_a, train_b = train_a[: cfg.n_train], train_b[: cfg.n_train]
    test_a, test_b = split("test") if (root / "test").is_dir() else (val_a, val_b)
    return TranslationData(True, train_a, train_b, val_a, val_b, test_a[: cfg.n_test], test_b[: cfg.n_test], f"aligned folder {root} ({len(train_a)} train pairs)")


def load_unaligned_folder(cfg: DataConfig) -> TranslationData:
    """CycleGAN ``unaligned`` data: ``root/trainA``, ``root/trainB``, optional ``testA``/``testB``."""
    root = Path(cfg.root or "")
    out: Dict[str, torch.Tensor] = {}
    for dom in "AB":
        imgs = _stack([_read_image(p, cfg.channels) for p in _image_files(root / f"train{dom}")], cfg.side)
        tr, va = _slices(len(imgs), cfg.n_train, cfg.n_val, cfg.seed + ord(dom), f"{root}/train{dom}")
        out[f"train_{dom}"], out[f"val_{dom}"] = imgs[tr], imgs[va]
        test_dir = root / f"test{dom}"
        out[f"test_{dom}"] = (_stack([_read_image(p, cfg.channels) for p in _image_files(test_dir)], cfg.side) if test_dir.is_dir() else imgs[va])[: cfg.n_test]
    return TranslationData(
        False, out["train_A"], out["train_B"], out["val_A"], out["val_B"], out["test_A"], out["test_B"], f"unaligned folder {root} ({len(out['train_A'])}/{len(out['train_B'])} train)"
    )


def load_data(cfg: DataConfig) -> TranslationData:
    if cfg.source in ("fashion_edges", "fashion_classes"):
        return load_fashion(cfg)
    if cfg.source == "aligned_folder":
        return load_aligned_folder(cfg)
    return load_unaligned_folder(cfg)

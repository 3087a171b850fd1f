"""Source and target datasets, all real data read from disk (nothing downloaded).

- ``fashion_0_4`` (the pretraining source) and ``fashion_5_9`` (a target): classes
  0-4 and 5-9 of Fashion-MNIST, from the IDX files of Debian's
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``);
- ``digits``: scikit-learn's 8x8 handwritten digits, upsampled bilinearly;
- ``letters``: the letters A-J rendered from the system's TrueType fonts
  (DejaVu: sans, serif, mono, condensed, bold and oblique faces) with a random
  affine jitter per image, a character-recognition target unlike clothing;
- ``imagefolder``: a user's folder of class sub-folders (``root/train/<class>/*``
  and optionally ``root/val/<class>/*``, or ``root/<class>/*`` split here), so
  Flowers / Cars / Pets folders work as targets.

Every image becomes a float tensor ``(C, R, R)`` normalised to mean 0.5, scale
0.25 per pixel value in [0, 1].
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Split", "TargetData", "TARGETS", "SOURCES", "load_target", "load_imagefolder", "fashion_classes", "FASHION_ROOT"]

FASHION_ROOT = "/usr/share/datasets/fashion-mnist"
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype", "/usr/share/fonts")
TARGETS = ("fashion_5_9", "digits", "letters", "imagefolder")
SOURCES = ("fashion_0_4",)
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class TargetData:
    name: str
    train: Split
    val: Split
    test: Split
    n_classes: int
    classes: List[str]


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) / 0.25


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)


def _channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1).contiguous()
    if channels == 1:
        return x.mean(1, keepdim=True)
    raise ValueError(f"cannot turn {x.shape[1]}-channel images into {channels}-channel ones")


def _per_class(y: np.ndarray, classes: Sequence[int], n: Optional[int], rng: np.random.Generator, exclude: Optional[np.ndarray] = None) -> np.ndarray:
    picked = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        if exclude is not None:
            idx = np.setdiff1d(idx, exclude)
        idx = rng.permutation(idx)
        if n is not None:
            if len(idx) < n:
                raise ValueError(f"class {c} has {len(idx)} images, {n} requested")
            idx = idx[:n]
        picked.append(idx)
    return np.sort(np.concatenate(picked))


def _fashion_arrays(root: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    paths = []
    for kind in ("images-idx3", "labels-idx1"):
        gz, plain = Path(root) / f"{prefix}-{kind}-ubyte.gz", Path(root) / f"{prefix}-{kind}-ubyte"
        if gz.is_file():
            paths.append(gz)
        elif plain.is_file():
            paths.append(plain)
        else:
            raise FileNotFoundError(f"Fashion-MNIST file {gz} not found (install Debian's dataset-fashion-mnist or set data.root)")
    images, labels = paths
    from hwaml_ofa_nas.idx import read_labelled_pair

    x, y = read_labelled_pair(images, labels)
    return np.asarray(x), np.asarray(y).astype(np.int64)


def fashion_classes(
    classes: Sequence[int], n_train: Optional[int], n_val: int, n_test: Optional[int], resolution: int, channels: int, seed: int, root: str = FASHION_ROOT
) -> TargetData:
    """Fashion-MNIST restricted to ``classes`` (relabelled 0..k-1): ``n_train`` and
    ``n_val`` disjoint images per class from the training file, ``n_test`` per class
    from the test file (None: all)."""
    rng = np.random.default_rng(seed)
    xtr, ytr = _fashion_arrays(root, "train")
    xte, yte = _fashion_arrays(root, "test")
    val_idx = _per_class(ytr, classes, n_val, rng)
    tr_idx = _per_class(ytr, classes, n_train, rng, exclude=val_idx)
    te_idx = _per_class(yte, classes, n_test, rng)
    remap = {c: i for i, c in enumerate(classes)}

    def make(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> Split:
        t = torch.from_numpy(np.ascontiguousarray(x[idx])).float().div_(255.0).unsqueeze(1)
        t = _normalise(_channels(_resize(t, resolution), channels))
        return Split(t, torch.as_tensor([remap[int(v)] for v in y[idx]], dtype=torch.long))

    names = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    return TargetData(
        f"fashion_{classes[0]}_{classes[-1]}",
        make(xtr, ytr, tr_idx),
        make(xtr, ytr, val_idx),
        make(xte, yte, te_idx),
        len(classes),
        [names[c] for c in classes],
    )


def _split_arrays(x: torch.Tensor, y: torch.Tensor, n_classes: int, n_train: Optional[int], n_val: int, seed: int) -> Tuple[Split, Split, Split]:
    """Per class: ``n_val`` validation images, ``n_train`` training images, the rest test."""
    rng = np.random.default_rng(seed)
    yn = y.numpy()
    tr, va, te = [], [], []
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(yn == c))
        need = n_val + (n_train or 0) + 1
        if len(idx) < need:
            raise ValueError(f"class {c} has {len(idx)} images; n_val={n_val}, n_train={n_train} and a test image need {need}")
        va.append(idx[:n_val])
        rest = idx[n_val:]
        k = len(rest) // 2 if n_train is None else n_train
        tr.append(rest[:k])
        te.append(rest[k:])
    pick = lambda parts: np.sort(np.concatenate(parts))  # noqa: E731
    return tuple(Split(x[pick(p)], y[pick(p)]) for p in (tr, va, te))  # type: ignore[return-value]


def digits(n_train: Optional[int], n_val: int, resolution: int, channels: int, seed: int) -> TargetData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float().div_(16.0).unsqueeze(1)
    x = _normalise(_channels(_resize(x, resolution), channels))
    y = torch.from_numpy(d.target).long()
    tr, va, te = _split_arrays(x, y, 10, n_train, n_val, seed)
    return TargetData("digits", tr, va, te, 10, [str(i) for i in range(10)])


def _font_files(font_dir: Optional[str]) -> List[str]:
    dirs = [font_dir] if font_dir else list(FONT_DIRS)
    for d in dirs:
        files = sorted(f for f in glob.glob(os.path.join(d, "**", "*.ttf"), recursive=True) if "Math" not in os.path.basename(f))
        if files:
            return files
    raise FileNotFoundError(f"no TrueType fonts under {dirs} for the letters target (install fonts-dejavu-core or set font_dir)")


def render_letters(n_per_class: int, resolution: int, seed: int, font_dir: Optional[str] = None, letters: str = "ABCDEFGHIJ") -> Tuple[torch.Tensor, torch.Tensor]:
    """``n_per_class`` images of each letter, a random font face, size, rotation
    and offset per image (white glyph on black, like the other sources)."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    fonts = _font_files(font_dir)
    canvas = 64
    xs, ys = [], []
    for label, ch in enumerate(letters):
        for _ in range(n_per_class):
            font = ImageFont.truetype(fonts[int(rng.integers(len(fonts)))], int(rng.integers(30, 46)))
            img = Image.new("L", (canvas, canvas), 0)
            draw = ImageDraw.Draw(img)
            box = draw.textbbox((0, 0), ch, font=font)
            w, h = box[2] - box[0], box[3] - box[1]
            ox = (canvas - w) / 2 - box[0] + rng.uniform(-5, 5)
            oy = (canvas - h) / 2 - box[1] + rng.uniform(-5, 5)
            draw.text((ox, oy), ch, fill=255, font=font)
            img = img.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR)
            img = img.resize((resolution, resolution), Image.BILINEAR)
            xs.append(np.asarray(img, dtype=np.float32) / 255.0)
            ys.append(label)
    return torch.from_numpy(np.stack(xs)).unsqueeze(1), torch.as_tensor(ys, dtype=torch.long)


def letters(n_train: Optional[int], n_val: int, n_test: int, resolution: int, channels: int, seed: int, font_dir: Optional[str] = None) -> TargetData:
    per = (n_train or 100) + n_val + n_test
    x, y = render_letters(per, resolution, seed, font_dir)
    x = _normalise(_channels(x, channels))
    tr, va, te = _split_arrays(x, y, 10, n_train or 100, n_val, seed)
    return TargetData("letters", tr, va, te, 10, list("ABCDEFGHIJ"))


def _read_class_folders(root: Path, resolution: int, channels: int) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"image folder {root} has no class sub-folders")
    xs, ys = [], []
    for label, c in enumerate(classes):
        files = sorted(f for f in (root / c).iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise ValueError(f"image folder {root}: class {c!r} has no images ({', '.join(IMAGE_EXTS)})")
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert("L" if channels == 1 else "RGB").resize((resolution, resolution), Image.BILINEAR)
                    arr = np.asarray(im, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as exc:
                raise ValueError(f"image folder: cannot read {f}: {exc}") from exc
            xs.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
            ys.append(label)
    return _normalise(torch.from_numpy(np.stack(xs))), torch.as_tensor(ys, dtype=torch.long), classes


def load_imagefolder(root: str, n_train: Optional[int], n_val: int, resolution: int, channels: int, seed: int) -> TargetData:
    """``root/train`` (+ ``root/val`` if present) or ``root`` itself as class folders."""
    if not root:
        raise ValueError("target imagefolder needs data.root (a folder of class sub-folders)")
    rootp = Path(root)
    if not rootp.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    train_dir = rootp / "train" if (rootp / "train").is_dir() else rootp
    x, y, classes = _read_class_folders(train_dir, resolution, channels)
    if (rootp / "val").is_dir():
        xv, yv, cv = _read_class_folders(rootp / "val", resolution, channels)
        if cv != classes:
            raise ValueError(f"image folder {root}: val classes {cv} differ from train classes {classes}")
        train = Split(x, y)
        if n_train is not None:
            rng = np.random.default_rng(seed)
            idx = _per_class(y.numpy(), range(len(classes)), n_train, rng)
            train = Split(x[idx], y[idx])
        val = Split(xv, yv)
        return TargetData("imagefolder", train, val, val, len(classes), classes)
    tr, va, te = _split_arrays(x, y, len(classes), n_train, n_val, seed)
    return TargetData("imagefolder", tr, va, te, len(classes), classes)


def load_target(
    name: str,
    resolution: int,
    channels: int,
    n_train: Optional[int] = None,
    n_val: int = 50,
    n_test: Optional[int] = 200,
    seed: int = 0,
    root: Optional[str] = None,
) -> TargetData:
    """A target (or the ``fashion_0_4`` source) by name; see the module docstring."""
    if name == "fashion_0_4":
        return fashion_classes([0, 1, 2, 3, 4], n_train, n_val, n_test, resolution, channels, seed, root or FASHION_ROOT)
    if name == "fashion_5_9":
        return fashion_classes([5, 6, 7, 8, 9], n_train, n_val, n_test, resolution, channels, seed, root or FASHION_ROOT)
    if name == "digits":
        return digits(n_train, n_val, resolution, channels, seed)
    if name == "letters":
        return letters(n_train, n_val, n_test or 50, resolution, channels, seed, root)
    if name == "imagefolder":
        return load_imagefolder(root or "", n_train, n_val, resolution, channels, seed)
    raise ValueError(f"target {name!r} is not one of {TARGETS + SOURCES}")

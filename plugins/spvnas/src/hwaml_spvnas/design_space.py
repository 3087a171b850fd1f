"""3D-NAS's elastic design space over the SPVCNN backbone.

Per stage (4 down, 4 up): the output width between SPVNAS's lower and upper
bounds (``SPVNAS_LOWER``/``SPVNAS_UPPER`` times ``width_multiplier``), on a grid
of ``granularity`` channels (4 reproduces the released models); the depth, 1 or
2 residual blocks; and each block's middle width as a ratio of the stage width
(the reference's ``cr_bounds`` [0.125, 1.0]). The stem width is fixed (its
bounds coincide). A candidate's configuration maps to a network spec
(:func:`arch_from_config`) that the supernet runs by its first-k channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Sequence, Tuple

from hwaml.space import Categorical, Group, Integer, SearchSpace

from .models import N_STAGES, SPVNAS_LOWER, SPVNAS_UPPER, SPVCNN_WIDTHS, make_divisible

__all__ = ["DesignSpace", "MID_RATIOS", "STAGE_NAMES"]

MID_RATIOS = (0.125, 0.25, 0.5, 0.75, 1.0)
STAGE_NAMES = tuple([f"down{i + 1}" for i in range(N_STAGES)] + [f"up{i + 1}" for i in range(N_STAGES)])


@dataclass(frozen=True)
class DesignSpace:
    width_multiplier: float = 1.0
    granularity: int = 4
    mid_ratios: Tuple[float, ...] = MID_RATIOS
    depths: Tuple[int, ...] = (1, 2)

    def _round(self, c: float) -> int:
        return make_divisible(c * self.width_multiplier, self.granularity)

    def bounds(self) -> Tuple[list, list]:
        lo = [self._round(c) for c in SPVNAS_LOWER]
        hi = [self._round(c) for c in SPVNAS_UPPER]
        return lo, hi

    def search_space(self) -> SearchSpace:
        lo, hi = self.bounds()
        dims = []
        for i, name in enumerate(STAGE_NAMES):
            dims.append(
                Group(name, [
                    Integer("width", lo[i + 1], hi[i + 1], step=self.granularity),
                    Categorical("depth", list(self.depths)),
                    Categorical("mid1", list(self.mid_ratios)),
                    Categorical("mid2", list(self.mid_ratios)),
                ])
            )
        return SearchSpace(dims, meta={"spvnas": {"width_multiplier": self.width_multiplier, "granularity": self.granularity}}, name="spvnas")

    def mid_width(self, ratio: float, width: int) -> int:
        return min(width, make_divisible(ratio * width, self.granularity))

    def arch_from_config(self, config: Mapping[str, Any]) -> Dict[str, Any]:
        lo, _ = self.bounds()
        widths = [lo[0]]
        mids, depths = [], []
        for name in STAGE_NAMES:
            st = config[name]
            w = int(st["width"])
            widths.append(w)
            depths.append(int(st["depth"]))
            mids.append([self.mid_width(float(st["mid1"]), w), self.mid_width(float(st["mid2"]), w)])
        return {"widths": widths, "mids": mids, "depths": depths}

    def supernet_spec(self) -> Dict[str, Any]:
        _, hi = self.bounds()
        return {"widths": hi, "mids": [[c, c] for c in hi[1:]], "depths": [max(self.depths)] * (2 * N_STAGES)}

    def largest(self) -> Dict[str, Any]:
        _, hi = self.bounds()
        return {n: {"width": hi[i + 1], "depth": max(self.depths), "mid1": max(self.mid_ratios), "mid2": max(self.mid_ratios)} for i, n in enumerate(STAGE_NAMES)}

    def spvcnn_config(self, width_ratio: float = 1.0) -> Dict[str, Any]:
        """SPVCNN's widths (times ``width_ratio``) as a configuration of this space
        (clipped to its bounds, on its grid)."""
        lo, hi = self.bounds()
        out = {}
        for i, n in enumerate(STAGE_NAMES):
            w = make_divisible(SPVCNN_WIDTHS[i + 1] * width_ratio * self.width_multiplier, self.granularity)
            w = min(hi[i + 1], max(lo[i + 1], lo[i + 1] + (w - lo[i + 1]) // self.granularity * self.granularity))
            out[n] = {"width": w, "depth": 2, "mid1": 1.0, "mid2": 1.0}
        return out

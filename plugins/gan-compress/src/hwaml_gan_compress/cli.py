"""``hwaml-gan-compress``: build the cached data sets, feature network and generators.

    hwaml-gan-compress data --source fashion_edges      # the paired task's .npz cache
    hwaml-gan-compress data --source fashion_classes    # the unpaired task's
    hwaml-gan-compress features                         # the FID feature network (Fashion-MNIST)
    hwaml-gan-compress train gan_paired [key=value ...] # teacher + once-for-all generator of a preset
    hwaml-gan-compress score gan_paired 16_16_32_16_32_32_16_16   # FID of one sub-generator

``train`` and ``score`` read the evaluator preset (``conf/evaluator/<name>.yaml``)
with dotted overrides (``teacher.ngf=64``), exactly the keys of ``hwaml run evaluator=<name>``.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from typing import Any, List, Optional, Sequence

__all__ = ["main", "load_preset"]


def load_preset(name: str, overrides: Sequence[str] = ()) -> Any:
    """The evaluator of preset ``name`` with ``key=value`` overrides, instantiated."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    path = resources.files("hwaml_gan_compress.conf.evaluator") / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"no evaluator preset {name!r} (have: gan_paired, gan_unpaired)")
    cfg = OmegaConf.create(path.read_text())
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_struct(cfg.teacher.kwargs, False)  # a custom teacher's own constructor arguments (teacher.kwargs.width=6)
    cfg.merge_with_dotlist(list(overrides))
    return instantiate(cfg, _convert_="all")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="hwaml-gan-compress", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("data", help="build a Fashion-MNIST task's cache file")
    p.add_argument("--source", default="fashion_edges", choices=["fashion_edges", "fashion_classes"])
    p.add_argument("--root", default=None, help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--n-train", type=int, default=1500)
    p.add_argument("--rebuild", action="store_true")
    p = sub.add_parser("features", help="train (or load) the FID feature network")
    p.add_argument("--root", default=None)
    p = sub.add_parser("train", help="train (or load) the teacher and once-for-all generator of a preset")
    p.add_argument("preset")
    p.add_argument("--stage", choices=["teacher", "supernet"], default="supernet", help="stop after this stage (supernet: both)")
    p.add_argument("overrides", nargs="*")
    p = sub.add_parser("score", help="quality of one sub-generator on the held-out slice")
    p.add_argument("preset")
    p.add_argument("config", help="8 numbers, e.g. 16_16_16_16_16_16_16_16")
    p.add_argument("overrides", nargs="*")
    args, extra = parser.parse_known_args(argv)
    bad = [e for e in extra if "=" not in e or e.startswith("-")]
    if bad or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra  # key=value after an option

    if args.cmd == "data":
        from .data import DataConfig, fashion_cache_path, load_fashion

        cfg = DataConfig(source=args.source, root=args.root, n_train=args.n_train)
        data = load_fashion(cfg, rebuild=args.rebuild)
        print(f"{data.description}: {fashion_cache_path(cfg)}")
    elif args.cmd == "features":
        from .metrics import FeatureNetConfig, feature_net, feature_net_path

        feature_net(None, FeatureNetConfig(), args.root)
        path = feature_net_path(FeatureNetConfig(), args.root)
        print(path, path.with_suffix(".json").read_text())
    elif args.cmd == "train":
        ev = load_preset(args.preset, args.overrides)
        state = ev.teacher() if args.stage == "teacher" else ev.supernet()
        print(json.dumps({"teacher": str(ev.teacher_path), "supernet": str(ev.supernet_path), "history": state.history}, indent=1))
    elif args.cmd == "score":
        from .generators import ChannelConfig

        ev = load_preset(args.preset, args.overrides)
        cfg = ChannelConfig.from_any(args.config)
        print(json.dumps({"config": cfg.to_str(), "macs": ev.macs(cfg), **ev.score(ev.subgenerator(cfg))}, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

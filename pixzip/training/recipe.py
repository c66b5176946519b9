"""Recipes: how a model is made, as one small TOML file that chains training runs (nanoGPT style: the
config is data, the loop is `training.loop`).

    pixzip train --recipe models/recipes/pcnn-rgb-v8.toml --runs runs/ --path prepared=DIR
    pixzip train --recipe RECIPE --dry-run          (print the stages, train nothing)
    python -m pixzip.training.recipe RECIPE ...     (the same, without the command line's other commands)

A recipe names the model, its `[model]` (ModelConfig fields) and its `[[stage]]`s (TrainConfig fields,
plus an optional `[stage.model]` of ModelConfig fields that change from that stage on, e.g. a 16-bit
stream). Each stage starts from the previous stage's checkpoint (`init`); the first may name one. Paths
may hold `{name}` placeholders filled from the recipe's `[paths]` table or `--path name=VALUE`. Every
stage is exported beside its checkpoint in RUNS; the last stage's export is the recipe's model.

A recipe that continues another names it with `after = "FILE.toml"` (beside it): that recipe's stages come
first, its last model is where `[model]` (then only the fields that change) starts, and its paths fill its
own placeholders (`--path` overrides both). Each recipe then says only what it adds.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..spec.config import ModelConfig
from .config import TrainConfig

PATH_FIELDS = ("data", "val", "init")


@dataclass
class Stage:
    name: str
    model: ModelConfig
    train: TrainConfig


@dataclass
class Recipe:
    name: str
    stages: list[Stage]


def _fill(value, paths: dict[str, str]):
    """A path (or list of paths) with its {name} placeholders filled."""
    if isinstance(value, list):
        return [_fill(v, paths) for v in value]
    try:
        return value.format(**paths)
    except KeyError as e:
        raise ValueError(f"the recipe's path {value!r} needs --path {e.args[0]}=...") from None


def _known(table: dict, cls, where: str) -> dict:
    """`table` checked against the dataclass's fields: a misspelt key is an error, not a default."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ValueError(f"{where}: unknown {cls.__name__} field(s) {', '.join(unknown)}")
    return table


def parse_recipe(text: str, paths: dict[str, str] | None = None, folder: Path | None = None,
                 _seen: tuple[Path, ...] = ()) -> Recipe:
    """A recipe from its TOML text; `paths` override the recipe's own [paths]. `folder`: where an `after`
    recipe is looked for (default: the working directory)."""
    doc = tomllib.loads(text)
    base = _after(doc, paths, folder, _seen)
    paths = {**doc.get("paths", {}), **(paths or {})}
    model = _known(doc.get("model", {}), ModelConfig, "[model]")
    cfg = replace(base.stages[-1].model, **model) if base else ModelConfig(**model)
    if not doc.get("stage"):
        raise ValueError("a recipe needs at least one [[stage]]")
    stages = list(base.stages) if base else []
    for k, table in enumerate(doc["stage"]):
        table = dict(table)
        name = table.pop("name", f"stage{k + 1}")
        changes = table.pop("model", {})
        cfg = replace(cfg, **_known(changes, ModelConfig, f"stage {name} [model]")) if changes else cfg
        train = _known(table, TrainConfig, f"stage {name}")
        train = {key: _fill(v, paths) if key in PATH_FIELDS else v for key, v in train.items()}
        if any(s.name == name for s in stages):
            raise ValueError(f"stage {name}: the name is taken (stage names name the checkpoints)")
        stages.append(Stage(name, cfg, TrainConfig(**train)))
    return Recipe(doc.get("name", "model"), stages)


def _after(doc: dict, paths: dict[str, str] | None, folder: Path | None, seen: tuple[Path, ...]) -> Recipe | None:
    """The recipe `doc` continues (its `after` key), with its own paths filled, or None."""
    if "after" not in doc:
        return None
    path = ((folder or Path.cwd()) / doc["after"]).resolve()
    if path in seen:
        raise ValueError(f"recipes continue each other in a circle: {' -> '.join(p.name for p in seen + (path,))}")
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"after = {doc['after']!r}: {e.strerror or e}") from None
    return parse_recipe(text, paths, path.parent, seen + (path,))


def parse_paths(items) -> dict[str, str]:
    """`--path NAME=VALUE` arguments as {NAME: VALUE}; ValueError naming one without '='."""
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ValueError(f"--path {bad[0]!r}: expected NAME=VALUE")
    return dict(item.split("=", 1) for item in items)


def load_recipe(path: Path, paths: dict[str, str] | None = None) -> Recipe:
    path = Path(path).resolve()
    return parse_recipe(path.read_text(), paths, path.parent, (path,))


def chained(recipe: Recipe, runs: Path) -> list[tuple[Stage, Path, Path]]:
    """(stage, checkpoint, exported model) of every stage, each stage's init set to the previous
    stage's checkpoint (the first keeps its own, if any)."""
    out, previous = [], None
    for stage in recipe.stages:
        ckpt = runs / f"{recipe.name}.{stage.name}.pt"
        train = stage.train if previous is None else replace(stage.train, init=str(previous))
        out.append((Stage(stage.name, stage.model, train), ckpt, runs / f"{recipe.name}.{stage.name}.pxm"))
        previous = ckpt
    return out


def run_recipe(recipe: Recipe, runs: Path, resume: bool = False, quiet: bool = False) -> Path:
    """Train and export every stage in order; returns the last stage's model file."""
    from .loop import export_checkpoint, run_training     # torch only when something is trained

    runs.mkdir(parents=True, exist_ok=True)
    for stage, ckpt, model in chained(recipe, runs):
        if not quiet:
            print(f"{recipe.name}: stage {stage.name}", file=sys.stderr, flush=True)
        run_training(stage.model, stage.train, ckpt, resume=resume and ckpt.exists(), quiet=quiet)
        report = export_checkpoint(ckpt, model)
        if not quiet:
            print(f"{model}: float {report['float_bpd']:.4f}, integer {report['int_bpd']:.4f} bits/dim",
                  file=sys.stderr, flush=True)
    return model


def describe(recipe: Recipe, runs: Path) -> str:
    """The stages as a reader wants them: what changes, from where, for how long."""
    lines = [f"{recipe.name}: {len(recipe.stages)} stage(s)"]
    for stage, ckpt, model in chained(recipe, runs):
        t = stage.train
        budget = f"{t.minutes:g} min" if t.minutes else f"{t.steps} steps"
        lines.append(f"  {stage.name}: {budget}, lr {t.lr:g}, batch {t.batch}x{t.crop}, qat from {t.qat_start:g}, "
                     f"init {t.init or '-'}, data {', '.join(map(str, t.data))} -> {model}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pixzip.training.recipe", description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="checkpoints and exports (default: runs/)")
    parser.add_argument("--path", action="append", default=[], metavar="NAME=VALUE",
                        help="fill {NAME} in the recipe's paths")
    parser.add_argument("--resume", action="store_true", help="continue stages whose checkpoint exists")
    parser.add_argument("--dry-run", action="store_true", help="print the stages and stop")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, parse_paths(args.path))
        if args.dry_run:
            print(describe(recipe, args.runs))
            return 0
        run_recipe(recipe, args.runs, args.resume, args.quiet)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as e:
        print(f"pixzip: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Named dataset specs: which images of the split index an experiment trains or tests on.

A spec filters the index (classes, prompt sources) and either takes the split's per-class sample
(`in_benchmark`) or draws its own per-class counts, split by split. With several prompt sources and
counts, each source contributes an equal share, so "train on both" has the same total as "train on
one" (Xu et al. Table 2). Selection is seeded by the dataset name: a test set is the same images in
every experiment that uses it.

`labels` maps the classes an experiment trains on to generators or families, e.g. real vs fake
`{real: [real], fake: "*"}` ("*": every generator no other class names) or DeepFeatureX's
`{dm: "*", gan: [gan], real: [real]}`. The view then carries a `label` column next to the
untouched `generator` (provenance, per-generator metrics); views without `labels` have no `label`
column and behave exactly as before. `one_vs_rest: {positive: dm, ratio: 0.9}` (with `labels`)
keeps DeepFeatureX's unbalanced base-model subset of each split: `label` is the positive class or
"others", exactly ratio : 1 - ratio (`base_model_subsets`).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from fractions import Fraction
from typing import Sequence

from attribench.data.splits import SPLITS


def _seed(name: str, base: int) -> int:
    return base + int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


ANY = "*"
OTHERS = "others"


def label_of(df: pd.DataFrame) -> pd.Series:
    """The class of each row: `label` in a view with `labels`, else the generator."""
    return df["label"] if "label" in df.columns else df["generator"]


def label_map(index: pd.DataFrame, name: str, labels: dict) -> dict[str, str]:
    """{generator: class} for a `labels` spec: each class lists generator or family names, or "*"
    (all generators no other class lists). A name that matches nothing in the index, a generator two
    classes claim, or two "*" classes are errors; generators no class takes are left out."""
    pairs = index[["generator", "family"]].drop_duplicates()
    family = dict(zip(pairs["generator"], pairs["family"]))
    wild = [c for c, v in labels.items() if v == ANY]
    if len(wild) > 1:
        raise ValueError(f"datasets.{name}.labels: only one class may be '{ANY}', got {wild}")
    if OTHERS in labels:
        raise ValueError(f"datasets.{name}.labels: '{OTHERS}' is reserved for one_vs_rest")
    out: dict[str, str] = {}
    for cls, names in labels.items():
        if names == ANY:
            continue
        for n in names:
            hits = [g for g in family if g == n or family[g] == n]
            if not hits:
                raise KeyError(f"datasets.{name}.labels.{cls}: '{n}' is no generator or family in the index")
            for g in hits:
                if out.get(g, cls) != cls:
                    raise ValueError(f"datasets.{name}.labels: generator {g} is in both {out[g]} and {cls}")
                out[g] = cls
    if wild:
        out.update({g: wild[0] for g in family if g not in out})
    return out


def filter_rows(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The rows a view's `classes`, `exclude` and `prompt_sources` keep (before sampling and labels)."""
    if spec.get("classes"):
        df = df[df["generator"].isin(spec["classes"])]
    if spec.get("exclude"):
        df = df[~df["generator"].isin(spec["exclude"])]
    if spec.get("prompt_sources"):
        df = df[df["prompt_source"].isin(spec["prompt_sources"])]
    return df


def select(index: pd.DataFrame, name: str, spec: dict, seed: int = 0) -> pd.DataFrame:
    df = index
    if spec.get("one_vs_rest") and not spec.get("labels"):
        raise ValueError(f"datasets.{name}.one_vs_rest needs `labels` (which generators make each class)")
    if spec.get("classes"):
        unknown = set(spec["classes"]) - set(index["generator"])
        if unknown:
            raise KeyError(f"datasets.{name}.classes names generators not in the index: {sorted(unknown)}")
    df = filter_rows(df, spec)
    sources = spec.get("prompt_sources")
    if "counts" not in spec:
        out = df[df["in_benchmark"]]
    else:
        rng = np.random.default_rng(_seed(name, seed))
        picks = []
        groups = df.sort_values("image_id").groupby(["generator", "split", "prompt_source"], sort=True)
        for (gen, split, _src), rows in groups:
            want = spec["counts"][split] // (len(sources) if sources else 1)
            if len(rows) < want:
                raise ValueError(
                    f"dataset '{name}': class {gen} has {len(rows)} {split} images from source {_src}; "
                    f"{want} wanted (lower datasets.{name}.counts or render more prompts)"
                )
            picks.append(rows.iloc[rng.permutation(len(rows))[:want]])
        out = pd.concat(picks) if picks else df.iloc[:0]
    if spec.get("train_per_class"):  # training-size curves (Xu et al. Fig. 3 right): fewer train images
        out = _cap_train(out, spec["train_per_class"], _seed(name, seed))
    if spec.get("labels"):
        mapping = label_map(index, name, spec["labels"])
        out = out[out["generator"].isin(mapping)].assign(label=lambda d: d["generator"].map(mapping))
        if spec.get("one_vs_rest"):
            out = _one_vs_rest(out, name, spec["one_vs_rest"], seed)
    if out.empty:
        raise ValueError(f"dataset '{name}' selects no images")
    return out.sort_values(["generator", "split", "image_id"]).reset_index(drop=True)


def _one_vs_rest(df: pd.DataFrame, name: str, spec: dict, seed: int) -> pd.DataFrame:
    positive, classes = spec["positive"], sorted(df["label"].unique())
    if positive not in classes:
        raise KeyError(f"datasets.{name}.one_vs_rest.positive: '{positive}' is not a class of labels ({classes})")
    group_of = dict(zip(df["generator"], df["label"]))
    sub = base_model_subsets(df.drop(columns="label"), group_of, ratio=spec.get("ratio", 0.9), seed=seed,
                             groups=classes, only=positive)[positive]
    return sub.assign(label=sub["generator"], generator=sub["orig_generator"]).drop(columns="orig_generator")


def _cap_train(df: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    train = df[df["split"] == "train"].sort_values("image_id")
    keep = [rows.iloc[rng.permutation(len(rows))[:per_class]] for _, rows in train.groupby("generator", sort=True)]
    return pd.concat([df[df["split"] != "train"], *keep])


def split_counts(df: pd.DataFrame) -> dict:
    return {s: int((df["split"] == s).sum()) for s in SPLITS}


GROUPS = ("dm", "gan", "real")


def _subset(df: pd.DataFrame, group: str, a: int, b: int, rng) -> pd.DataFrame:
    focus = df[df["_group"] == group]
    pool = df[df["_group"] != group]
    k = min(len(focus) // a, len(pool) // b)  # the largest exact a:b split the rows allow
    take_f = np.sort(rng.permutation(len(focus))[: a * k])
    take_o = np.sort(rng.permutation(len(pool))[: b * k])
    return pd.concat([focus.iloc[take_f].assign(generator=group), pool.iloc[take_o].assign(generator="others")])


def base_model_subsets(index_df: pd.DataFrame, group_of: dict, ratio: float = 0.9, seed: int = 0,
                       groups: Sequence[str] = GROUPS, only: str | None = None) -> dict[str, pd.DataFrame]:
    """For each base model c in (dm, gan, real), the binary training set of sec. 4.1: the
    predominant class c is the 90 side, "others" (images drawn at random from the two remaining
    classes, pooled) the 10 side: "unbalanced with respect to each of the classes following a 90:10
    ratio", Fig. 1(a); Table 1's ~99% recall on c is the mark of that majority. The counts are made
    exactly ratio:(1-ratio) by keeping a random subset of the larger side where needed.

    Rows keep their columns; `generator` becomes the binary label (c or "others", so the frame feeds
    train_run(classes=[c, "others"]) directly) and the original is kept in `orig_generator`. With a
    `split` column each split is subset on its own (train, val and test all 90:10). Deterministic:
    rows are ordered by image_id and drawn with a generator seeded by (seed, base model, split).
    `groups`: the classes (default dm, gan, real); `only`: build just that base model's subset (a
    dataset view with `one_vs_rest`), drawn exactly as it is among all three."""
    frac = Fraction(ratio).limit_denominator(1000)
    a, b = frac.numerator, frac.denominator - frac.numerator  # 0.9 -> 9 focus : 1 other
    unknown = set(index_df["generator"]) - set(group_of)
    if unknown:
        raise KeyError(f"group_of has no group for generator(s) {sorted(unknown)}")
    groups = tuple(groups)
    bad = set(group_of.values()) - set(groups)
    if bad:
        raise ValueError(f"groups must be among {groups}; got {sorted(bad)}")
    df = index_df.sort_values("image_id").assign(orig_generator=index_df["generator"],
                                                  _group=index_df["generator"].map(group_of))
    parts = list(df.groupby("split", sort=True)) if "split" in df.columns else [(None, df)]
    out = {}
    for gi, group in enumerate(groups):
        if only is not None and group != only:
            continue
        subsets = [_subset(rows, group, a, b, np.random.default_rng([seed, gi, si]))
                   for si, (_, rows) in enumerate(parts)]
        out[group] = pd.concat(subsets).drop(columns="_group").reset_index(drop=True)
    return out


def test_rows(cfg: dict, index_path, dataset: str) -> pd.DataFrame:
    """The test split of a dataset view, read from the index file: the images that get edited or perturbed."""
    return test_split(pd.read_parquet(index_path), cfg, dataset)


def test_split(index: pd.DataFrame, cfg: dict, dataset: str) -> pd.DataFrame:
    """The test images of a dataset view (the one definition every report and edit uses)."""
    rows = select(index, dataset, cfg["datasets"][dataset], cfg["split"]["seed"])
    return rows[rows["split"] == "test"].reset_index(drop=True)


def _sources_of(spec: dict, cfg: dict) -> set[str]:
    """Prompt sources a generator's images carry (folder imports: what they declare, else "caption")."""
    if spec.get("backend") == "folder":
        return set(spec.get("prompt_sources") or ["caption"])
    return set(spec.get("prompt_sources") or cfg["prompts"]["sources"])


def _view_spec(cfg: dict, name: str) -> dict:
    if name not in cfg.get("datasets", {}):
        raise KeyError(f"dataset view '{name}' is not in params (known: {sorted(cfg.get('datasets', {}))})")
    return cfg["datasets"][name]


def _kept_generators(cfg: dict, spec: dict) -> dict:
    gens = dict(cfg["generators"])
    if spec.get("classes"):
        gens = {g: s for g, s in gens.items() if g in spec["classes"]}
    gens = {g: s for g, s in gens.items() if g not in set(spec.get("exclude") or [])}
    if spec.get("prompt_sources"):
        gens = {g: s for g, s in gens.items() if _sources_of(s, cfg) & set(spec["prompt_sources"])}
    return gens


def view_generators(cfg: dict, name: str) -> list[str]:
    """The generators whose images view `name` can read, from params alone: a run's inputs are these
    classes' index files, so adding a class re-trains only the runs whose views contain it. A superset
    of what `select` keeps (generators that `labels` names are in, for its name checks); the index job
    checks it against the data (`check_view_inputs`)."""
    spec = _view_spec(cfg, name)
    keep = set(_kept_generators(cfg, spec))
    named = {n for v in (spec.get("labels") or {}).values() if v != ANY for n in v}
    keep |= {g for g, s in cfg["generators"].items() if g in named or s.get("family") in named}
    return sorted(keep)


def experiment_views(exp: dict) -> list[str]:
    """The dataset views an experiment entry reads: its train view, then its test views (default: train)."""
    return list(dict.fromkeys([exp["train"], *(exp.get("test") or [])]))


def check_view_inputs(cfg: dict, index: pd.DataFrame) -> None:
    """Every generator a view selects from the full index is one whose index file its runs read, and
    every view a benchmark run trains or tests on can be drawn from it (`counts` met per class, split and
    prompt source): a short view fails here, before any training, not hours into the runs."""
    for name, spec in cfg.get("datasets", {}).items():
        missed = sorted(set(filter_rows(index, spec)["generator"]) - set(view_generators(cfg, name)))
        if missed:
            raise ValueError(
                f"dataset view '{name}' selects images of {missed}, which params say it cannot "
                "(a generator's prompt_sources does not match its images): its runs would not read them"
            )
    # a hyperparameter study's runs read the study's own index
    used = {v for exp in cfg.get("experiments", {}).values() if not exp.get("study") for v in experiment_views(exp)}
    errors = []
    for name in sorted(used & set(cfg.get("datasets", {}))):
        try:
            select(index, name, cfg["datasets"][name], cfg["split"]["seed"])
        except (KeyError, ValueError) as err:
            errors.append(str(err).strip("'\""))
    if errors:
        raise ValueError("dataset views the runs read cannot be drawn from this index:\n  " + "\n  ".join(errors))


def planned_classes(cfg: dict, name: str) -> list[str]:
    """The classes dataset view `name` will have, from params alone (no data): what `select` keeps
    of the benchmark generators. A check that a paper view is the paper's N-way task before any render."""
    spec = _view_spec(cfg, name)
    gens = _kept_generators(cfg, spec)
    if spec.get("labels"):
        labels = spec["labels"]
        named = {n for v in labels.values() if v != ANY for n in v}
        classes = {c for c, v in labels.items()
                   if (v == ANY and any(g not in named and s["family"] not in named for g, s in gens.items()))
                   or (v != ANY and any(g in v or s["family"] in v for g, s in gens.items()))}
        if spec.get("one_vs_rest"):
            return sorted({spec["one_vs_rest"]["positive"], OTHERS})
        return sorted(classes)
    return sorted(gens)

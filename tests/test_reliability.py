"""Nothing silently wrong (issue 16): one test per way the bench used to give wrong or
non-comparable results. Each names the failure it guards against."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from attribench.data.shards import encode_png, make_row, write_shard
from attribench.data.splits import ShortClassError, build_index

SPLIT = {"seed": 0, "fractions": {"train": 0.6, "val": 0.2, "test": 0.2}, "counts": {"train": 20, "val": 5, "test": 5}}


# 1. Immutable per-job settings ------------------------------------------------------------------


def test_snapshot_is_content_addressed_and_never_rewritten(tmp_path):
    from attribench.core.config import snapshot

    a = snapshot({"profile": "smoke", "training": {"epochs": 12}}, tmp_path)
    text_a = a.read_text()
    b = snapshot({"profile": "smoke", "training": {"epochs": 1}}, tmp_path)  # params edited, Snakemake restarted
    assert a != b and a.read_text() == text_a and json.loads(text_a)["training"]["epochs"] == 12
    assert snapshot({"profile": "smoke", "training": {"epochs": 12}}, tmp_path) == a


def _dry_run_cfg(repo, workdir, target):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir), "-n", "-p", target]
    snapshots = workdir / ".snakemake" / "attribench"
    before = set(snapshots.glob("config-*.json")) if snapshots.exists() else set()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    # the snapshot this start's jobs get (ATTRIBENCH_CONFIG_JSON): the one it wrote, or an identical earlier one
    new = set(snapshots.glob("config-*.json")) - before
    return new.pop() if new else max(snapshots.glob("config-*.json"), key=lambda p: p.stat().st_mtime)


def test_a_job_keeps_its_settings_when_params_change_and_snakemake_restarts(repo, tmp_path):
    # Main before: every start rewrote .snakemake/attribench/config-smoke.json, which running jobs read.
    shutil.copy(repo / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "workflow").symlink_to(repo / "workflow")
    target = "data/real/sample_photos"
    first = _dry_run_cfg(repo, tmp_path, target)  # the path a job of this start reads
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["profiles"]["smoke"].setdefault("training", {})["epochs"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    second = _dry_run_cfg(repo, tmp_path, target)
    assert first != second
    assert json.loads(first.read_text())["training"]["epochs"] != 1
    assert json.loads(second.read_text())["training"]["epochs"] == 1


# 2. `dvc repro` works ----------------------------------------------------------------------------


def test_every_dvc_param_exists_at_the_top_of_params_yaml(repo):
    # Main before: `dvc repro` -> "Parameters 'post_editing' are missing from 'params.yaml'".
    params = yaml.safe_load((repo / "params.yaml").read_text())
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    missing = [
        f"{name}: {p}"
        for name, st in stages.items()
        for p in st.get("params", [])
        if isinstance(p, str) and p.split(".")[0] not in params
    ]
    assert not missing, missing
    assert "__pycache__/" in (repo / ".dvcignore").read_text()  # importing the package must not change a dep


# 3. Stable splits -------------------------------------------------------------------------------


def _class_shard(tmp_path, gen, prompts, per_prompt=1, seed=0):
    rng = np.random.default_rng(abs(hash(gen)) % 2**32 + seed)
    rows = []
    for p in prompts:
        for k in range(per_prompt):
            img = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
            rows.append(
                make_row(
                    encode_png(img),
                    "png",
                    generator=gen,
                    family=gen,
                    prompt_id=p,
                    prompt=f"prompt {p}",
                    prompt_source="natural",
                )
            )
    return write_shard(rows, tmp_path / f"{gen}.parquet")


def _folder_shard(tmp_path, gen, n):
    rng = np.random.default_rng(7)
    rows = [
        make_row(
            encode_png(Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))),
            "png",
            generator=gen,
            family=gen,
            source="imported",
        )
        for _ in range(n)
    ]
    return write_shard(rows, tmp_path / f"{gen}.parquet")


def test_adding_a_class_moves_no_existing_image(tmp_path):
    # Main before: one permutation over all prompt groups (a new folder class moved ~half the images)
    # and one RNG over every class in name order (a new class changed other classes' in_benchmark).
    prompts = [f"p{i}" for i in range(80)]
    base = [_class_shard(tmp_path, g, prompts) for g in ("sd", "sdxl")]
    before = build_index(base, SPLIT).set_index("image_id")
    folder = _folder_shard(tmp_path, "a_folder_class", 200)  # sorts first: shifts any shared RNG
    diffusers = _class_shard(tmp_path, "b_diffusers", prompts + [f"new{i}" for i in range(40)])
    after = build_index(base + [folder, diffusers], SPLIT).set_index("image_id")
    old = after.loc[before.index]
    assert (old["split"] == before["split"]).all()
    assert (old["in_benchmark"] == before["in_benchmark"]).all()
    assert set(after.generator) == {"sd", "sdxl", "a_folder_class", "b_diffusers"}
    assert (after.groupby("prompt_id")["split"].nunique() == 1).all()  # still prompt-disjoint
    # A view without the new classes selects the very same images, with or without its own counts.
    from attribench.data.views import select

    for spec in (
        {"classes": ["sd", "sdxl"]},
        {"classes": ["sd", "sdxl"], "counts": {"train": 10, "val": 3, "test": 3}},
    ):
        same = [select(ix.reset_index(), "view", spec)["image_id"].tolist() for ix in (before, after)]
        assert same[0] == same[1]


def test_class_index_files_make_the_whole_index(tmp_path):
    from attribench.data.splits import read_index, write_index

    prompts = [f"p{i}" for i in range(80)]
    shards = {g: _class_shard(tmp_path, g, prompts) for g in ("sd", "sdxl")}
    shards["a_folder"] = _folder_shard(tmp_path, "a_folder", 60)
    parts = [write_index([shard], SPLIT, tmp_path / f"cls_{g}.parquet", generator=g) for g, shard in shards.items()]
    assert all(len(p) for p in parts)
    whole = build_index(list(shards.values()), SPLIT)
    import pandas as pd

    pd.testing.assert_frame_equal(read_index(sorted(tmp_path.glob("cls_*.parquet"))), whole, check_dtype=False)
    with pytest.raises(ValueError, match="class index of 'sd': its shards also hold images of \\['sdxl'\\]"):
        write_index([shards["sd"], shards["sdxl"]], SPLIT, tmp_path / "bad.parquet", generator="sd")


DIRECTORY_RULES = {"build_zoo_model", "sample_photos"}  # rules whose outputs are directory()s
TARGETS = ["results/table1.csv", "results/table2.csv"]


def _snakemake(repo, ws, *args):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(ws), "--cores", "1", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def _planned(repo, ws, rule):
    """{output file: rule} of every job a dry run of TARGETS would run (`--summary`'s plan column)."""
    rows = [line.split("\t") for line in _snakemake(repo, ws, "--summary", *TARGETS).splitlines()[1:]]
    return {
        r[0]
        for r in rows
        if r[2] == rule and r[5] != "no update" and not r[0].endswith((".safetensors", "predict.json", ".png"))
    }


def _build_by_touch(repo, ws):
    """Every output of the TARGETS' DAG created empty, then marked up to date in DAG order with
    `snakemake --touch`: a built workspace as far as Snakemake can tell, without torch or rendering."""
    rows = [line.split("\t") for line in _snakemake(repo, ws, "--summary", *TARGETS).splitlines()[1:]]
    for out, _date, rule, *_ in rows:
        path = ws / out
        if rule in DIRECTORY_RULES:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            # the provenance a real build writes, which says whose result it is (results/ is shared)
            if out.startswith("results/runs/") and out.endswith("/metrics.json"):
                path.write_text('{"profile": "smoke"}')
            elif out.startswith("results/") and out.endswith(".csv"):
                path.write_text("profile\nsmoke\n")
    _snakemake(repo, ws, "--touch", *TARGETS)
    assert "Nothing to be done" in _snakemake(repo, ws, "-n", *TARGETS)


@pytest.fixture(scope="module")
def built_ws(repo, tmp_path_factory):
    """The smoke profile's Table 1 + 2 DAG, built by touch; plus a generator rendered from a user's
    local model directory (`my_model/`)."""
    ws = tmp_path_factory.mktemp("built") / "ws"
    ws.mkdir()
    (ws / "workflow").symlink_to(repo / "workflow")
    raw = _raw(repo)
    raw["profile"] = "smoke"
    weights = ws / "my_model" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights v1")
    gens = raw["profiles"]["smoke"]["generators"]
    gens["my_sd"] = {**gens["sd_tiny"], "model": "my_model", "family": "my_sd"}
    (ws / "params.yaml").write_text(yaml.safe_dump(raw))
    _build_by_touch(repo, ws)
    return ws, raw


@pytest.fixture()
def ws(built_ws, tmp_path):
    """A private copy of the built workspace (copytree keeps mtimes: still up to date)."""
    src, raw = built_ws
    dst = tmp_path / "ws"
    shutil.copytree(src, dst, symlinks=True)
    return dst, json.loads(json.dumps(raw))


def test_adding_a_class_retrains_only_the_runs_whose_views_hold_it(repo, ws):
    # Main before: every run read the one index.parquet, so any new class re-trained all of them.
    from attribench.core.config import resolve
    from attribench.experiments.specs import experiment_index

    ws, raw = ws
    assert "Nothing to be done" in _snakemake(repo, ws, "-n", *TARGETS)
    tables = resolve(raw)["tables"]
    runs = {f"results/runs/{e}/metrics.json": e for t in ("table1", "table2") for e in tables[t]["experiments"]}

    # 1. a folder class (captioned "caption": outside the natural / creative views of Table 2)
    (ws / "incoming").mkdir()
    Image.new("RGB", (16, 16), (9, 9, 9)).save(ws / "incoming" / "a.png")
    gens = raw["profiles"]["smoke"]["generators"]
    gens["new_folder"] = {"backend": "folder", "family": "new_folder", "path": "incoming"}
    (ws / "params.yaml").write_text(yaml.safe_dump(raw))
    cfg = resolve(raw)
    holds = {f: e for f, e in runs.items() if any("/new_folder." in p for p in experiment_index(cfg, e))}
    assert set(holds.values()) == set(tables["table1"]["experiments"])  # the `all` view only
    assert _planned(repo, ws, "train") == set(holds)
    assert _planned(repo, ws, "split_class") == {"data/smoke/dataset/classes/new_folder.parquet"}

    # 2. and a diffusers class (natural + creative prompts): now Table 2's runs hold a new class too
    gens["sd_tiny_3step"] = {**gens["sd_tiny"], "steps": 3}
    (ws / "params.yaml").write_text(yaml.safe_dump(raw))
    assert _planned(repo, ws, "train") == set(runs)
    assert _planned(repo, ws, "split_class") == {
        f"data/smoke/dataset/classes/{g}.parquet" for g in ("new_folder", "sd_tiny_3step")
    }
    assert {p.split("/")[-2] for p in _planned(repo, ws, "render")} == {"new_folder", "sd_tiny_3step"}


def test_a_deleted_run_or_shard_is_rebuilt_and_only_what_reads_it(repo, ws):
    # Main before: deleting results/runs/<name>/ and asking for the table said "Nothing to be done".
    from attribench.core.config import resolve
    from attribench.experiments.specs import experiment_index

    ws, raw = ws
    shutil.rmtree(ws / "results" / "runs" / "ef_all")
    # another profile's dry run leaves the smoke results alone (they are not its results)
    _snakemake(repo, ws, "-n", "results/table1.csv", "--config", "profile=paper")
    assert (ws / "results/table1.csv").exists() and not (ws / ".snakemake/attribench/stale").exists()
    assert _planned(repo, ws, "train") == {"results/runs/ef_all/metrics.json"}
    assert _planned(repo, ws, "report_table1") == {
        "results/table1.csv",
        "results/table1.md",
        "results/metrics/table1.json",
    }
    assert _planned(repo, ws, "report_table2") == set()
    assert (ws / ".snakemake/attribench/stale/results/table1.csv").exists()  # moved aside, not deleted

    shard = sorted((ws / "data/smoke/shards/delivered/dcgan_faces").glob("*.parquet"))[0]
    shard.unlink()
    assert _planned(repo, ws, "deliver") == {str(shard.relative_to(ws))}
    assert _planned(repo, ws, "render") == set()  # its raw shard is still there
    assert _planned(repo, ws, "split_class") == {"data/smoke/dataset/classes/dcgan_faces.parquet"}
    cfg = resolve(raw)
    runs = {e for t in ("table1", "table2") for e in cfg["tables"][t]["experiments"]}
    readers = {
        f"results/runs/{e}/metrics.json" for e in runs if any("/dcgan_faces." in p for p in experiment_index(cfg, e))
    }
    assert readers and _planned(repo, ws, "train") == readers | {"results/runs/ef_all/metrics.json"}
    assert "Nothing to be done" not in _snakemake(repo, ws, "-n", *TARGETS)


def test_another_profiles_runs_are_never_trained_over(repo, ws):
    # Main before: results/runs/<name> is shared by the profiles, so a paper (or rehearsal) build in a
    # workspace holding smoke runs, or a smoke build in a paper workspace, trained over them.
    ws, _raw_params = ws
    metrics = ws / "results/runs/ef_all/metrics.json"
    before = metrics.read_bytes()
    base = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(ws), "--cores", "1"]
    cmd = [*base, "results/table1.csv", "--config", "profile=paper"]
    real = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    said = real.stderr + real.stdout
    assert real.returncode != 0
    assert re.search(r"results/ holds \d+ run\(s\) of profile smoke \(e\.g\. results/runs/\w+\)", said), said[-2000:]
    assert "this paper build would train again over" in said and "mv results results.smoke" in said
    assert metrics.read_bytes() == before and not (ws / "data/paper").exists()
    dry = subprocess.run([*cmd[:-3], "-n", *cmd[-3:]], capture_output=True, text=True, timeout=300, check=False)
    assert dry.returncode == 0 and "of profile smoke" in dry.stderr + dry.stdout
    # the profile that owns the runs builds as before
    assert "Nothing to be done" in _snakemake(repo, ws, "-n", *TARGETS)


def test_edited_local_weights_re_render(repo, ws):
    ws, _raw_params = ws
    assert _planned(repo, ws, "render") == set()
    (ws / "my_model" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"weights v2")
    assert {p.split("/")[-2] for p in _planned(repo, ws, "render")} == {"my_sd"}


def test_a_second_build_in_the_same_directory_is_refused_by_name(repo, ws):
    # Main before: a second Snakemake during a build got IncompleteFilesException advising
    # --rerun-incomplete (a second writer on the first one's files).
    from attribench.core.builds import REGISTRY, is_dry_run

    assert is_dry_run(["snakemake", "-np", "x"]) and is_dry_run(["snakemake", "--dry-run"])
    assert not is_dry_run(["snakemake", "--cores", "2", "results/table1.csv"])
    ws, _raw_params = ws
    first = subprocess.Popen(["sleep", "120"])  # stands in for the running build's process
    try:
        (ws / REGISTRY).mkdir(parents=True, exist_ok=True)
        cmdline = "sleep 120"
        (ws / REGISTRY / f"{first.pid}.json").write_text(
            json.dumps({"pid": first.pid, "cmdline": cmdline, "started": "2026-12-06 05:00:00"})
        )
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(repo / "Snakefile"),
            "-d",
            str(ws),
            "--cores",
            "1",
            *TARGETS,
        ]
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        assert second.returncode != 0
        assert f"another Snakemake is building in this directory (pid {first.pid}" in second.stderr + second.stdout
        assert "IncompleteFilesException" not in second.stderr + second.stdout
        dry = subprocess.run([*cmd, "-n"], capture_output=True, text=True, timeout=300, check=False)
        assert dry.returncode == 0 and "add --ignore-incomplete" in dry.stderr + dry.stdout
    finally:
        first.kill()
        first.wait()
    again = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, check=False
    )  # the dead one's entry is cleared
    assert again.returncode == 0 and "Nothing to be done" in again.stderr, again.stderr[-2000:]
    assert not list((ws / REGISTRY).glob(f"{first.pid}.json"))


def test_unmet_counts_are_an_error_naming_class_split_and_numbers(tmp_path):
    shards = [
        _class_shard(tmp_path, "sd", [f"p{i}" for i in range(80)]),
        _class_shard(tmp_path, "tiny", [f"p{i}" for i in range(10)]),
    ]
    with pytest.raises(ShortClassError, match=r"class tiny: \d+ train images, split.counts.train asks for 20"):
        build_index(shards, SPLIT)
    index = build_index(shards, {**SPLIT, "allow_short": ["tiny"]})  # explicitly allowed: taken whole
    tiny = index[index.generator == "tiny"]
    assert tiny.in_benchmark.sum() == min(len(tiny[tiny.split == "train"]), 20) + min(
        (tiny.split == "val").sum(), 5
    ) + min((tiny.split == "test").sum(), 5)


# 5. Params mistakes are caught before the first job --------------------------------------------


def _raw(repo):
    return yaml.safe_load((repo / "params.yaml").read_text())


@pytest.mark.parametrize(
    "edit, named",
    [
        # Main before: an `exclude` typo was ignored (the class stayed in the view).
        (lambda r: r["datasets"]["natural"].update(exclude=["reall"]), "datasets.natural.exclude: ['reall']"),
        (lambda r: r["datasets"]["binary"]["labels"].update(real=["rael"]), "datasets.binary.labels.real: ['rael']"),
        (
            lambda r: r["datasets"]["natural"].update(prompt_sources=["natral"]),
            "datasets.natural.prompt_sources: ['natral']",
        ),
        (
            lambda r: r["profiles"]["smoke"]["generators"]["sd_tiny"].update(pipeline="StableDifusionPipeline"),
            "generators.sd_tiny.pipeline: 'StableDifusionPipeline'",
        ),
        (
            lambda r: r["profiles"]["smoke"]["generators"]["lcm_tiny"].update(scheduler="LCMSchedular"),
            "generators.lcm_tiny.scheduler: 'LCMSchedular'",
        ),
        (lambda r: r["experiments"]["ef_all"].update(train="al"), "experiments.ef_all.train/test: ['al']"),
    ],
)
def test_dangling_names_are_caught_when_params_load(repo, edit, named):
    from attribench.core.config import ConfigError, resolve

    raw = _raw(repo)
    raw["profile"] = "smoke"
    edit(raw)
    with pytest.raises(ConfigError) as err:
        resolve(raw)
    assert named in str(err.value)


def test_nested_config_overrides_are_typed(repo):
    # Main before: `--config profiles='{smoke: {training: {epochs: 1}}}'` reached the schema as "1".
    from snakemake.cli import parse_config

    from attribench.core.config import resolve, typed_overrides

    overrides = parse_config(["profiles={smoke: {training: {epochs: 1, lr: 1.0e-3}}}"])
    assert overrides["profiles"]["smoke"]["training"]["epochs"] == "1"  # what Snakemake hands over
    raw = _raw(repo)
    raw["profile"] = "smoke"
    raw = typed_overrides(raw, overrides)
    assert raw["profiles"]["smoke"]["training"]["epochs"] == 1
    assert raw["profiles"]["smoke"]["training"]["lr"] == 1.0e-3
    assert "generators" in raw["profiles"]["smoke"]  # merged, not replaced
    resolve(raw)


# 4. Odd images: one decoder, every skip named, counted and on the console ------------------------


def _png_header_only(path, w, h):
    """A PNG whose header claims w x h (valid CRC) and holds no pixels: a decompression bomb's shape."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")
    )
    return path


def test_decoder_handles_odd_images(tmp_path):
    from attribench.data.decode import Undecodable, open_image

    grey16 = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))  # 0x8080: mid grey at 16 bits
    grey16.save(tmp_path / "g16.png")
    img, notes = open_image(tmp_path / "g16.png")
    assert np.asarray(img)[0, 0].tolist() == [128, 128, 128] and "16-bit" in notes[0]  # main: 255 (white)

    exif = Image.new("RGB", (6, 2), "red").getexif()
    exif[0x0112] = 6  # rotate 90 CW to display
    Image.new("RGB", (6, 2), "red").save(tmp_path / "rot.jpg", exif=exif)
    img, notes = open_image(tmp_path / "rot.jpg")
    assert img.size == (2, 6) and "EXIF orientation 6" in notes[0]  # main: 6x2

    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0] * 256)
    pal.save(tmp_path / "pal.png", transparency=0)  # fully transparent black
    img, notes = open_image(tmp_path / "pal.png", {"background": [10, 200, 30]})
    assert np.asarray(img)[0, 0].tolist() == [10, 200, 30] and "composited" in notes[0]  # main: black
    with pytest.raises(Undecodable, match="transparency"):
        open_image(tmp_path / "pal.png", {"alpha": "reject"})

    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    img, notes = open_image(tmp_path / "cmyk.jpg")
    r, g, b = np.asarray(img)[0, 0].tolist()
    assert img.mode == "RGB" and r > 200 and g < 60 and b < 60

    frames = [Image.new("RGB", (4, 4), c) for c in ("blue", "yellow")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    img, notes = open_image(tmp_path / "anim.gif")
    assert "first of 2 frames" in notes and np.asarray(img)[0, 0, 2] > 200

    with pytest.raises(Undecodable, match="over the pixel limit|max_pixels"):  # main: DecompressionBombError
        open_image(_png_header_only(tmp_path / "bomb.png", 30000, 30000))
    with pytest.raises(Undecodable, match=r"6x2 = 12 pixels, over decode.max_pixels 10"):
        open_image(tmp_path / "rot.jpg", {"max_pixels": 10})


def test_folder_import_skips_and_names_odd_files_on_the_console(tmp_path, capsys):
    from attribench.data.decode import skipped_path
    from attribench.data.delivery import deliver_shard
    from attribench.data.render import render_shard
    from attribench.data.shards import read_shard

    folder = tmp_path / "imports"
    folder.mkdir()
    Image.new("RGB", (100, 80), "red").save(folder / "ok.jpg")
    Image.new("RGB", (1, 1), "blue").save(folder / "tiny.png")
    _png_header_only(folder / "huge.png", 30000, 30000)
    cfg = {
        "profile": "t",
        "seed": 0,
        "device": "cpu",
        "prompts": {"chunk_size": 10, "sources": {}},
        "generators": {"mj": {"backend": "folder", "family": "mj", "source": "imported", "path": str(folder)}},
    }
    raw = render_shard(cfg, "mj", "folder-0000", tmp_path / "raw.parquet")  # main: the bomb aborted the import
    assert sorted(read_shard(raw).origin) == ["ok.jpg", "tiny.png"]
    report = pd_read(skipped_path(raw))
    assert report.file.str.endswith("huge.png").tolist() == [True] and "pixel" in report.reason[0]
    assert "attribench: skipped 1 input file(s) of mj" in capsys.readouterr().err

    out = deliver_shard(raw, tmp_path / "delivered.parquet", {"size": 64, "format": "png"})
    assert len(read_shard(out)) == 2 and not skipped_path(out).exists()
    assert "upscaled (1 image(s)" in capsys.readouterr().err  # main: upscaled 1x1 -> 64x64 without a note


def pd_read(path):
    import pandas as pd

    return pd.read_csv(path)


# 6. Smaller ones ----------------------------------------------------------------------------------


def test_setup_sh_cites_only_files_in_the_repository(repo):
    # Main before: setup.sh cited DESIGN.md, which is not in the repository.
    cited = set(re.findall(r"[\w./-]+\.(?:md|toml|yaml|txt|py|sh)\b", (repo / "setup.sh").read_text()))
    assert cited and all((repo / c).exists() for c in cited), sorted(c for c in cited if not (repo / c).exists())

"""4-level OME-Zarr pyramids (issue #12): ``ba.pyramid`` vs ngff-zarr and ome-zarr-py.

    PYTHONPATH=. .venv/bin/python bench/bench_pyramid.py --repeat 3

Inputs (zarr v2, blosc-lz4, 64^3 chunks, built once, warm page cache):

- ``image``: 256 x 1024 x 1024 uint8 (256 MiB), bench_data's smooth noise (the journal
  benchmark's input);
- ``labels``: bench_mode's realistic (256, 512, 256) uint32 labels (128 MiB; bench_labels'
  input).

Every method writes 4 levels (1, 2, 4, 8 x along z, y and x) to a new local folder, timed from
opening the input to the last write (imports untimed):

- ``ba.pyramid 0.5``: ``ba.pyramid(src, out, 4, num_workers=2)`` (defaults: NGFF 0.5, zarr v3
  sharded, 'smooth' = linear + anti-aliasing; for labels ``method="mode"``);
- ``ba.pyramid 0.4``: the same with ``ngff_version="0.4"`` (zarr v2);
- ``ngff-zarr <method>``: ``to_ngff_image(zarr array, dims=zyx)``, ``to_multiscales(image,
  [2, 4, 8], method=...)``, ``to_ngff_zarr(out, multiscales)`` (its default NGFF 0.5, unsharded);
  default method (ITKWASM_GAUSSIAN), ITKWASM_BIN_SHRINK (2x2x2 mean, its cheapest installed
  one: DASK_IMAGE_* need dask-image, ITK_* need itk, neither installed), and for labels
  ITKWASM_LABEL_IMAGE;
- ``ome-zarr-py resize``: ``write_image(dask.array.from_zarr(input), out, scale_factors=[{z,y,x:
  2}, {..4}, {..8}], axes="zyx")``, its default method (RESIZE: skimage ``resize`` with
  anti-aliasing) and default format (0.5); a list of ints would leave z unscaled.

Each method's first output is checked (levels, shapes, means; for labels: every level's values
are input labels, and level 1 against the smallest-mode reference).
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

LEVELS = 4
IMAGE_METHODS = ("ba.pyramid 0.5", "ba.pyramid 0.4", "ngff-zarr ITKWASM_GAUSSIAN (default)",
                 "ngff-zarr ITKWASM_BIN_SHRINK", "ome-zarr-py resize (default)")
LABEL_METHODS = ("ba.pyramid 0.5 mode", "ngff-zarr ITKWASM_LABEL_IMAGE")


# ---- children ----------------------------------------------------------------------------------
def setup_ba(cfg: dict[str, Any]):
    import asyncio

    from methods import preimport_package

    import bioimage_async as ba

    preimport_package()
    name = cfg["method"]
    kwargs: dict[str, Any] = {"num_workers": 2, "progress": False}
    if " 0.4" in name:
        kwargs["ngff_version"] = "0.4"
    if name.endswith("mode"):
        kwargs["method"] = "mode"

    async def main() -> dict[str, Any]:
        src = await ba.open_source(cfg["input"])
        stats = ba.RunStats()
        levels = await ba.pyramid(src, cfg["out"], LEVELS, stats=stats, **kwargs)
        return {"levels": [list(level.shape) for level in levels], "stats": stats.as_dict()}

    return lambda: asyncio.run(main())


def setup_ngff_zarr(cfg: dict[str, Any]):
    import ngff_zarr as nz
    import zarr

    method = getattr(nz.Methods, cfg["method"].split()[1])

    def run() -> dict[str, Any]:
        image = nz.to_ngff_image(zarr.open_array(cfg["input"], mode="r"), dims=["z", "y", "x"])
        multiscales = nz.to_multiscales(image, scale_factors=[2, 4, 8], method=method)
        nz.to_ngff_zarr(cfg["out"], multiscales)
        return {"method": method.value}

    return run


def setup_ome_zarr(cfg: dict[str, Any]):
    import dask.array as da
    from ome_zarr.writer import write_image

    factors = [{"z": f, "y": f, "x": f} for f in (2, 4, 8)]

    def run() -> None:
        write_image(da.from_zarr(cfg["input"]), cfg["out"], scale_factors=factors, axes="zyx")

    return run


CHILDREN = {
    **{m: setup_ba for m in IMAGE_METHODS + LABEL_METHODS if m.startswith("ba.")},
    **{m: setup_ngff_zarr for m in IMAGE_METHODS + LABEL_METHODS if m.startswith("ngff-zarr")},
    "ome-zarr-py resize (default)": setup_ome_zarr,
}


# ---- checking ----------------------------------------------------------------------------------
def inspect_output(path: str, case: str, input_path: str) -> dict[str, Any]:
    import numpy as np
    import zarr

    group = zarr.open_group(path, mode="r")
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)
    multiscales = ome["multiscales"][0]
    version = ome.get("version") or multiscales.get("version")
    info: dict[str, Any] = {"ngff": version, "levels": []}
    source = zarr.open_array(input_path, mode="r")
    labels = case == "labels"
    known = np.unique(source[:]) if labels else None
    for index, dataset in enumerate(multiscales["datasets"]):
        array = group[dataset["path"]]
        data = array[:]
        level = {"shape": list(array.shape), "chunks": list(array.chunks),
                 "shards": list(array.shards) if getattr(array, "shards", None) else None,
                 "dtype": str(array.dtype), "zarr_format": array.metadata.zarr_format}
        if labels:
            level["values_not_in_input"] = int((~np.isin(np.unique(data), known)).sum())
            if index == 1:
                from bioimage_async.kernels.reductions import reduce_windows

                ref = reduce_windows(source[:], (2, 2, 2), "mode")
                if ref.shape == data.shape:
                    level["differs_from_smallest_mode"] = int((ref != data).sum())
        else:
            level["mean"] = round(float(data.mean(dtype=np.float64)), 3)
        info["levels"].append(level)
    return info


# ---- parent ------------------------------------------------------------------------------------
def main() -> None:
    from alternating import fmt, machine_note, paired_ratio, run_plan, summarize, versions
    from bench_data import warm_page_cache
    from bench_journal import build

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", default="/tmp/bioimage-async-bench/pyramid")
    parser.add_argument("--cases", default="image,labels")
    parser.add_argument("--skip", default="", help="comma-separated method names to leave out")
    parser.add_argument("--out", default=str(HERE / "results" / f"{dt.date.today()}-pyramid.md"))
    args = parser.parse_args()

    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    image = build(Path("/tmp/bioimage-async-bench/journal"), [256, 1024, 1024])
    label_path = Path("/tmp/bioimage-async-bench/labels/realistic-u32.zarr")
    if "labels" in args.cases and not (label_path / ".zarray").exists():
        raise SystemExit(f"{label_path} missing: run bench/bench_labels.py once first")
    plans = {
        "image": (str(image), [m for m in IMAGE_METHODS if m not in skip]),
        "labels": (str(label_path), [m for m in LABEL_METHODS if m not in skip]),
    }
    print("page cache warmed in", round(warm_page_cache([plans[c][0] for c in
                                                         args.cases.split(",")]), 2), "s")
    checks: dict[tuple[str, str], dict[str, Any]] = {}

    def before(case: str, method: str, cfg: dict[str, Any]) -> None:
        shutil.rmtree(cfg["out"], ignore_errors=True)

    def after(case: str, method: str, cfg: dict[str, Any], result: dict[str, Any], rep: int) -> None:
        if (case, method) not in checks:
            try:
                checks[(case, method)] = inspect_output(cfg["out"], case, cfg["input"])
            except Exception as err:  # noqa: BLE001 - reported, not fatal
                checks[(case, method)] = {"error": repr(err)[:300]}
            print("   check:", json.dumps(checks[(case, method)])[:600], flush=True)
        shutil.rmtree(cfg["out"], ignore_errors=True)

    runs: list[dict[str, Any]] = []
    for case in args.cases.split(","):
        path, methods = plans[case]
        runs += run_plan(str(Path(__file__).name),
                         [(case, {"input": path, "out": str(data / "out.zarr")})],
                         [(m, {}) for m in methods], repeat=args.repeat, logs=data / "logs",
                         before=before, after=after, timeout=3600)
    rows = summarize(runs)
    ver = versions(("tensorstore", "ngff-zarr", "ome-zarr", "itkwasm-downsample", "dask",
                    "zarr", "scikit-image"))
    lines = [
        f"# 4-level OME-Zarr pyramids ({dt.date.today()})",
        "",
        machine_note(runs, args.repeat),
        "Times: open input .. last write (imports untimed). Peak RSS: the process tree's "
        "(sampled every 20 ms; ome-zarr and ngff-zarr run dask's threaded scheduler in-process) "
        "and the child's VmHWM. Versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()) + ".",
        "",
        "| input | method | median s | runs s | peer / ba.pyramid 0.5 (medians) | paired (min-max) "
        "| CPU s | cores | peak RSS MiB | levels (shape / chunks / shards) | other load |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        base = next((r for r in rows if r["case"] == row["case"]
                     and r["method"].startswith("ba.pyramid 0.5")), None)
        pr = paired_ratio(row, base) if base else None
        c = checks.get((row["case"], row["method"]), {})
        levels = "; ".join(
            f"{'x'.join(map(str, lv['shape']))}/{'x'.join(map(str, lv['chunks']))}"
            + (f"/{'x'.join(map(str, lv['shards']))}" if lv.get("shards") else "")
            for lv in c.get("levels", [])) or c.get("error", "-")
        lines.append(
            f"| {row['case']} | {row['method']} | {fmt(row['median_s'], '.2f')} | "
            f"{' '.join(f'{s:.2f}' for s in row['all_s'])} | "
            f"{row['median_s'] / base['median_s']:.2f}x | "
            + (f"{pr[0]:.2f}x ({pr[1]:.2f}-{pr[2]:.2f})" if pr else "-")
            + f" | {fmt(row['cpu_s'], '.1f')} | {fmt(row['cores'], '.2f')} | "
            f"{fmt(row['peak_rss_tree_max_mib'], '.0f')} | {levels} | "
            f"{fmt(row['other_load'], '.2f')} |"
        )
    lines += ["", "Output checks (first run of each method):", ""]
    for (case, method), c in checks.items():
        if "error" in c:
            lines.append(f"- {case} / {method}: could not be read: {c['error']}")
            continue
        detail = ", ".join(
            f"L{i}: " + (f"mean {lv['mean']}" if "mean" in lv else
                         f"{lv['values_not_in_input']} values not in the input"
                         + (f", {lv['differs_from_smallest_mode']} voxels differ from the "
                            "smallest mode" if "differs_from_smallest_mode" in lv else ""))
            for i, lv in enumerate(c["levels"]))
        lines.append(f"- {case} / {method}: NGFF {c['ngff']}, {len(c['levels'])} levels; {detail}")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(
        {"rows": rows, "runs": runs, "versions": ver,
         "checks": {f"{k[0]}/{k[1]}": v for k, v in checks.items()}}, indent=1))
    print("written", out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("{"):
        from alternating import child_main

        child_main(CHILDREN, T0)
    else:
        main()

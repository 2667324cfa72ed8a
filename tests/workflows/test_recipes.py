"""The recipe grid: rows, correlations recomputed from runs, shards, a killed shard, bad input."""
import json
import signal
import subprocess
import sys
import time

import pytest

from landscape.errors import LandscapeError
from landscape.generalization import kendall_tau
from landscape.measures import MEASURES, MeasureOptions
from landscape.workflows.recipes import RecipeGrid, parse_shard, run_name, run_recipes

GRID = dict(train_subset=128, test_subset=64, model="mlp", batch_sizes=(32, 64),
            lrs=(0.05,), optimizers=("sgd", "sam"), seeds=(0,), epochs=2, resamples=50,
            measures=MeasureOptions(trace_products=6, line_points=11, plane_points=5,
                                    pacbayes_iterations=4, pacbayes_samples=1))
# the same grid for a child process (MeasureOptions rebuilt there)
CHILD = ("import json, sys; from landscape.workflows.recipes import RecipeGrid, run_recipes, parse_shard; "
         "from landscape.measures import MeasureOptions; import torch; torch.set_num_threads(1); "
         "g = json.loads(sys.argv[1]); g['measures'] = MeasureOptions(**g['measures']); "
         "g = {k: tuple(v) if isinstance(v, list) else v for k, v in g.items()}; "
         "run_recipes(RecipeGrid(**g), sys.argv[2], shard=parse_shard(sys.argv[3]), log=None)")


def _child_args(out, shard):
    import dataclasses
    grid = {**GRID, "measures": dataclasses.asdict(GRID["measures"])}
    return [sys.executable, "-c", CHILD, json.dumps(grid), str(out), shard]


def _numbers(summary):
    """What must agree between one process and shards (no timings, no provenance)."""
    return json.dumps({"runs": summary["runs"], "correlations": summary["correlations"]},
                      sort_keys=True)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    import torch
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("recipes")
    return run_recipes(RecipeGrid(**GRID), out, log=None), out


def test_rows_and_correlations(one_process):
    summary, out = one_process
    names = [r["name"] for r in summary["runs"]]
    assert names == ["bs32_lr0.05_sgd_wd0_s0", "bs32_lr0.05_sam_wd0_s0",
                     "bs64_lr0.05_sgd_wd0_s0", "bs64_lr0.05_sam_wd0_s0"]
    for r in summary["runs"]:
        assert set(r["measures"]) == set(MEASURES)
        assert r["generalization_gap"] == pytest.approx(r["test_error"] - r["train_error"])
        assert r["settings"]["optimizer"] in ("sgd", "sam")
    assert set(summary["correlations"]) == set(MEASURES) | {"loss_gap"}
    assert summary["axes"] == ["batch_size", "optimizer"]
    saved = json.loads((out / "summary.json").read_text())
    # taus recomputed from the saved runs equal the saved correlations
    gaps = [r["generalization_gap"] for r in saved["runs"]]
    for name in MEASURES:
        values = [r["measures"][name] for r in saved["runs"]]
        expected = kendall_tau([float("nan") if v is None else v for v in values], gaps)
        got = saved["correlations"][name]["kendall_tau"]
        assert (got is None and expected != expected) or got == pytest.approx(expected), name
        lrs = [r["settings"]["lr"] for r in saved["runs"]]
        assert saved["correlations"][name]["tau_vs_lr"] is None  # one lr: undefined
        assert kendall_tau(values, lrs) != kendall_tau(values, lrs)
    assert summary["comparisons"][0]["optimizer"] == "sam"
    assert summary["comparisons"][0]["pairs"] == 2
    assert any("sam vs sgd" in f for f in summary["findings"])
    for name in ("scatter", "tau", "report"):
        assert (out / summary["files"][name].split(str(out) + "/")[-1]).is_file(), name
    report = (out / "report.md").read_text()
    assert "figures/measures_vs_gap.png" in report and "landscape compare" in report


def test_a_rerun_reuses_every_row(one_process):
    summary, out = one_process
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/row.json")}
    again = run_recipes(RecipeGrid(**GRID), out, log=None)
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/row.json")} == stamps
    assert _numbers(again) == _numbers(summary)


@pytest.mark.slow  # two fresh processes that import torch
def test_two_shards_at_once_equal_one_process(one_process, tmp_path):
    _, reference = one_process
    procs = [subprocess.Popen(_child_args(tmp_path, f"{i}/2"), stderr=subprocess.PIPE)
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert _numbers(saved) == _numbers(json.loads((reference / "summary.json").read_text()))


@pytest.mark.slow  # a fresh process that imports torch
def test_a_killed_shard_rerun_loses_no_finished_run(one_process, tmp_path):
    _, reference = one_process
    proc = subprocess.Popen(_child_args(tmp_path, "0/1"), stderr=subprocess.DEVNULL)
    first = tmp_path / "runs" / run_name(RecipeGrid(**GRID).recipes()[0]) / "row.json"
    while not first.exists() and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before the kill"
    assert not (tmp_path / "summary.json").exists()
    done = {p: p.read_bytes() for p in tmp_path.glob("runs/*/row.json")}
    assert first in done
    run_recipes(RecipeGrid(**GRID), tmp_path, log=None)
    for path, data in done.items():  # finished rows are kept, not recomputed
        assert path.read_bytes() == data
    assert _numbers(json.loads((tmp_path / "summary.json").read_text())) == \
        _numbers(json.loads((reference / "summary.json").read_text()))


def test_parse_shard():
    assert parse_shard(None) == (0, 1) and parse_shard("1/2") == (1, 2)
    assert parse_shard("auto", {"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4)
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "0",
                                "SLURM_ARRAY_TASK_COUNT": "5"}) == (0, 5)
    for bad, match in (("3/2", "0 <= I < N"), ("2/2", "0 <= I < N"), ("x", "use I/N"),
                       ("1/0", "0 <= I < N")):
        with pytest.raises(LandscapeError, match=match):
            parse_shard(bad)
    with pytest.raises(LandscapeError, match="RANK and WORLD_SIZE"):
        parse_shard("auto", {})


@pytest.mark.parametrize("change, match", [
    (dict(optimizers=("sgd", "lbfgs")), "bs32_lr0.05_lbfgs_wd0_s0 cannot train: unknown "
                                        "optimizer"),
    (dict(lrs=(0.05, -1.0)), "cannot train: learning rate must be positive"),
    (dict(weight_decays=(-0.1,)), "weight decay"),
    (dict(seeds=()), "at least one value"),
])
def test_a_recipe_that_cannot_train_is_refused_before_anything_is_written(tmp_path, change,
                                                                          match):
    with pytest.raises(LandscapeError, match=match):
        run_recipes(RecipeGrid(**{**GRID, **change}), tmp_path / "out", log=None)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [
    (("--optimizers", "sgd,lbfgs"), "unknown optimizer 'lbfgs'"),
    (("--optimizers", "sam", "--sam-rho", "0"), "radius must be a positive"),
    (("--quick", "--shard", "3/2"), "0 <= I < N"),
    (("--lrs", "0.1,-1"), "learning rate must be positive"),
    (("--shard", "auto"), "RANK and WORLD_SIZE"),
    (("--max-train-error", "1.5"), "must be in (0, 1]"),
])
def test_cli_bad_recipe_input_is_one_line_before_training(tmp_path, monkeypatch, extra, message):
    from click.testing import CliRunner

    from landscape_cli.main import cli

    from cli_helpers import one_line_error

    for name in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "sweep"
    res = CliRunner().invoke(cli, ["sweep", *extra, "--out", str(out)])
    assert message in one_line_error(res)
    assert not (out / "runs").exists()


def test_coarse_measures_are_marked_in_the_summary_findings_and_report(one_process):
    summary, out = one_process
    # GRID's measures are coarser than the defaults in every tunable way
    assert set(summary["coarse"]) == {"trace", "basin_width_1d", "basin_width_2d",
                                      "basin_width_top_eigenvector", "pacbayes_flatness",
                                      "pacbayes_mag_flatness"}
    assert any(w.startswith("trace is coarse") and "6 products" in w
               for w in summary["warnings"])
    trace = next(f for f in summary["findings"] if f.startswith("trace:"))
    assert "Coarse: Hutch++ with 6 products" in trace
    weight = next(f for f in summary["findings"] if f.startswith("weight_norm:"))
    assert "Coarse" not in weight
    report = (out / "report.md").read_text()
    assert "| trace (coarse) |" in report and "| weight_norm |" in report
    assert "- basin_width_2d: 5 x 5 plane, grid step 0.5" in report


def test_the_report_names_the_flattest_and_sharpest_runs(one_process):
    from landscape.workflows import flat_sharp_command

    summary, out = one_process
    by_top = sorted(summary["runs"], key=lambda r: r["measures"]["top_eigenvalue"])
    command = flat_sharp_command(summary, out)
    assert command == (f"landscape compare {out}/runs/{by_top[0]['name']} "
                       f"{out}/runs/{by_top[-1]['name']} --labels flattest,sharpest --quick "
                       f"--out {out}/compare_flat_sharp")
    assert f"    {command}" in (out / "report.md").read_text()
    # a diverged run or a missing eigenvalue is never the flattest; two runs are needed
    runs = [{**by_top[0], "diverged": True}, {**by_top[1], "measures": {"top_eigenvalue": None}},
            *by_top[2:]]
    assert by_top[0]["name"] not in flat_sharp_command({**summary, "runs": runs}, out)
    assert flat_sharp_command({**summary, "runs": by_top[:1]}, out) is None
    assert "--quick" not in flat_sharp_command({**summary, "coarse": {}}, out)


def test_the_quick_grid():
    grid = RecipeGrid.quick()
    assert len(grid.recipes()) == 16 and grid.measures == MeasureOptions.quick()
    assert grid.varying() == ["batch_size", "lr", "optimizer"]
    assert grid.train_subset == 800 and grid.epochs == 10
    assert RecipeGrid.quick(seeds=(5,), epochs=3).seeds == (5,)


@pytest.mark.parametrize("extra, expect", [
    ((), dict(seeds=(0, 1), train_subset=800, batch_sizes=(32, 256))),
    (("--seeds", "4", "--train-subset", "300", "--batch-sizes", "16"),
     dict(seeds=(4,), train_subset=300, batch_sizes=(16,))),
])
def test_cli_quick_builds_the_quick_grid_and_options_win(tmp_path, monkeypatch, extra, expect):
    from click.testing import CliRunner

    import landscape.workflows.recipes as recipes
    from landscape_cli.main import cli

    seen = {}
    monkeypatch.setattr(recipes, "run_recipes",
                        lambda grid, out, **kw: seen.setdefault("grid", grid) and None)
    res = CliRunner().invoke(cli, ["sweep", "--quick", *extra, "--out", str(tmp_path / "q")])
    assert res.exit_code == 0, res.output
    grid = seen["grid"]
    assert grid.measures == MeasureOptions.quick() and grid.optimizers == ("sgd", "sam")
    for name, value in expect.items():
        assert getattr(grid, name) == value, name


def _entry(tau, low, high, lr=0.1, runs=12):
    return {"kendall_tau": tau, "interval": [low, high], "granulated_tau": tau,
            "per_axis": {}, "tau_vs_lr": lr, "runs": runs}


def test_findings_say_when_an_interval_spans_0_is_missing_or_rests_on_few_runs():
    from landscape.workflows.recipes_report import findings

    nan = float("nan")
    table = {"a": _entry(0.5, 0.2, 0.8), "b": _entry(0.1, -0.3, 0.4),
             "c": _entry(0.3, nan, nan, lr=nan, runs=2), "d": _entry(0.2, None, None, runs=3)}
    lines = findings(table, [], 12)
    assert lines[0] == "Over 12 runs, the measures whose interval excludes 0: a."
    a, b, c, d = lines[1:5]
    assert "95% interval +0.20 to +0.80)" in a and "spans 0" not in a
    assert "spans 0: no reliable sign from 12 runs" in b
    assert "no interval: 2 runs are too few to resample" in c and "tau with lr n/a (one lr)" in c
    assert "nan" not in c and "spans 0" not in c
    assert "no interval: 3 runs" in d and d.endswith("; 9 of 12 runs have no finite value.")
    assert "no finite value" not in a
    only_missing = findings({"c": table["c"]}, [], 2)[0]
    assert only_missing == ("Over 2 runs, no interval could be computed (too few runs): "
                            "no measure's sign is known.")
    many = findings({"b": _entry(0.1, -0.3, 0.4, runs=40)}, [], 40)
    assert many[0].endswith("every interval spans 0.") and "from 40 runs" not in many[1]


def test_sign_test_and_the_comparison_sentence():
    from landscape.workflows.recipes import optimizer_comparisons, sign_test
    from landscape.workflows.recipes_report import findings

    assert sign_test([1] * 8) == pytest.approx(2 / 2 ** 8)  # two-sided: 2 * 0.5^8
    assert sign_test([1, -1, 0, 0]) == pytest.approx(1.0)  # ties dropped, 1 of 2
    assert sign_test([0, 0]) != sign_test([0, 0])  # no untied pair: nan

    def row(opt, seed, eig, err):
        return {"settings": {"batch_size": 32, "lr": 0.1, "optimizer": opt,
                             "weight_decay": 0.0, "seed": seed},
                "measures": {"top_eigenvalue": eig, "trace": 1.0, "adaptive_sharpness": 1.0},
                "test_error": err}
    rows = [row("sgd", s, 4.0, 0.2) for s in range(5)]
    rows += [row("sam", s, 2.0, 0.2 - 0.01 * (s % 2)) for s in range(5)]
    (c,) = optimizer_comparisons(rows, ("sgd", "sam"))
    assert (c["pairs"], c["flatter_top_eigenvalue"], c["lower_test_error"]) == (5, 5, 2)
    assert c["flatter_p"] == pytest.approx(2 / 2 ** 5)
    assert c["lower_test_error_p"] == pytest.approx(0.5)  # 2 lower, 3 ties: 2 of 2
    assert c["top_eigenvalue_ratio"] == pytest.approx(0.5)
    (sentence,) = findings({}, [c], 10)[1:]
    assert "(5 pairs)" in sentence and "flatter in 5 of 5, sign test p = 0.062" in sentence
    assert "lower in 2 of 5, sign test p = 0.5)" in sentence


def test_scatter_encodings_and_figures_of_a_constructed_summary(tmp_path):
    from landscape.figures import plot_measure_grid, plot_tau_bars
    from landscape.figures.recipes import _encodings

    runs = [{"name": f"r{i}", "settings": {"batch_size": bs, "lr": lr, "optimizer": opt,
                                           "weight_decay": 0.0, "seed": 0},
             "measures": {"top_eigenvalue": 1.0 + i, "basin_width_1d": None if i else 0.5},
             "generalization_gap": 0.01 * i}
            for i, (bs, lr, opt) in enumerate(
                (bs, lr, opt) for bs in (16, 64) for lr in (0.01, 0.1) for opt in ("sgd", "sam"))]
    summary = {"runs": runs, "axes": ["batch_size", "lr", "optimizer"],
               "correlations": {m: _entry(0.3, None, None) for m in ("top_eigenvalue",
                                                                    "basin_width_1d")}}
    enc = _encodings(summary)
    assert enc == {"colour": ("lr", [0.01, 0.1]), "marker": ("batch_size", [16, 64]),
                   "fill": ("optimizer", ["sam", "sgd"])}
    assert _encodings({**summary, "axes": ["optimizer"]}) == {
        "colour": ("optimizer", ["sam", "sgd"])}
    for plot, name in ((plot_measure_grid, "grid.png"), (plot_tau_bars, "tau.png")):
        path = plot(summary, tmp_path / name)
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_runs_that_did_not_train_are_left_out_of_every_tau_but_kept_in_runs():
    from landscape.generalization import correlations
    from landscape.workflows.recipes import _key, summarize

    def row(i, bs, opt, train_error):
        return {"name": f"r{i}", "settings": {"batch_size": bs, "lr": 0.1, "optimizer": opt,
                                              "weight_decay": 0.0, "seed": 0},
                "measures": {m: float((i * 7 + len(m)) % 11) for m in MEASURES},
                "train_error": train_error, "test_error": train_error + 0.01 * (i % 5),
                "generalization_gap": 0.01 * (i % 5), "loss_gap": 0.1 * (i % 3),
                "train_loss": 0.1, "test_loss": 0.2}
    rows = [row(i, bs, opt, 0.9 if i in (0, 5) else 0.02 * i)
            for i, (bs, opt) in enumerate((bs, opt) for bs in (16, 32, 64, 128)
                                          for opt in ("sgd", "sam"))]
    grid = RecipeGrid(**{**GRID, "batch_sizes": (16, 32, 64, 128), "max_train_error": 0.5,
                         "resamples": 50})
    summary = summarize(grid, rows)
    assert summary["left_out"] == ["r0", "r5"]
    assert [r.get("left_out", False) for r in summary["runs"]] == [i in (0, 5) for i in range(8)]
    kept = [r for r in rows if r["name"] not in ("r0", "r5")]
    expected = correlations(kept, MEASURES, ["batch_size", "optimizer"], resamples=50)
    for name in MEASURES:
        assert summary["correlations"][name]["kendall_tau"] == pytest.approx(
            expected[name]["kendall_tau"], nan_ok=True)
    assert summary["findings"][0].startswith("Over 6 runs")
    assert summary["findings"][1].startswith("2 of 8 runs ended at a train error of 50% or more")
    assert summary["comparisons"][0]["pairs"] == 2  # bs 32 and bs 128 (r0, r5 break the bs 16 and bs 64 pairs)
    # the threshold changes no row: finished runs keep their key
    bundle = type("B", (), {"spec": {"name": "x"}})()
    assert _key(grid, bundle, rows[1]["settings"]) == _key(
        RecipeGrid(**{**GRID, "batch_sizes": (16, 32, 64, 128)}), bundle, rows[1]["settings"])


def test_dry_run_counts_the_steps_each_recipe_takes(one_process):
    """The dry run's optimizer steps per recipe are the steps the real runs took; a SAM
    recipe is expected to take longer than its SGD twin (two passes a step)."""
    from landscape.models import build_model
    from landscape.workflows.cost import recipe_dry_run

    summary, out = one_process
    grid = RecipeGrid(**GRID)
    data = grid.data()
    costs = recipe_dry_run(build_model("mlp", data, seed=0), data, grid)
    assert [c.label for c in costs] == [r["name"] for r in summary["runs"]]
    for cost in costs:
        history = json.loads((out / "runs" / cost.label / "history.json").read_text())
        assert cost.steps == history["epochs"][-1]["step"], cost.label
    by = {c.label: c for c in costs}
    assert by["bs32_lr0.05_sam_wd0_s0"].seconds > by["bs32_lr0.05_sgd_wd0_s0"].seconds
    assert by["bs32_lr0.05_sgd_wd0_s0"].steps == 2 * 4  # 128 examples, batch 32, 2 epochs

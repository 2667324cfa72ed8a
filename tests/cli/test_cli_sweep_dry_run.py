"""``landscape sweep --dry-run`` (batch-size sweep and recipe grid) and the recipe grid's
memory refusal: a table and a total, nothing trained or written; one line naming the training
subset that fits."""
import pytest
from click.testing import CliRunner

from cli_helpers import one_line_error
from landscape.data import load_dataset
from landscape.models import build_model
from landscape_cli.main import cli

BATCH_SWEEP = ["--model", "mlp", "--train-subset", "128", "--test-subset", "64",
               "--batch-sizes", "16,full", "--target-steps", "16", "--min-epochs", "1",
               "--max-epochs", "3", "--optimizer-batch", "32", "--optimizer-epochs", "1"]
RECIPES = ["--model", "mlp", "--train-subset", "128", "--test-subset", "64",
           "--batch-sizes", "32,64", "--lrs", "0.05", "--optimizers", "sgd,sam", "--seeds", "0",
           "--epochs", "2"]


@pytest.mark.parametrize("args, labels", [
    (BATCH_SWEEP, ["batch_16", "batch_full", "rprop_full", "rprop_32", "rmsprop_32"]),
    (RECIPES, ["bs32_lr0.05_sgd_wd0_s0", "bs32_lr0.05_sam_wd0_s0", "bs64_lr0.05_sgd_wd0_s0",
               "bs64_lr0.05_sam_wd0_s0"]),
])
def test_dry_run_prints_each_run_and_the_total_and_writes_nothing(tmp_path, args, labels):
    out = tmp_path / "sweep"
    result = CliRunner().invoke(cli, ["sweep", *args, "--out", str(out), "--quiet",
                                      "--dry-run"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()
            if line.split() and line.split()[0] in labels}
    assert sorted(rows) == sorted(labels)
    total = [line for line in result.stdout.splitlines() if line.startswith("total:")]
    assert len(total) == 1 and f"total: {len(labels)} runs" in total[0]
    steps = sum(int(row[1].replace(",", "")) for row in rows.values())
    assert f"{steps:,} steps" in total[0] and "nothing trained or written" in total[0]
    assert not out.exists() and not any(tmp_path.iterdir())


def test_the_recipe_grid_refuses_in_one_line_naming_the_subset_that_fits(tmp_path):
    from landscape.workflows.cost import recipe_memory
    from landscape.workflows.recipes import RecipeGrid

    grid = RecipeGrid(train_subset=2000, test_subset=200, batch_sizes=("full",), lrs=(0.05,),
                      optimizers=("sgd",), seeds=(0,), epochs=1)
    data = load_dataset("mnist1d", train_subset=2000, test_subset=200)
    # the CNN's parts (a full-batch step, a Hessian product's chunk) grow with the examples
    needed = recipe_memory(build_model("cnn1d", data, seed=0), data, grid).total_added
    out = tmp_path / "grid"
    args = ["sweep", "--model", "cnn1d", "--train-subset", "2000", "--test-subset", "200",
            "--batch-sizes", "full", "--lrs", "0.05", "--optimizers", "sgd", "--seeds", "0",
            "--epochs", "1", "--out", str(out), "--quiet"]
    line = one_line_error(CliRunner().invoke(cli, [*args, "--max-memory",
                                                   str(int(needed * 0.6))]))
    assert line.startswith("Error: the sweep needs about") and "--train-subset " in line
    assert int(line.split("--train-subset ")[1].split()[0]) < 2000
    assert not out.exists()

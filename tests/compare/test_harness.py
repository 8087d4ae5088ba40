"""The experiment harness: a third, tiny experiment is a definition and nothing more.

`TOY` below trains nothing (each run returns a number), so these tests check the harness
itself: the runner's order, progress lines and Ctrl-C; the report folder, its refusal of
a folder that is not a report, ``results.json`` and ``summary.md``; the options; and that
the library never imports the experiments.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_initlab
from keras_initlab.compare.config import TrainingConfig, check_training
from keras_initlab.compare.datasets import Dataset, describe, load_dataset
from keras_initlab.compare.harness import (
    Claim,
    Experiment,
    ExperimentInterrupted,
    Plan,
    add_options,
    config_from_args,
    lazy,
    report_text,
    run_experiment,
    strict_json,
    write_json,
    write_report,
)

SCHEMES = ("one", "two", "three")


@dataclasses.dataclass(frozen=True)
class ToyConfig(TrainingConfig):
    schemes: tuple[str, ...] = SCHEMES
    scale: float = 1.0
    stop_at: str | None = None  # a run that is interrupted by Ctrl-C


@dataclasses.dataclass
class ToyResult:
    config: ToyConfig
    dataset: dict
    values: dict[str, float]
    seconds: float
    partial: bool = False

    @property
    def finished(self) -> int:
        return len(self.values)


def _plan(config, data):
    def train(name):
        def run(on_epoch):
            for epoch in range(config.epochs):
                on_epoch(epoch, {"loss": 1.0 / (epoch + 1)})
            if name == config.stop_at:
                raise KeyboardInterrupt
            return name, config.scale * (SCHEMES.index(name) + 1)

        return run

    def collect(runs, after, seconds, partial):
        values = dict(runs)
        if after is not None:
            values["after"] = after
        return ToyResult(config, describe(data), values, seconds, partial)

    return Plan(
        [(f"toy {name}", train(name)) for name in config.schemes],
        collect,
        header=f"{len(config.schemes)} toy runs",
        after=lambda: -1.0,
    )


def _table(result, markdown=False):
    rows = [f"{name} {value:g}" for name, value in result.values.items()]
    return "\n".join(["| run |", *rows] if markdown else ["run", *rows])


def _files(result, folder, data):
    (folder / "values.csv").write_text("".join(f"{k},{v}\n" for k, v in result.values.items()))
    (folder / "plot.png").write_bytes(b"\x89PNG")
    return [folder / "values.csv", folder / "plot.png"]


def _add_options(parser):
    parser.add_argument("--scale", type=float, help="multiplies every value")


TOY = Experiment(
    name="toy",
    config_type=ToyConfig,
    check=lambda config: check_training(config) or config,
    schemes=SCHEMES,
    quick={"epochs": 1},
    plan=_plan,
    claims=lambda result: [Claim("Values grow", sorted(result.values) == list(result.values), "")],
    table=_table,
    to_json=lambda result, claims: strict_json(
        {"values": result.values, "claims": [c.claim for c in claims], "nan": float("nan")}
    ),
    files=_files,
    setup=lambda result: [f"Scale {result.config.scale}.", ""],
    help="a toy",
    description="A toy experiment.",
    quick_help="one epoch",
    default_out="toy-report",
    report_contents="values",
    add_options=_add_options,
    options=("scale",),
)


@pytest.fixture(scope="module")
def data():
    return load_dataset("circles")


def test_a_definition_runs_every_run_in_order_with_progress_lines(data):
    stream = io.StringIO()
    result = run_experiment(TOY, ToyConfig(epochs=2, train_limit=10), progress=stream, data=data)
    assert result.values == {"one": 1.0, "two": 2.0, "three": 3.0, "after": -1.0}
    assert result.dataset["train"] == 10  # the config's limits applied to the data
    lines = stream.getvalue().splitlines()
    assert lines[0] == "3 toy runs"
    assert [line[:16] for line in lines[1:]] == [
        "[ 1/3] toy one  ",
        "[ 2/3] toy two  ",
        "[ 3/3] toy three",
    ]
    assert not result.partial


def test_a_definition_may_bring_its_own_data():
    # e.g. token sequences of a language model: any x and y arrays, limits applied after
    tokens = np.arange(40, dtype=np.int32).reshape(10, 4)
    own = Dataset("tokens", tokens[:8], tokens[:8, -1], tokens[8:], tokens[8:, -1], 40, "toy")
    toy = dataclasses.replace(TOY, load_data=lambda config: own)
    result = run_experiment(toy, ToyConfig(epochs=1, train_limit=5))
    assert (result.dataset["name"], result.dataset["train"], result.dataset["test"]) == (
        "tokens",
        5,
        2,
    )


def test_ctrl_c_gives_a_partial_result_of_the_finished_runs(data, tmp_path):
    with pytest.raises(ExperimentInterrupted) as stop:
        run_experiment(TOY, ToyConfig(epochs=1, stop_at="two"), data=data)
    partial = stop.value.result
    assert partial.partial
    assert partial.values == {"one": 1.0}  # no `after`: it never ran
    assert partial.finished == 1
    paths = write_report(TOY, partial, tmp_path / "report")
    assert json.loads(paths["results.json"].read_text())["values"] == {"one": 1.0}


def test_the_report_folder_holds_the_harness_files_and_the_definitions(data, tmp_path):
    result = run_experiment(TOY, ToyConfig(epochs=1, scale=2.0), data=data)
    paths = write_report(TOY, result, tmp_path / "report", data)
    folder = tmp_path / "report"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".keras-initlab-report",
        "plot.png",
        "results.json",
        "summary.md",
        "table.md",
        "table.txt",
        "values.csv",
    ]
    document = json.loads(paths["results.json"].read_text())
    assert document == {
        "values": {"one": 2.0, "two": 4.0, "three": 6.0, "after": -1.0},
        "claims": ["Values grow"],
        "nan": None,
    }
    assert paths["table.txt"].read_text() == _table(result) + "\n"
    summary = paths["summary.md"].read_text().splitlines()
    assert summary[:4] == ["# keras-initlab toy: circles", "", "Scale 2.0.", ""]
    assert "## Claims" in summary
    assert "![plot.png](plot.png)" in summary
    assert report_text(TOY, result).endswith("[ NO] Values grow: ")
    assert write_json(TOY, result, tmp_path / "out.json").read_text() == (
        paths["results.json"].read_text()
    )


def test_a_folder_that_is_not_a_report_is_refused_for_every_experiment(data, tmp_path):
    result = run_experiment(TOY, ToyConfig(epochs=1), data=data)
    (tmp_path / "mine.txt").write_text("a user's file")
    with pytest.raises(ValueError, match=r"mine\.txt"):
        write_report(TOY, result, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    empty = dataclasses.replace(result, values={})
    with pytest.raises(ValueError, match="at least one finished run"):
        write_report(TOY, empty, tmp_path / "new")


def test_options_build_the_checked_config():
    parser = argparse.ArgumentParser()
    add_options(parser, TOY)
    args = parser.parse_args(["--quick", "--schemes", "two, three", "--scale", "3", "--seeds", "2"])
    config = config_from_args(TOY, args)
    assert (config.schemes, config.scale, config.seeds, config.epochs) == (
        ("two", "three"),
        3.0,
        2,
        1,
    )
    assert config_from_args(TOY, parser.parse_args([])).schemes == SCHEMES
    with pytest.raises(ValueError, match="`epochs` must be a positive integer"):
        config_from_args(TOY, parser.parse_args(["--epochs", "0"]))


def test_lazy_imports_its_module_on_the_first_call_only(monkeypatch):
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    to_hls = lazy("colorsys", "rgb_to_hls")
    assert "colorsys" not in sys.modules
    assert to_hls(1.0, 0.0, 0.0) == (0.0, 0.5, 1.0)
    assert "colorsys" in sys.modules


def test_the_library_never_imports_the_experiments():
    # keras_initlab.compare (the experiments and their harness) is imported by the command
    # line only; no other module of the package names it.
    package = Path(keras_initlab.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative.startswith("compare/") or relative == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [
                f"{relative}: {n}" for n in names if n.startswith("keras_initlab.compare")
            ]
    assert offenders == []


def test_ctrl_c_in_residual_writes_a_partial_report_as_compare_does(tmp_path, monkeypatch, capsys):
    from keras_initlab.cli import EXIT_INTERRUPTED, main
    from keras_initlab.compare.residual import experiment

    run = experiment._Fitter.run
    seen = []

    def ctrl_c_in_second_run(self, *args, **kwargs):
        seen.append(args)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return run(self, *args, **kwargs)

    monkeypatch.setattr(experiment._Fitter, "run", ctrl_c_in_second_run)
    out, json_path = tmp_path / "report", tmp_path / "partial.json"
    argv = ["residual", "--quick", "--architectures", "mlp", "--schemes", "he_normal"]
    argv += ["--quiet", "--out", str(out), "--json", str(json_path)]
    assert main(argv) == EXIT_INTERRUPTED
    assert "partial results of 1 finished runs" in capsys.readouterr().err
    for saved in (
        json.loads(json_path.read_text()),
        json.loads((out / "results.json").read_text()),
    ):
        assert saved["partial"] is True
        assert [(r["scheme"], r["seed"]) for r in saved["runs"]] == [("he_normal", 0)]
    summary = (out / "summary.md").read_text()
    assert "**Partial report: the run was interrupted.** Finished: mlp he_normal s0" in summary

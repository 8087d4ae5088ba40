"""Ctrl-C during `keras-initlab compare`: the finished runs become a marked partial report."""

from __future__ import annotations

import io
import json

from keras_initlab.cli import EXIT_INTERRUPTED, main
from keras_initlab.compare.trainer import Trainer


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_ctrl_c_keeps_the_finished_runs(tmp_path, monkeypatch):
    train = Trainer.train

    def ctrl_c_in_second_scheme(self, name, *, activation, on_epoch=None):
        if name == "he_normal":  # half-way through its first epoch of two
            on_epoch(0, {"loss": 1.0, "val_accuracy": 0.5})
            raise KeyboardInterrupt
        return train(self, name, activation=activation, on_epoch=on_epoch)

    monkeypatch.setattr(Trainer, "train", ctrl_c_in_second_scheme)
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    out, json_path = tmp_path / "report", tmp_path / "partial.json"
    argv = ["compare", "--quick", "--schemes", "zeros,he_normal,xavier_normal"]
    argv += ["--contrast-activation", "none", "--out", str(out), "--json", str(json_path)]
    assert main(argv) == EXIT_INTERRUPTED
    err = terminal.getvalue()
    # the bar of the interrupted run was drawn with \r and no newline; the message starts
    # on a line of its own
    bar, message = err.split("\r")[-1].split("\n")[:2]
    assert bar.startswith("[ 2/3] he_normal (relu)")
    assert message.startswith("keras-initlab: interrupted; partial results of 1 finished runs")
    for saved in (
        json.loads(json_path.read_text()),
        json.loads((out / "results.json").read_text()),
    ):
        assert saved["partial"] is True
        assert list(saved["schemes"]) == ["zeros"]
    summary = (out / "summary.md").read_text()
    assert "**Partial report: the run was interrupted.**" in summary
    assert "not run: he_normal, xavier_normal" in summary


def test_ctrl_c_before_any_run_finished_writes_nothing(tmp_path, monkeypatch, capsys):
    def ctrl_c(self, name, *, activation, on_epoch=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train", ctrl_c)
    out = tmp_path / "report"
    assert main(["compare", "--quick", "--schemes", "zeros", "--out", str(out)]) == 130
    assert "interrupted before any run finished; nothing written" in capsys.readouterr().err
    assert not out.exists()

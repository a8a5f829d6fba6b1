"""The experiments (``python -m ferroptim``): the sampler's partitions, the lecture's
rates, scalar AdaGrad's robustness to ``b0``, the MNIST loader, the models'
gradients and the command line. References are the lecture's formulas written out
in NumPy, finite differences, and files these tests write themselves."""

from __future__ import annotations

import gzip
import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ferroptim as fo

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

from ferroptim.experiments import b0_sweep, cli, compare, data, models, rates  # noqa: E402

# --- MinibatchSampler ------------------------------------------------------------


@pytest.mark.parametrize("m, batch_size", [(10, 3), (12, 4), (1, 5), (0, 2), (1000, 64), (7, 7)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_each_epoch_partitions_range_m(m, batch_size, drop_last):
    sampler = fo.MinibatchSampler(m, batch_size, seed=3, drop_last=drop_last)
    full, rest = divmod(m, batch_size)
    for _ in range(3):
        batches = list(sampler)
        assert len(batches) == len(sampler) == full + (rest > 0 and not drop_last)
        sizes = [len(b) for b in batches]
        assert sizes == [batch_size] * full + ([rest] if rest and not drop_last else [])
        seen = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
        assert all(b.dtype == np.int64 for b in batches)
        assert len(np.unique(seen)) == len(seen)  # no index twice
        if not drop_last:
            np.testing.assert_array_equal(np.sort(seen), np.arange(m))  # [m] covered exactly once
        else:
            assert set(seen.tolist()) <= set(range(m)) and len(seen) == full * batch_size


def test_epochs_are_fresh_permutations_and_reproducible():
    a, b = fo.MinibatchSampler(100, 10, seed=1), fo.MinibatchSampler(100, 10, seed=1)
    epochs_a = [np.concatenate(list(a)) for _ in range(4)]
    epochs_b = [np.concatenate(list(b)) for _ in range(4)]
    for x, y in zip(epochs_a, epochs_b):
        np.testing.assert_array_equal(x, y)
    assert len({tuple(e) for e in epochs_a}) == 4  # a new order every epoch
    other = np.concatenate(list(fo.MinibatchSampler(100, 10, seed=2)))
    assert not np.array_equal(other, epochs_a[0])
    assert a.epoch == 4


def test_any_epoch_can_be_drawn_directly():
    sampler = fo.MinibatchSampler(50, 8, seed=9)
    epochs = [np.concatenate(list(sampler)) for _ in range(3)]
    np.testing.assert_array_equal(sampler.permutation(1), epochs[1])
    sampler.set_epoch(1)
    np.testing.assert_array_equal(np.concatenate(list(sampler)), epochs[1])
    assert sampler.epoch == 2


def test_sampler_pickles_with_its_epoch():
    sampler = fo.MinibatchSampler(30, 4, seed=5, drop_last=True)
    list(sampler)
    copy = pickle.loads(pickle.dumps(sampler))
    assert (copy.m, copy.batch_size, copy.seed, copy.drop_last, copy.epoch) == (30, 4, 5, True, 1)
    np.testing.assert_array_equal(np.concatenate(list(copy)), np.concatenate(list(sampler)))


def test_permutations_look_uniform():
    """Where index 0 lands, over 4000 epochs of m = 8: a chi-square test at a loose level."""
    sampler = fo.MinibatchSampler(8, 8, seed=11)
    positions = np.array([int(np.flatnonzero(sampler.permutation(e) == 0)[0]) for e in range(4000)])
    counts = np.bincount(positions, minlength=8)
    chi2 = ((counts - 500) ** 2 / 500).sum()
    assert chi2 < 30  # 7 degrees of freedom: P(chi2 > 30) ≈ 1e-4


def test_batches_iterator_reports_what_is_left():
    it = iter(fo.MinibatchSampler(10, 4))
    assert len(it) == 3
    next(it)
    assert len(it) == 2
    assert len(list(it)) == 2
    with pytest.raises(StopIteration):
        next(it)


@pytest.mark.parametrize(
    "args, match",
    [
        ((-1, 2), "m must be"),
        ((10, 0), "batch_size must be"),
        ((10, 2, -3), "seed must be"),
        ((10, 2, 2**64), "seed must be"),
    ],
)
def test_sampler_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        fo.MinibatchSampler(*args)


def test_sampler_rejects_non_integers():
    with pytest.raises(TypeError):
        fo.MinibatchSampler(10.5, 2)
    with pytest.raises(ValueError, match="epoch must be"):
        fo.MinibatchSampler(10, 2).set_epoch(-1)


# --- rates ---------------------------------------------------------------------


@pytest.mark.parametrize("kappa", [100.0, 1000.0])
def test_measured_rates_match_the_lecture(kappa):
    results = {r.method.name: r for r in rates.run(kappa=kappa, dim=60, seed=1)}
    sk = math.sqrt(kappa)
    assert results["GD"].rate == pytest.approx((kappa - 1) / (kappa + 1), rel=0.03)
    assert results["Polyak"].rate == pytest.approx((sk - 1) / (sk + 1), rel=0.03)
    # NAG beats the lecture's general bound on a quadratic, reaching 1 - 1/sqrt(kappa).
    assert results["Nesterov"].rate <= math.sqrt((sk - 1) / sk)
    assert results["Nesterov"].rate == pytest.approx(1 - 1 / sk, rel=0.03)


def test_fo_sgd_runs_the_lecture_formulas():
    """``fo.SGD(momentum)`` and ``nesterov=True`` retrace the lecture's heavy-ball and
    NAG recursions, written out here in NumPy."""
    A = rates.quadratic(50.0, 20, seed=4)
    theta0 = np.random.default_rng(5).normal(size=20)
    gd, polyak, nesterov = rates.methods(50.0, L=50.0)

    alpha = gd.settings["lr"]
    theta, expected = theta0.copy(), [np.linalg.norm(theta0)]
    for _ in range(40):
        theta = theta - alpha * A @ theta
        expected.append(np.linalg.norm(theta))
    np.testing.assert_allclose(rates.errors(A, gd, theta0, 40, 0.0), expected, rtol=1e-12)

    alpha, beta = polyak.settings["lr"], polyak.settings["momentum"]
    prev, theta, expected = theta0.copy(), theta0.copy(), [np.linalg.norm(theta0)]
    for _ in range(40):  # θ_{k+1} = θ_k + β(θ_k − θ_{k−1}) − α grad L(θ_k)
        prev, theta = theta, theta + beta * (theta - prev) - alpha * A @ theta
        expected.append(np.linalg.norm(theta))
    np.testing.assert_allclose(rates.errors(A, polyak, theta0, 40, 0.0), expected, rtol=1e-10)

    alpha, beta = nesterov.settings["lr"], nesterov.settings["momentum"]
    prev, theta = theta0.copy(), theta0.copy()
    lookahead = [np.linalg.norm(theta0)]
    for _ in range(40):  # θ̂ = θ_k + β(θ_k − θ_{k−1});  θ_{k+1} = θ̂ − α grad L(θ̂)
        hat = theta + beta * (theta - prev)
        prev, theta = theta, hat - alpha * A @ hat
        lookahead.append(np.linalg.norm(theta + beta * (theta - prev)))  # fo.SGD holds θ̂
    np.testing.assert_allclose(rates.errors(A, nesterov, theta0, 40, 0.0), lookahead, rtol=1e-10)


def test_rates_reject_bad_problems():
    with pytest.raises(ValueError, match="condition number"):
        rates.quadratic(0.5, 10, 0)
    with pytest.raises(ValueError, match="dimension"):
        rates.quadratic(10.0, 1, 0)


# --- b0 sweep --------------------------------------------------------------------


def test_adagrad_norm_is_robust_to_b0_where_sgd_collapses():
    """Ward et al.'s claim on a reduced grid: AdaGrad-Norm trains from every small
    b0, SGD with the fixed step 1/b0 does not; where SGD works, they agree."""
    digits = data.digits(seed=0)
    points = b0_sweep.run(
        digits,
        b0s=[0.01, 0.1, 1.0, 10.0],
        model_names=["mlp"],
        setting_names=["minibatch", "batch"],
        snapshots=[10],
        batch_size=64,
        hidden=32,
        seed=0,
        progress=False,
    )
    acc = {(p.setting, p.method, p.b0): p.history.test_acc[-1] for p in points}
    for setting in ("minibatch", "batch"):
        for b0 in (0.01, 0.1, 1.0):
            assert acc[(setting, "AdaGrad-Norm", b0)] > 0.8, (setting, b0)
        assert acc[(setting, "SGD", 0.01)] < 0.35, setting  # step 100: no better than chance
        for b0 in (0.01, 0.1, 1.0, 10.0):
            assert acc[(setting, "AdaGrad-Norm", b0)] >= acc[(setting, "SGD", b0)] - 0.05


# --- data ------------------------------------------------------------------------


def _idx(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_mnist(directory, rng, gz: bool, n_train: int = 40, n_test: int = 12):
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        raw = _idx(array, 0x08)
        if gz:
            (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_loader_reads_idx_files(tmp_path, rng, gz):
    arrays = _write_mnist(tmp_path, rng, gz)
    mnist = data.mnist(tmp_path)
    np.testing.assert_array_equal(mnist.x_train, arrays["train-images-idx3-ubyte"].reshape(40, 784) / 255.0)
    np.testing.assert_array_equal(mnist.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(mnist.x_test, arrays["t10k-images-idx3-ubyte"].reshape(12, 784) / 255.0)
    np.testing.assert_array_equal(mnist.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert mnist.features == 784


@pytest.mark.parametrize(
    "array, code",
    [(np.arange(6, dtype=">i4").reshape(2, 3), 0x0C), (np.linspace(0, 1, 5, dtype=">f8"), 0x0E)],
)
def test_read_idx_other_types(tmp_path, array, code):
    path = tmp_path / "x.idx"
    path.write_bytes(_idx(array, code))
    got = data.read_idx(path)
    np.testing.assert_array_equal(got, array)
    assert got.dtype.isnative


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"", "not an IDX file"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x02ab", "not an IDX file"),
        (b"\x00\x00\x08\x02\x00\x00", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "needs 13 bytes, the file has 11"),
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path, raw, match):
    path = tmp_path / "bad"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        data.read_idx(path)


def test_mnist_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        data.mnist(tmp_path)


def test_digits_split_is_fixed_by_the_seed():
    a, b, c = data.digits(seed=0), data.digits(seed=0), data.digits(seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.y_test, c.y_test)
    assert len(a.y_train) + len(a.y_test) == 1797 and a.classes == 10
    assert a.x_train.min() >= 0 and a.x_train.max() <= 1


# --- models ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["logreg", "mlp"])
def test_model_gradients_match_finite_differences(name, rng):
    model = models.build(name, 5, 3, hidden=4, seed=2)
    for p in model.params.values():
        p[...] = rng.normal(size=p.shape)  # leave the all-zero start, where ReLU kinks sit
    x, y = rng.normal(size=(7, 5)), rng.integers(0, 3, 7)
    model.loss_and_grads(x, y)
    for key, p in model.params.items():
        numeric = np.zeros(p.shape)
        for idx in np.ndindex(p.shape):
            saved = p[idx]
            p[idx] = saved + 1e-6
            up = model.evaluate(x, y)[0]
            p[idx] = saved - 1e-6
            down = model.evaluate(x, y)[0]
            p[idx] = saved
            numeric[idx] = (up - down) / 2e-6
        np.testing.assert_allclose(p.grad, numeric, rtol=1e-5, atol=1e-8, err_msg=key)


# --- command line ----------------------------------------------------------------


def test_rates_command_writes_plot_and_json(tmp_path, capsys):
    cli.main(["rates", "--kappa", "50", "--dim", "30", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "(κ−1)/(κ+1)" in printed and str(tmp_path / "rates.png") in printed
    payload = json.loads((tmp_path / "rates.json").read_text())
    assert [m["method"] for m in payload["methods"]] == ["GD", "Polyak", "Nesterov"]
    assert (tmp_path / "rates.png").stat().st_size > 10_000


def _compare(out, *extra):
    cli.main(
        [
            "compare",
            "--epochs",
            "2",
            "--optimizers",
            "sgd,adam,adagrad-norm",
            "--hidden",
            "8",
            "--no-progress",
        ]
        + ["--out", str(out), *extra]
    )
    return json.loads((out / "compare.json").read_text())


def test_compare_is_deterministic_and_writes_its_files(tmp_path, capsys):
    first, second = _compare(tmp_path / "a"), _compare(tmp_path / "b")
    printed = capsys.readouterr().out
    assert "test acc" in printed and "compare.png" in printed
    for run_a, run_b in zip(first["runs"], second["runs"]):
        for key in ("train_loss", "test_loss", "train_acc", "test_acc", "lr"):
            assert run_a[key] == run_b[key]
    assert [(r["model"], r["optimizer"]) for r in first["runs"]] == [
        (m, o) for m in ("logreg", "mlp") for o in ("SGD", "Adam", "AdaGrad-Norm")
    ]
    rows = (tmp_path / "a" / "compare.csv").read_text().splitlines()
    assert rows[0].startswith("model,optimizer,lr,epoch,train_loss") and len(rows) == 1 + 6 * 3
    assert (tmp_path / "a" / "compare.png").stat().st_size > 10_000


def test_compare_tunes_unless_told_not_to(tmp_path):
    tuned = _compare(tmp_path / "t", "--models", "logreg")
    fixed = _compare(tmp_path / "f", "--models", "logreg", "--no-tune", "--lr", "adam=0.02")
    lrs = {r["optimizer"]: r["lr"] for r in fixed["runs"]}
    assert lrs == {"SGD": 1.5, "Adam": 0.02, "AdaGrad-Norm": 10.0}
    assert len(tuned["runs"]) == 3


def test_compare_on_mnist_idx_files(tmp_path, rng):
    _write_mnist(tmp_path, rng, gz=True)
    out = _compare(tmp_path / "out", "--dataset", "mnist", "--data-dir", str(tmp_path), "--no-tune")
    assert out["settings"]["dataset"] == "mnist"
    assert all(len(r["train_loss"]) == 3 for r in out["runs"])


def test_compare_runs_torchs_other_optimizers_on_request(tmp_path):
    """The default is the lecture's eight; ``--optimizers`` also takes NAdam, RAdam,
    Adamax, Lion and AdamW, each run by its ferroptim class from the same start."""
    default = cli.parser().parse_args(["compare"]).optimizers
    assert default == [
        "SGD",
        "Momentum",
        "Nesterov",
        "AdaGrad",
        "RMSProp",
        "AdaDelta",
        "Adam",
        "AdaGrad-Norm",
    ]
    assert cli.parser().parse_args(["compare", "--optimizers", "all"]).optimizers == list(compare.ALL_METHODS)
    names = "nadam,radam,adamax,lion,adamw"
    out = _compare(tmp_path, "--optimizers", names, "--models", "logreg", "--no-tune")
    runs = {r["optimizer"]: r for r in out["runs"]}
    assert list(runs) == ["NAdam", "RAdam", "Adamax", "Lion", "AdamW"]
    for name, r in runs.items():
        assert r["lr"] == compare.ALL_METHODS[name].kwargs["lr"]
        assert r["train_loss"][-1] < r["train_loss"][0], name  # each one trained
    curves = {tuple(r["train_loss"]) for r in runs.values()}
    assert len(curves) == 5  # five different update rules


def test_b0_sweep_command(tmp_path):
    cli.main(
        ["b0-sweep", "--b0-points", "3", "--epochs", "1", "2", "--models", "logreg", "--no-progress"]
        + ["--out", str(tmp_path)]
    )
    for name in ("b0_sweep_batch.png", "b0_sweep_minibatch.png", "b0_sweep.csv", "b0_sweep.json"):
        assert (tmp_path / name).is_file()
    runs = json.loads((tmp_path / "b0_sweep.json").read_text())["runs"]
    assert len(runs) == 2 * 2 * 3 and all(r["epochs"] == [0, 1, 2] for r in runs)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "--optimizers", "adamm"], "unknown"),
        (["compare", "--epochs", "0"], "positive integer"),
        (["compare", "--lr", "adam"], "NAME=LR"),
        (["rates", "--kappa", "-1"], "must be > 0"),
    ],
)
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_missing_mnist_is_a_clean_exit(tmp_path):
    with pytest.raises(SystemExit, match="no train-images-idx3-ubyte"):
        cli.main(["compare", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="needs --data-dir"):
        cli.main(["compare", "--dataset", "mnist", "--out", str(tmp_path)])


@pytest.mark.parametrize(
    "command", [[sys.executable, "-m", "ferroptim"], [str(Path(sys.executable).parent / "ferroptim")]]
)
def test_module_and_console_script_run(command):
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, check=True)
    assert "rates" in result.stdout and "b0-sweep" in result.stdout


# --- figures and progress --------------------------------------------------------


@pytest.fixture(scope="module")
def small_results():
    """Tiny runs of the three experiments, to draw."""
    digits = data.digits(seed=0)
    from ferroptim.experiments import compare

    runs = compare.run(
        digits,
        model_names=["logreg", "mlp"],
        optimizer_names=list(compare.METHODS),
        epochs=2,
        batch_size=256,
        hidden=8,
        seed=0,
        progress=False,
    )
    points = b0_sweep.run(
        digits,
        b0s=[0.1, 10.0],
        model_names=["logreg"],
        setting_names=["minibatch"],
        snapshots=[1, 2],
        batch_size=256,
        hidden=8,
        seed=0,
        progress=False,
    )
    return {"compare": runs, "b0_sweep": points, "rates": rates.run(kappa=10.0, dim=10)}


def _plots():
    from ferroptim.experiments import compare

    return {"compare": (compare.plot, 2), "b0_sweep": (b0_sweep.plot, 4), "rates": (rates.plot, 1)}


@pytest.mark.parametrize("name", ["compare", "b0_sweep", "rates"])
def test_plot_returns_its_figure_and_draws_into_given_axes(name, small_results):
    from matplotlib.figure import Figure

    plot, panels = _plots()[name]
    fig = plot(small_results[name])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == panels
    assert all(ax.lines for ax in fig.axes)

    own = Figure()
    axes = own.subplots(1, panels, squeeze=False)[0]
    assert plot(small_results[name], ax=axes if panels > 1 else axes[0]) is own
    assert all(ax.lines for ax in axes)
    with pytest.raises(ValueError, match="panel"):
        plot(small_results[name], ax=list(Figure().subplots(1, panels + 1)))


@pytest.mark.parametrize("name", ["compare", "b0_sweep"])
def test_legends_stand_outside_every_panel(name, small_results):
    """A legend drawn over a panel hides data: it must not overlap any axes."""
    plot, _ = _plots()[name]
    fig = plot(small_results[name], {"dataset": "digits", "batch_size": 256, "seed": 0})
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()


def test_plot_figures_are_not_left_open_in_pyplot(small_results):
    """Jupyter shows a returned figure once, as the cell's value, not a second time."""
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    rates.plot(small_results["rates"])
    assert plt.get_fignums() == before


def test_tqdm_is_imported_only_with_progress():
    code = (
        "import sys\n"
        "from ferroptim.experiments import compare, data\n"
        "compare.run(data.digits(), model_names=['logreg'], optimizer_names=['SGD'], epochs=1,"
        " batch_size=512, hidden=4, seed=0, progress={progress})\n"
        "print('tqdm' in sys.modules)\n"
    )
    for progress in (False, True):
        out = subprocess.run(
            [sys.executable, "-c", code.format(progress=progress)], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == str(progress)

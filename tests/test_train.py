"""The makemore MLP: the model against the seeds' code, training, checkpoints, resume, and the CLI."""

import json
import math
import random
import re
import signal

import pytest
import torch
import torch.nn.functional as F

from seeds_reference import seeds_forward
from symbp.cli import main
from symbp.makemore import train as train_mod
from symbp.makemore.data import TrainError, build_vocab, load_words, split
from symbp.makemore.model import BN_EPS, PARAM_NAMES, calibrate, count_params, init_params, sample, split_loss
from symbp.makemore.steps import AutogradStep, make_step
from symbp.makemore.train import (
    CheckpointError,
    TrainConfig,
    TrainingError,
    TrainingInterrupted,
    load_checkpoint,
    train,
)

SMALL = dict(steps=60, batch_size=8, n_hidden=16, n_embd=4, block_size=3, checkpoint_every=25,
             backward="autograd", quiet=True)


@pytest.fixture(scope="module")
def words_file(tmp_path_factory):
    """200 random words of 3-8 letters: a vocabulary of 10 letters plus '.'."""
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 8))) for _ in range(200)]
    path = tmp_path_factory.mktemp("data") / "words.txt"
    path.write_text("\n".join(words) + "\n")
    return path


def config(words_file, out, **kw):
    return TrainConfig(input=str(words_file), out=str(out), **{**SMALL, **kw})


def tiny_model(dtype=torch.float32, n=8, seed=1):
    """A small model and a batch: vocabulary 7, block 3, n_embd 2, n_hidden 5."""
    params = init_params(7, 3, n_embd=2, n_hidden=5, seed=seed, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    return params, torch.randint(0, 7, (n, 3), generator=g), torch.randint(0, 7, (n,), generator=g)


# --- the model ------------------------------------------------------------------------------------


def test_init_params_draw_the_seeds_tensors_in_the_seeds_order():
    params = init_params(27, 3)
    assert tuple(params) == PARAM_NAMES
    assert count_params(params) == 12_297
    g = torch.Generator().manual_seed(2147483647)
    ref = {"C": torch.randn((27, 10), generator=g),
           "W1": torch.randn((30, 200), generator=g) * (5 / 3) / (30**0.5),
           "b1": torch.randn(200, generator=g) * 0.1,
           "W2": torch.randn((200, 27), generator=g) * 0.1,
           "b2": torch.randn(27, generator=g) * 0.1,
           "bngain": torch.randn((1, 200), generator=g) * 0.1 + 1.0,
           "bnbias": torch.randn((1, 200), generator=g) * 0.1}
    for k in PARAM_NAMES:
        assert torch.equal(params[k], ref[k]), k
    assert not any(p.requires_grad for p in params.values())
    assert init_params(27, 3, dtype=torch.float64)["W1"].dtype == torch.float64


def test_autograd_step_loss_is_the_seeds_loss():
    params, Xb, Yb = tiny_model()
    loss, grads = AutogradStep()(params, Xb, Yb)
    assert loss.shape == () and loss.grad_fn is None
    torch.testing.assert_close(loss, seeds_forward(params, Xb, Yb))
    assert tuple(grads) == PARAM_NAMES
    for k in PARAM_NAMES:
        assert grads[k].shape == params[k].shape and grads[k].grad_fn is None
    assert not any(p.requires_grad for p in params.values())


def test_autograd_step_gradients_match_finite_differences():
    params, Xb, Yb = tiny_model(torch.float64, n=6)
    _, grads = AutogradStep()(params, Xb, Yb)
    h = 1e-6
    for k in PARAM_NAMES:
        numeric = torch.zeros_like(params[k])
        flat = params[k].view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            up = seeds_forward(params, Xb, Yb).item()
            flat[i] = old - h
            down = seeds_forward(params, Xb, Yb).item()
            flat[i] = old
            numeric.view(-1)[i] = (up - down) / (2 * h)
        torch.testing.assert_close(grads[k], numeric, rtol=1e-5, atol=1e-8, msg=k)


def test_generated_step_agrees_with_autograd():
    params, Xb, Yb = tiny_model(n=32)
    step = make_step("generated")
    loss, grads = step(params, Xb, Yb)
    ref_loss, ref = AutogradStep()(params, Xb, Yb)
    torch.testing.assert_close(loss, ref_loss)
    assert set(grads) == set(PARAM_NAMES)
    for k in PARAM_NAMES:
        torch.testing.assert_close(grads[k], ref[k], msg=k)
        assert grads[k].grad_fn is None


def test_make_step_names_the_choices():
    assert isinstance(make_step("autograd"), AutogradStep)
    with pytest.raises(TrainError, match="generated or autograd"):
        make_step("numeric")


def test_a_batch_of_one_is_refused():
    params, Xb, Yb = tiny_model(n=1)
    with pytest.raises(TrainError, match="at least 2"):
        AutogradStep()(params, Xb, Yb)
    with pytest.raises(TrainError, match="batch size must be at least 2"):
        TrainConfig(batch_size=1).validate()


def test_calibrate_is_the_mean_and_bessel_variance_over_all_examples():
    params, _, _ = tiny_model()
    X = torch.randint(0, 7, (103, 3), generator=torch.Generator().manual_seed(3))
    stats = calibrate(params, X, chunk=10)
    hpreact = params["C"][X].view(103, -1) @ params["W1"] + params["b1"]
    torch.testing.assert_close(stats["bnmean"], hpreact.mean(0, keepdim=True))
    torch.testing.assert_close(stats["bnvar"], hpreact.var(0, keepdim=True, unbiased=True))


@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_calibrate_matches_two_pass_float64_statistics(offset):
    """The moment form (no hidden layer built) against torch's two-pass var in float64, also when
    a large bias puts the mean far from zero (where a one-pass variance would cancel)."""
    params, _, _ = tiny_model()
    params = {k: v.double() for k, v in params.items()}
    params["b1"] = params["b1"] + offset
    X = torch.randint(0, 7, (257, 3), generator=torch.Generator().manual_seed(5))
    stats = calibrate(params, X, chunk=50)
    hprebn = params["C"][X].reshape(257, -1) @ params["W1"] + params["b1"]
    var = hprebn.var(0, keepdim=True)
    torch.testing.assert_close(stats["bnmean"], hprebn.mean(0, keepdim=True), rtol=1e-12, atol=0)
    torch.testing.assert_close(stats["bnvar"], var, rtol=1e-14 * (1 + offset**2 / var.min().item()), atol=0)
    assert stats["bnmean"].dtype == stats["bnvar"].dtype == torch.float64


def test_split_loss_uses_the_calibrated_statistics_in_chunks():
    params, _, _ = tiny_model()
    g = torch.Generator().manual_seed(4)
    X, Y = torch.randint(0, 7, (57, 3), generator=g), torch.randint(0, 7, (57,), generator=g)
    stats = {"bnmean": torch.randn(1, 5, generator=g), "bnvar": torch.rand(1, 5, generator=g) + 0.5}
    hpreact = params["C"][X].view(57, -1) @ params["W1"] + params["b1"]
    h = torch.tanh(params["bngain"] * (hpreact - stats["bnmean"]) / torch.sqrt(stats["bnvar"] + BN_EPS)
                   + params["bnbias"])
    expected = F.cross_entropy(h @ params["W2"] + params["b2"], Y).item()
    assert split_loss(params, stats, X, Y, chunk=10) == pytest.approx(expected, rel=1e-6)


def test_sample_is_the_seeds_sampling_loop():
    params, _, _ = tiny_model()
    stats = {"bnmean": torch.zeros(1, 5), "bnvar": torch.ones(1, 5)}
    itos = list(".abcdef")
    names = sample(params, stats, itos, 3, n=8, seed=5)
    g = torch.Generator().manual_seed(5)
    expected = []
    for _ in range(8):
        out, context = [], [0, 0, 0]
        while True:
            embcat = params["C"][torch.tensor([context])].view(1, -1)
            hpreact = embcat @ params["W1"] + params["b1"]
            hpreact = params["bngain"] * (hpreact - stats["bnmean"]) * (stats["bnvar"] + 1e-5) ** -0.5 \
                + params["bnbias"]
            probs = F.softmax(torch.tanh(hpreact) @ params["W2"] + params["b2"], dim=1)
            ix = torch.multinomial(probs, num_samples=1, generator=g).item()
            context = context[1:] + [ix]
            if ix == 0:
                break
            out.append(itos[ix])
        expected.append("".join(out))
    assert names == expected
    assert sample(params, stats, itos, 3, n=8, seed=5) == names
    assert sample(params, stats, itos, 3, n=8, seed=6) != names


# --- training -------------------------------------------------------------------------------------


def seeds_training_loop(words_file, steps, batch_size, n_hidden, n_embd, block_size, lr=0.1,
                        seed=2147483647, **_):
    """The seeds' exercise-4 loop with loss.backward(): the reference for ``train``."""
    words = load_words(words_file)
    stoi, itos = build_vocab(words)
    Xtr, Ytr = split(words, block_size, stoi).train
    g = torch.Generator().manual_seed(seed)
    fan_in = n_embd * block_size
    C = torch.randn((len(itos), n_embd), generator=g)
    W1 = torch.randn((fan_in, n_hidden), generator=g) * (5 / 3) / (fan_in**0.5)
    b1 = torch.randn(n_hidden, generator=g) * 0.1
    W2 = torch.randn((n_hidden, len(itos)), generator=g) * 0.1
    b2 = torch.randn(len(itos), generator=g) * 0.1
    bngain = torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0
    bnbias = torch.randn((1, n_hidden), generator=g) * 0.1
    parameters = [C, W1, b1, W2, b2, bngain, bnbias]
    for p in parameters:
        p.requires_grad = True
    lossi = []
    for i in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
        Xb, Yb = Xtr[ix], Ytr[ix]
        hprebn = C[Xb].view(batch_size, -1) @ W1 + b1
        bnmean = hprebn.mean(0, keepdim=True)
        bnvar = hprebn.var(0, keepdim=True, unbiased=True)
        hpreact = bngain * (hprebn - bnmean) * (bnvar + 1e-5) ** -0.5 + bnbias
        loss = F.cross_entropy(torch.tanh(hpreact) @ W2 + b2, Yb)
        for p in parameters:
            p.grad = None
        loss.backward()
        step_lr = lr if i < steps // 2 else lr / 10
        for p in parameters:
            p.data += -step_lr * p.grad
        lossi.append(loss.log10().item())
    return dict(zip(PARAM_NAMES, (p.detach() for p in parameters))), lossi


def test_train_follows_the_seeds_loop_and_writes_its_files(words_file, tmp_path):
    cfg = config(words_file, tmp_path / "run")
    metrics = train(cfg)
    ref_params, ref_lossi = seeds_training_loop(words_file, **SMALL)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 60
    for k in PARAM_NAMES:
        torch.testing.assert_close(ckpt["params"][k], ref_params[k], rtol=1e-4, atol=1e-5, msg=k)
    torch.testing.assert_close(ckpt["losses"], torch.tensor(ref_lossi), rtol=1e-4, atol=1e-5)
    assert ckpt["itos"] == list(".abcdefghij")
    assert ckpt["sizes"] == {"vocab_size": 11, "block_size": 3, "n_embd": 4, "n_hidden": 16}

    # the reported losses are those of the calibrated model on each split
    words = load_words(words_file)
    parts = split(words, 3)
    stats = calibrate(ckpt["params"], parts.train[0])
    for name, (X, Y) in zip(("train", "val", "test"), parts):
        assert metrics["loss"][name] == pytest.approx(split_loss(ckpt["params"], stats, X, Y), rel=1e-6)
    assert metrics["loss"]["train"] < math.log(11)  # it learned something beyond uniform guessing
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["loss"] == metrics["loss"]
    assert on_disk["steps"] == 60 and on_disk["backward"] == "autograd"
    assert on_disk["config"]["n_hidden"] == 16 and on_disk["wall_seconds"] >= 0
    assert (tmp_path / "run" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_learning_rate_drops_tenfold_at_halfway():
    cfg = TrainConfig(steps=200_000)
    assert [cfg.lr_at(s) for s in (0, 99_999, 100_000, 199_999)] == [0.1, 0.1, 0.01, 0.01]


@pytest.mark.parametrize("stop_at", [37, 50])  # between checkpoints, and right on one
def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(words_file, tmp_path, stop_at):
    whole = train(config(words_file, tmp_path / "whole"))

    def stop(step, loss):
        if step == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match=f"step {stop_at}.*--resume") as e:
        train(config(words_file, tmp_path / "split"), callback=stop)
    assert e.value.step == stop_at and e.value.saved
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["step"] == stop_at
    resumed = train(config(words_file, tmp_path / "split", resume=True))

    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for k in PARAM_NAMES:
        assert torch.equal(a["params"][k], b["params"][k]), k
    assert torch.equal(a["losses"], b["losses"]) and len(b["losses"]) == 60
    assert torch.equal(a["generator"], b["generator"])
    assert resumed["loss"] == whole["loss"]


def test_ctrl_c_is_taken_at_the_next_step_boundary(words_file, tmp_path):
    def press(step, loss):
        if step == 12:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as e:
        train(config(words_file, tmp_path / "run"), callback=press)
    assert e.value.step == 12 and e.value.saved
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 12
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(words_file, tmp_path):
    def press_twice(step, loss):
        if step == 30:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="step 25 is kept") as e:
        train(config(words_file, tmp_path / "run"), callback=press_twice)
    assert e.value.step == 25 and e.value.saved
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 25


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(words_file, tmp_path, monkeypatch):
    class NanAtStep8(AutogradStep):
        calls = 0

        def __call__(self, params, Xb, Yb):
            NanAtStep8.calls += 1
            loss, grads = super().__call__(params, Xb, Yb)
            return (loss * float("nan") if NanAtStep8.calls == 8 else loss), grads

    monkeypatch.setattr(train_mod, "make_step", lambda backward: NanAtStep8())
    with pytest.raises(TrainingError, match="nan at step 7.*step 5 is kept"):
        train(config(words_file, tmp_path / "run", checkpoint_every=5))
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["step"] == 5 and all(torch.isfinite(p).all() for p in ckpt["params"].values())


def test_resume_refuses_another_model_size_or_other_data(words_file, tmp_path):
    out = tmp_path / "run"
    train(config(words_file, out, steps=10))
    with pytest.raises(CheckpointError, match="n_hidden 16, but this run has 32.*--n-hidden 16"):
        train(config(words_file, out, steps=10, n_hidden=32, resume=True))
    other = tmp_path / "other.txt"
    other.write_text("\n".join(["xyz", "zyx", "yyx"] * 10) + "\n")
    with pytest.raises(CheckpointError, match="vocab_size"):
        train(config(other, out, steps=10, resume=True))
    shuffled = tmp_path / "same_letters.txt"
    shuffled.write_text("\n".join(reversed(load_words(words_file))) + "\n")
    with pytest.raises(CheckpointError, match="other data"):
        train(config(shuffled, out, steps=10, resume=True))
    with pytest.raises(CheckpointError, match="past --steps"):
        train(config(words_file, out, steps=5, resume=True))
    with pytest.raises(CheckpointError, match="already exists.*--resume"):
        train(config(words_file, out, steps=10))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(config(words_file, tmp_path / "empty", resume=True))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        train(config(words_file, tmp_path / "junk", resume=True))


@pytest.mark.parametrize("field, value, message", [
    ("steps", 0, "steps must be a positive"),
    ("lr", -0.1, "learning rate"),
    ("lr", float("nan"), "learning rate"),
    ("backward", "numeric", "unknown backward"),
    ("device", "tpu9", "device"),
    ("n_hidden", 0, "n-hidden"),
])
def test_bad_settings_are_train_errors(field, value, message):
    with pytest.raises(TrainError, match=message):
        TrainConfig(**{field: value}).validate()


# --- the command line -----------------------------------------------------------------------------


def run_cli(*argv):
    """The command as a user runs it: ``symbp.cli.main``, exit status and all."""
    return main(list(argv))


def small_cli_args(words_file, out):
    return ["-i", str(words_file), "--steps", "40", "--batch-size", "8", "--n-hidden", "16",
            "--n-embd", "4", "--backward", "autograd", "--out", str(out), "--quiet"]


def test_cli_train_prints_the_three_losses_and_sample_prints_names(words_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", *small_cli_args(words_file, out)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["train", "val", "test"]
    assert all(re.fullmatch(r"(train|val|test) \d+\.\d{4}", line) for line in lines)
    metrics = json.loads((out / "metrics.json").read_text())
    assert lines[1] == f"val {metrics['loss']['val']:.4f}"

    assert run_cli("sample", "--out", str(out), "-n", "7", "--seed", "3") == 0
    names = capsys.readouterr().out.splitlines()
    assert len(names) == 7 and all(set(n) <= set("abcdefghij") for n in names)
    assert run_cli("sample", "--out", str(out), "-n", "7", "--seed", "3") == 0
    assert capsys.readouterr().out.splitlines() == names


def test_cli_resume_takes_unset_options_from_the_checkpoint(words_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", *small_cli_args(words_file, out)) == 0
    assert run_cli("train", "--resume", "--out", str(out), "--steps", "50", "--quiet") == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 50 and ckpt["sizes"]["n_hidden"] == 16 and ckpt["config"]["batch_size"] == 8


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "1"], "batch size must be at least 2"),
    (["--steps", "0"], "steps must be a positive"),
    (["-i", "missing.txt"], "does not exist"),
    (["--resume"], "no checkpoint"),
])
def test_cli_user_errors_are_one_line_and_exit_2(words_file, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    args = small_cli_args(words_file, tmp_path / "run") + argv
    assert run_cli("train", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("symbp: error: ") and message in err and err.count("\n") == 1


def test_cli_sample_without_a_trained_model_exits_2(tmp_path, capsys):
    assert run_cli("sample", "--out", str(tmp_path / "none")) == 2
    err = capsys.readouterr().err
    assert err.startswith("symbp: error: no checkpoint") and err.count("\n") == 1


def test_cli_sample_refuses_an_unfinished_run(words_file, tmp_path, capsys):
    def stop(step, loss):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(config(words_file, tmp_path / "run"), callback=stop)
    assert run_cli("sample", "--out", str(tmp_path / "run")) == 2
    assert "unfinished run (step 5 of 60)" in capsys.readouterr().err


def test_cli_ctrl_c_exits_130_and_says_how_to_resume(words_file, tmp_path, capsys, monkeypatch):
    real_train = train_mod.train

    def interrupted_train(cfg):
        def press(step, loss):
            if step == 10:
                signal.raise_signal(signal.SIGINT)

        return real_train(cfg, callback=press)

    monkeypatch.setattr(train_mod, "train", interrupted_train)
    out = tmp_path / "run"
    assert run_cli("train", *small_cli_args(words_file, out)) == 130
    err = capsys.readouterr().err
    assert "interrupted at step 10 of 40" in err and f"symbp train --resume --out {out}" in err
    monkeypatch.setattr(train_mod, "train", real_train)
    assert run_cli("train", "--resume", "--out", str(out), "--quiet") == 0


def test_cli_divergence_exits_1(words_file, tmp_path, capsys):
    assert run_cli("train", *small_cli_args(words_file, tmp_path / "run"), "--lr", "1e30") == 1
    err = capsys.readouterr().err
    assert err.startswith("symbp: error: the loss became") and err.count("\n") == 1


def test_training_on_the_generated_backward_follows_autograd(words_file, tmp_path):
    a = train(config(words_file, tmp_path / "autograd"))
    b = train(config(words_file, tmp_path / "generated", backward="generated"))
    pa = load_checkpoint(tmp_path / "autograd" / "checkpoint.pt")["params"]
    pb = load_checkpoint(tmp_path / "generated" / "checkpoint.pt")["params"]
    for k in PARAM_NAMES:
        torch.testing.assert_close(pb[k], pa[k], rtol=1e-4, atol=1e-5, msg=k)
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)


def test_compiled_training_follows_eager_training(words_file, tmp_path, monkeypatch):
    """``compile=True`` (with the aot_eager backend, which needs no C compiler) trains the same model."""
    from symbp.makemore import model

    torch._dynamo.reset()
    monkeypatch.setattr(model, "COMPILE_BACKEND", "aot_eager")
    for backward in ("generated", "autograd"):
        eager = train(config(words_file, tmp_path / f"{backward}-eager", steps=30, backward=backward))
        compiled = train(config(words_file, tmp_path / f"{backward}-compiled", steps=30, backward=backward,
                                compile=True))
        pe = load_checkpoint(tmp_path / f"{backward}-eager" / "checkpoint.pt")
        pc = load_checkpoint(tmp_path / f"{backward}-compiled" / "checkpoint.pt")
        for k in PARAM_NAMES:
            torch.testing.assert_close(pc["params"][k], pe["params"][k], rtol=1e-4, atol=1e-5, msg=k)
        assert compiled["loss"] == pytest.approx(eager["loss"], rel=1e-4)
        assert pc["config"]["compile"] is True and pe["config"]["compile"] is False
        assert compiled["compile_seconds"] > 0 and eager["compile_seconds"] == 0


def test_a_failing_compile_is_one_train_error(words_file, tmp_path, monkeypatch):
    from symbp.makemore import model

    def no_compiler(graph, example_inputs):  # as inductor fails where there is no C compiler
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    torch._dynamo.reset()
    monkeypatch.setattr(model, "COMPILE_BACKEND", no_compiler)
    with pytest.raises(TrainError, match="torch.compile failed .*No working C.. compiler.*without --compile"):
        train(config(words_file, tmp_path / "run", backward="generated", compile=True))


def test_block_draws_are_the_per_step_draws():
    """Drawing a block of minibatches at once gives the seeds' per-step numbers and generator states."""
    g = torch.Generator().manual_seed(7)
    per_step, states = [], [g.get_state()]
    for _ in range(9):
        per_step.append(torch.randint(0, 1000, (5,), generator=g))
        states.append(g.get_state())
    g2 = torch.Generator().manual_seed(7)
    block = train_mod._Block(g2, 0, 5, 1000)
    assert torch.equal(block.draw(0, 4), torch.stack(per_step[:4]))
    assert torch.equal(block.draw(4, 9), torch.stack(per_step[4:]))
    for step in range(4, 10):
        assert torch.equal(block.state(step), states[step]), step


def test_cli_compile_flag_is_kept_on_resume(words_file, tmp_path):
    from symbp.cli import build_parser
    from symbp.cli.train import config_from_args

    parser = build_parser()
    assert config_from_args(parser.parse_args(["train", "--compile"])).compile is True
    assert config_from_args(parser.parse_args(["train"])).compile is False
    out = tmp_path / "run"
    train(config(words_file, out, steps=10, compile=False))
    assert config_from_args(parser.parse_args(["train", "--resume", "--out", str(out)])).compile is False
    resumed = parser.parse_args(["train", "--resume", "--out", str(out), "--compile"])
    assert config_from_args(resumed).compile is True
